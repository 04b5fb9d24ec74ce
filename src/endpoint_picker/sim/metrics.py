"""``/metrics`` of one simulated instance, with vLLM's exact metric names and labels.

Each instance has its own ``CollectorRegistry`` holding one collector that reads the engine at
scrape time, so the hot path updates plain integers and nothing is shared between instances.
Names follow vLLM v1 (``vllm/v1/metrics/loggers.py``): every series carries ``model_name`` and
``engine``; ``vllm:lora_requests_info`` is only exported when adapters are configured, and its
value is the time it was rendered, as in vLLM.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from endpoint_picker.sim.engine import Engine
from endpoint_picker.sim.stats import Histogram

_LABELS = ("model_name", "engine")


class EngineCollector(Collector):
    """Turns one engine's state and statistics into Prometheus metric families."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        eng, cfg = self.engine, self.engine.config
        st = eng.stats
        lv = [cfg.model, "0"]

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            g = GaugeMetricFamily(name, doc, labels=_LABELS)
            g.add_metric(lv, value)
            return g

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            c = CounterMetricFamily(name, doc, labels=_LABELS)
            c.add_metric(lv, value)
            return c

        def hist(name: str, doc: str, h: Histogram) -> HistogramMetricFamily:
            f = HistogramMetricFamily(name, doc, labels=_LABELS)
            f.add_metric(lv, h.cumulative(), h.sum)
            return f

        yield gauge(
            "vllm:num_requests_running",
            "Number of requests in model execution batches.",
            eng.num_running,
        )
        yield gauge(
            "vllm:num_requests_waiting",
            "Number of requests waiting to be processed.",
            len(eng.waiting),
        )
        yield gauge(
            "vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", eng.kv.usage
        )
        info = GaugeMetricFamily(
            "vllm:cache_config_info",
            "Information of the LLMEngine CacheConfig",
            labels=("block_size", "num_gpu_blocks", "enable_prefix_caching", "engine"),
        )
        info.add_metric(
            [str(cfg.block_size), str(cfg.num_gpu_blocks), str(cfg.enable_prefix_caching), "0"], 1.0
        )
        yield info
        if cfg.lora:
            waiting = sorted({r.lora for r in eng.waiting if r.lora is not None})
            lora = GaugeMetricFamily(
                "vllm:lora_requests_info",
                "Running stats on lora requests.",
                labels=("max_lora", "running_lora_adapters", "waiting_lora_adapters"),
            )
            lora.add_metric(
                [str(cfg.max_loras), ",".join(eng.lora.running), ",".join(waiting)], time.time()
            )
            yield lora
        yield counter(
            "vllm:prefix_cache_queries",
            "Prefix cache queries, in terms of number of queried tokens.",
            eng.kv.queries,
        )
        yield counter(
            "vllm:prefix_cache_hits",
            "Prefix cache hits, in terms of number of cached tokens.",
            eng.kv.hits,
        )
        yield counter(
            "sim:oracle_prefix_cache_hits",
            "Prompt tokens the best-placed server of the fleet held when each request arrived "
            "(what a perfect router would have hit; not a vLLM metric).",
            eng.kv.oracle_hits,
        )
        yield counter(
            "sim:pd_remote_prefills",
            "P/D decode side: requests whose prompt KV was pulled from a prefiller (not vLLM).",
            st.remote_prefills,
        )
        yield counter(
            "sim:pd_kv_transfer_tokens",
            "P/D decode side: prompt tokens whose KV was pulled from a prefiller (not vLLM).",
            st.kv_transfer_tokens,
        )
        yield hist(
            "sim:pd_kv_transfer_seconds",
            "P/D decode side: modelled time of each KV pull (not vLLM).",
            st.kv_transfer,
        )
        yield counter(
            "sim:pd_prefills_for_remote_decode",
            "P/D prefill side: prefills run for a remote decoder (do_remote_decode; not vLLM).",
            st.prefills_for_remote_decode,
        )
        yield counter(
            "sim:pd_remote_prefill_failures",
            "P/D sidecar: prefill calls that failed, answered to the client as errors (not vLLM).",
            st.remote_prefill_failures,
        )
        yield counter("vllm:num_preemptions", "Cumulative number of preemption from the engine.", 0)
        yield counter("vllm:prompt_tokens", "Number of prefill tokens processed.", st.prompt_tokens)
        yield counter(
            "vllm:generation_tokens", "Number of generation tokens processed.", st.generation_tokens
        )
        success = CounterMetricFamily(
            "vllm:request_success",
            "Count of successfully processed requests.",
            labels=(*_LABELS, "finished_reason"),
        )
        for reason in ("stop", "length", "abort"):
            success.add_metric([*lv, reason], st.success.get(reason, 0))
        yield success
        yield hist(
            "vllm:time_to_first_token_seconds",
            "Histogram of time to first token in seconds.",
            st.ttft,
        )
        yield hist(
            "vllm:inter_token_latency_seconds",
            "Histogram of inter-token latency in seconds.",
            st.itl,
        )
        yield hist(
            "vllm:time_per_output_token_seconds",
            "Histogram of time per output token in "
            "seconds. DEPRECATED: use vllm:inter_token_latency_seconds.",
            st.itl,
        )
        yield hist(
            "vllm:e2e_request_latency_seconds",
            "Histogram of e2e request latency in seconds.",
            st.e2e,
        )
        yield hist(
            "vllm:request_queue_time_seconds",
            "Histogram of time spent in WAITING phase for request.",
            st.queue,
        )
        yield hist(
            "vllm:request_inference_time_seconds",
            "Histogram of time spent in RUNNING phase for request.",
            st.inference,
        )
        yield hist(
            "vllm:request_prefill_time_seconds",
            "Histogram of time spent in PREFILL phase for request.",
            st.prefill,
        )
        yield hist(
            "vllm:request_decode_time_seconds",
            "Histogram of time spent in DECODE phase for request.",
            st.decode,
        )
        yield hist(
            "vllm:request_prompt_tokens",
            "Number of prefill tokens processed.",
            st.request_prompt_tokens,
        )
        yield hist(
            "vllm:request_generation_tokens",
            "Number of generation tokens processed.",
            st.request_generation_tokens,
        )
        yield hist(
            "vllm:request_params_max_tokens",
            "Histogram of the max_tokens request parameter.",
            st.request_max_tokens,
        )


def make_registry(engine: Engine) -> CollectorRegistry:
    """A registry of its own for one instance."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EngineCollector(engine))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """Prometheus text exposition format (version 0.0.4)."""
    return generate_latest(registry)
