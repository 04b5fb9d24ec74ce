# ruff: noqa: E501  (exposition lines are quoted verbatim; real pages have long label sets)
"""Engine metric maps against real-looking exposition pages of vLLM, SGLang, trtllm-serve and
Triton TensorRT-LLM; spec strings; upstream's engineConfigs parameters."""

from __future__ import annotations

import pytest

from endpoint_picker.datalayer import (
    BUILTIN_ENGINES,
    SGLANG,
    TRITON_TENSORRT_LLM,
    TRTLLM_SERVE,
    VLLM,
    EngineMap,
    ExtractError,
    MetricSpec,
    extract,
    from_params,
    selector_from_params,
)
from endpoint_picker.datalayer.extract import relevant_lines
from endpoint_picker.datastore import Metrics
from endpoint_picker.errors import ConfigError

M = 'model_name="meta-llama/Llama-3.1-8B-Instruct"'

# Abridged from a vLLM 0.10 (V1 engine) /metrics page: process metrics, histograms, counters.
VLLM_PAGE = f"""# HELP python_gc_objects_collected_total Objects collected during gc
# TYPE python_gc_objects_collected_total counter
python_gc_objects_collected_total{{generation="0"}} 12086.0
# HELP process_resident_memory_bytes Resident memory size in bytes.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 2.1710336e+09
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{{engine="0",{M}}} 12.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{{engine="0",{M}}} 5.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{{engine="0",{M}}} 0.6875
# HELP vllm:prefix_cache_queries_total Prefix cache queries, in terms of number of queried tokens.
# TYPE vllm:prefix_cache_queries_total counter
vllm:prefix_cache_queries_total{{engine="0",{M}}} 184320.0
# HELP vllm:lora_requests_info Running stats on lora requests.
# TYPE vllm:lora_requests_info gauge
vllm:lora_requests_info{{max_lora="4",running_lora_adapters="",waiting_lora_adapters=""}} 1.7253e+09
vllm:lora_requests_info{{max_lora="4",running_lora_adapters="sql-lora, tweet-summary",waiting_lora_adapters="food-review"}} 1.7254e+09
# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig
# TYPE vllm:cache_config_info gauge
vllm:cache_config_info{{block_size="16",cache_dtype="auto",calculate_kv_scales="False",enable_prefix_caching="True",gpu_memory_utilization="0.9",num_cpu_blocks="None",num_gpu_blocks="27865",num_gpu_blocks_override="None",prefix_caching_hash_algo="builtin",swap_space="4",swap_space_bytes="4294967296"}} 1.0
# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_sum{{engine="0",{M}}} 41.2
vllm:time_to_first_token_seconds_bucket{{engine="0",le="0.001",{M}}} 0.0
vllm:time_to_first_token_seconds_bucket{{engine="0",le="0.005",{M}}} 3.0
vllm:time_to_first_token_seconds_bucket{{engine="0",le="+Inf",{M}}} 420.0
vllm:time_to_first_token_seconds_count{{engine="0",{M}}} 420.0
# HELP vllm:generation_tokens_total Number of generation tokens processed.
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{{engine="0",{M}}} 88211.0
"""

SGLANG_PAGE = """# HELP sglang:num_running_reqs The number of running requests.
# TYPE sglang:num_running_reqs gauge
sglang:num_running_reqs{model_name="Qwen/Qwen2.5-7B-Instruct"} 9.0
# HELP sglang:num_used_tokens The number of used tokens.
# TYPE sglang:num_used_tokens gauge
sglang:num_used_tokens{model_name="Qwen/Qwen2.5-7B-Instruct"} 41210.0
# HELP sglang:token_usage The token usage.
# TYPE sglang:token_usage gauge
sglang:token_usage{model_name="Qwen/Qwen2.5-7B-Instruct"} 0.31
# HELP sglang:num_queue_reqs The number of requests in the waiting queue.
# TYPE sglang:num_queue_reqs gauge
sglang:num_queue_reqs{model_name="Qwen/Qwen2.5-7B-Instruct"} 3.0
# HELP sglang:cache_hit_rate The prefix cache hit rate.
# TYPE sglang:cache_hit_rate gauge
sglang:cache_hit_rate{model_name="Qwen/Qwen2.5-7B-Instruct"} 0.42
# HELP sglang:cache_config_info Information of the cache config.
# TYPE sglang:cache_config_info gauge
sglang:cache_config_info{num_pages="131072",page_size="1"} 1.0
# HELP sglang:prompt_tokens_total Number of prefill tokens processed.
# TYPE sglang:prompt_tokens_total counter
sglang:prompt_tokens_total{model_name="Qwen/Qwen2.5-7B-Instruct"} 9.1e+06
"""

TRTLLM_SERVE_PAGE = """# HELP trtllm_num_requests_running Number of requests currently running.
# TYPE trtllm_num_requests_running gauge
trtllm_num_requests_running{engine_type="trtllm",model_name="llama-3.1-8b"} 4.0
# HELP trtllm_num_requests_waiting Number of requests waiting.
# TYPE trtllm_num_requests_waiting gauge
trtllm_num_requests_waiting{engine_type="trtllm",model_name="llama-3.1-8b"} 1.0
# HELP trtllm_kv_cache_utilization KV cache utilization fraction.
# TYPE trtllm_kv_cache_utilization gauge
trtllm_kv_cache_utilization{engine_type="trtllm",model_name="llama-3.1-8b"} 0.125
# HELP trtllm_kv_cache_tokens_per_block Tokens per KV cache block.
# TYPE trtllm_kv_cache_tokens_per_block gauge
trtllm_kv_cache_tokens_per_block{engine_type="trtllm",model_name="llama-3.1-8b"} 32.0
# HELP trtllm_kv_cache_max_blocks Maximum number of KV cache blocks.
# TYPE trtllm_kv_cache_max_blocks gauge
trtllm_kv_cache_max_blocks{engine_type="trtllm",model_name="llama-3.1-8b"} 9412.0
# HELP trtllm_e2e_request_latency_seconds Histogram of end to end request latency.
# TYPE trtllm_e2e_request_latency_seconds histogram
trtllm_e2e_request_latency_seconds_bucket{le="0.3",model_name="llama-3.1-8b"} 2.0
trtllm_e2e_request_latency_seconds_bucket{le="+Inf",model_name="llama-3.1-8b"} 10.0
trtllm_e2e_request_latency_seconds_count{model_name="llama-3.1-8b"} 10.0
trtllm_e2e_request_latency_seconds_sum{model_name="llama-3.1-8b"} 7.5
"""

# Triton's metrics endpoint, with its TensorRT-LLM backend families.
TRITON_PAGE = """# HELP nv_inference_request_success Number of successful inference requests
# TYPE nv_inference_request_success counter
nv_inference_request_success{model="ensemble",version="1"} 314
# HELP nv_trt_llm_request_metrics TRT LLM request metrics
# TYPE nv_trt_llm_request_metrics gauge
nv_trt_llm_request_metrics{model="tensorrt_llm",request_type="context",version="1"} 1
nv_trt_llm_request_metrics{model="tensorrt_llm",request_type="scheduled",version="1"} 6
nv_trt_llm_request_metrics{model="tensorrt_llm",request_type="max",version="1"} 512
nv_trt_llm_request_metrics{model="tensorrt_llm",request_type="active",version="1"} 8
nv_trt_llm_request_metrics{model="tensorrt_llm",request_type="waiting",version="1"} 2
# HELP nv_trt_llm_kv_cache_block_metrics TRT LLM KV cache block metrics
# TYPE nv_trt_llm_kv_cache_block_metrics gauge
nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="fraction",model="tensorrt_llm",version="1"} 0.5
nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="tokens_per",model="tensorrt_llm",version="1"} 64
nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="used",model="tensorrt_llm",version="1"} 3120
nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="free",model="tensorrt_llm",version="1"} 3119
nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="max",model="tensorrt_llm",version="1"} 6239
"""

NOW = 1234.5


def test_vllm_map() -> None:
    m, problems = extract(VLLM_PAGE, VLLM, Metrics(), NOW)
    assert problems == []
    assert m is not None
    assert (m.waiting_queue_size, m.running_requests_size) == (5, 12)
    assert m.kv_cache_usage_percent == pytest.approx(0.6875)
    # LoRA: the series with the largest value (a last-updated timestamp) wins; CSV trimmed.
    assert m.active_models == frozenset({"sql-lora", "tweet-summary"})
    assert m.waiting_models == frozenset({"food-review"})
    assert m.max_active_models == 4
    assert (m.cache_block_size, m.cache_num_blocks) == (16, 27865)
    assert m.update_time == NOW


def test_sglang_map() -> None:
    m, problems = extract(SGLANG_PAGE, SGLANG, Metrics(), NOW)
    assert problems == []
    assert m is not None
    assert (m.waiting_queue_size, m.running_requests_size) == (3, 9)
    assert m.kv_cache_usage_percent == pytest.approx(0.31)
    assert (m.cache_block_size, m.cache_num_blocks) == (1, 131072)
    assert m.active_models == frozenset()


def test_trtllm_serve_map() -> None:
    m, problems = extract(TRTLLM_SERVE_PAGE, TRTLLM_SERVE, Metrics(), NOW)
    assert problems == []
    assert m is not None
    assert (m.waiting_queue_size, m.running_requests_size) == (1, 4)
    assert m.kv_cache_usage_percent == pytest.approx(0.125)
    assert (m.cache_block_size, m.cache_num_blocks) == (32, 9412)


def test_triton_tensorrt_llm_map_uses_label_matchers() -> None:
    m, problems = extract(TRITON_PAGE, TRITON_TENSORRT_LLM, Metrics(), NOW)
    assert problems == []
    assert m is not None
    assert (m.waiting_queue_size, m.running_requests_size) == (2, 6)
    assert m.kv_cache_usage_percent == pytest.approx(0.5)
    assert (m.cache_block_size, m.cache_num_blocks) == (64, 6239)


def test_wrong_engine_finds_nothing() -> None:
    m, problems = extract(SGLANG_PAGE, VLLM, Metrics(), NOW)
    assert m is None
    assert "metric vllm:num_requests_waiting not found" in problems
    assert len(problems) == 4  # queue, running, kv, cache info (LoRA is optional)


def test_partial_page_keeps_previous_values_and_reports_missing() -> None:
    prev = Metrics(waiting_queue_size=9, kv_cache_usage_percent=0.9, cache_block_size=16)
    page = "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running 2\n"
    m, problems = extract(page, VLLM, prev, NOW)
    assert m is not None and m is not prev
    assert m.running_requests_size == 2
    assert (m.waiting_queue_size, m.kv_cache_usage_percent) == (9, 0.9)
    assert m.update_time == NOW
    assert prev.update_time == 0.0  # the old snapshot is never mutated
    assert set(problems) == {
        "metric vllm:num_requests_waiting not found",
        "metric vllm:kv_cache_usage_perc not found",
        "metric vllm:cache_config_info not found",
    }  # no LoRA gauge is normal (vLLM without --enable-lora) and not a problem


def test_latest_timestamp_series_wins() -> None:
    page = (
        "# TYPE vllm:num_requests_waiting gauge\n"
        'vllm:num_requests_waiting{engine="0"} 4 1700000000000\n'
        'vllm:num_requests_waiting{engine="1"} 7 1700000005000\n'
        'vllm:num_requests_waiting{engine="2"} 1 1699999999000\n'
    )
    m, _ = extract(page, VLLM, Metrics(), NOW)
    assert m is not None and m.waiting_queue_size == 7
    untimed = page.replace(" 1700000000000", "").replace(" 1700000005000", "")
    untimed = untimed.replace(" 1699999999000", "")
    m, _ = extract(untimed, VLLM, Metrics(), NOW)
    assert m is not None and m.waiting_queue_size == 4  # none timed: the first


def test_non_finite_values_are_reported_not_stored() -> None:
    page = "vllm:num_requests_waiting NaN\nvllm:kv_cache_usage_perc 0.5\n"
    m, problems = extract(page, VLLM, Metrics(waiting_queue_size=3), NOW)
    assert m is not None and m.waiting_queue_size == 3 and m.kv_cache_usage_percent == 0.5
    assert any("non-finite" in p for p in problems)


def test_counter_spec_matches_total_sample() -> None:
    engine = EngineMap.build("c", queued=MetricSpec("my_queue"))
    page = "# TYPE my_queue counter\nmy_queue_total 11\n"
    m, _ = extract(page, engine, Metrics(), NOW)
    assert m is not None and m.waiting_queue_size == 11


def test_garbage_text_is_an_extract_error() -> None:
    with pytest.raises(ExtractError, match="invalid Prometheus text"):
        extract("vllm:num_requests_waiting{engine=0 5\n", VLLM, Metrics(), NOW)


def test_prefilter_keeps_only_wanted_families_and_parses_the_same() -> None:
    kept = relevant_lines(VLLM_PAGE, VLLM.names)
    assert "python_gc" not in kept and "time_to_first_token" not in kept
    assert "vllm:num_requests_waiting{" in kept and "# TYPE vllm:cache_config_info gauge" in kept
    unfiltered = EngineMap.build("vllm-all", **{f: getattr(VLLM, f) for f in _SPEC_FIELDS})
    a, _ = extract(VLLM_PAGE, VLLM, Metrics(), NOW)
    b, _ = extract(VLLM_PAGE, unfiltered, Metrics(), NOW)
    assert a == b


_SPEC_FIELDS = ("queued", "running", "kv_usage", "lora", "cache_info")


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("vllm:num_requests_waiting", MetricSpec("vllm:num_requests_waiting")),
        ("m{a=b}", MetricSpec("m", (("a", "b"),))),
        ('m{a="b", c = "d,e"}', MetricSpec("m", (("a", "b"), ("c", "d,e")))),
        (" m { a=b , } ", MetricSpec("m", (("a", "b"),))),
    ],
)
def test_metric_spec_parse(text: str, spec: MetricSpec) -> None:
    assert MetricSpec.parse(text) == spec


def test_metric_spec_disabled_and_invalid() -> None:
    assert MetricSpec.parse("") is None
    assert MetricSpec.parse("   ") is None
    for bad in ("1abc", "m{a=b", "m{a!=b}", "m{=b}", "has space"):
        with pytest.raises(ValueError):
            MetricSpec.parse(bad)
    assert str(MetricSpec.parse("m{a=b}")) == 'm{a="b"}'


def test_builtins_are_upstreams_four() -> None:
    assert set(BUILTIN_ENGINES) == {
        "vllm",
        "sglang",
        "trtllm-serve",
        "triton-tensorrt-llm",
        "triton",
    }
    assert VLLM.lora is not None and SGLANG.lora is None
    assert (SGLANG.cache_block_size_label, SGLANG.cache_num_blocks_label) == (
        "page_size",
        "num_pages",
    )


def test_selector_by_label_with_default() -> None:
    sel = selector_from_params({})
    label = "inference.networking.k8s.io/engine-type"
    assert sel.for_labels({label: "sglang"}) is SGLANG
    assert sel.for_labels({label: "triton-tensorrt-llm"}) is TRITON_TENSORRT_LLM
    assert sel.for_labels({label: "unknown-engine"}) is VLLM
    assert sel.for_labels({}) is VLLM
    sel = selector_from_params({"defaultEngine": "sglang", "engineLabelKey": "engine"})
    assert sel.for_labels({}) is SGLANG
    assert sel.for_labels({"engine": "trtllm-serve"}) is TRTLLM_SERVE


def test_engine_configs_replace_builtin_by_name_and_add_new() -> None:
    sel = selector_from_params(
        {
            "engineConfigs": [
                {
                    "name": "vllm",
                    "queuedRequestsSpec": "custom_waiting{pool=a}",
                    "runningRequestsSpec": "custom_running",
                    "kvUsageSpec": "",
                },
                {
                    "name": "mine",
                    "queuedRequestsSpec": "q",
                    "cacheInfoSpec": "info",
                    "cacheBlockSizeLabelName": "bs",
                    "cacheNumBlocksLabelName": "nb",
                },
            ],
            "defaultEngine": "mine",
        }
    )
    vllm = sel.engines["vllm"]
    assert vllm.queued == MetricSpec("custom_waiting", (("pool", "a"),))
    assert vllm.kv_usage is None and vllm.lora is None  # full replacement, not a merge
    assert sel.engines["sglang"] is SGLANG
    page = 'custom_waiting{pool="a"} 6\ncustom_waiting{pool="b"} 1\ncustom_running 2\n'
    m, problems = extract(page, vllm, Metrics(), NOW)
    assert m is not None and (m.waiting_queue_size, m.running_requests_size) == (6, 2)
    assert problems == []
    mine = sel.for_labels({})
    m, _ = extract('q 3\ninfo{bs="64",nb="100"} 1\n', mine, Metrics(), NOW)
    assert m is not None and (m.waiting_queue_size, m.cache_block_size, m.cache_num_blocks) == (
        3,
        64,
        100,
    )


@pytest.mark.parametrize(
    ("params", "path", "reason"),
    [
        ({"defaultEngine": "nope"}, "parameters.defaultEngine", "not a configured engine"),
        ({"engineConfigs": [{"name": "default"}]}, "parameters.engineConfigs[0]", "reserved"),
        (
            {"engineConfigs": [{"queuedRequestsSpec": "q"}]},
            "parameters.engineConfigs[0].name",
            "required",
        ),
        (
            {"engineConfigs": [{"name": "x"}, {"name": "y", "kvUsageSpec": "m{a"}]},
            "parameters.engineConfigs[1]",
            "kvUsageSpec",
        ),
        (
            {"engineConfigs": [{"name": "x", "bogus": 1}]},
            "parameters.engineConfigs[0].bogus",
            "unknown field",
        ),
        ({"engineConfigs": [{"name": "x"}, {"name": "x"}]}, "parameters.engineConfigs", "dup"),
        ({"engineConfigs": {"name": "x"}}, "parameters.engineConfigs", "list"),
        ({"engineLabel": "x"}, "parameters.engineLabel", "did you mean 'engineLabelKey'"),
        ({"scheme": "ftp"}, "parameters.scheme", "'http' or 'https'"),
        ({"insecureSkipVerify": "yes"}, "parameters.insecureSkipVerify", "true or false"),
    ],
)
def test_bad_params_name_their_path(params: dict[str, object], path: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        from_params(params)
    assert info.value.path == path
    assert reason in info.value.reason


def test_from_params_defaults_and_merged_plugins() -> None:
    kw = from_params(None)
    assert kw["scheme"] == "http" and kw["path"] == "/metrics"
    assert kw["insecure_skip_verify"] is True
    assert kw["default_engine"] == "vllm"
    assert kw["label_key"] == "inference.networking.k8s.io/engine-type"
    assert set(kw["engines"]) == set(BUILTIN_ENGINES)
    kw = from_params({"scheme": "https", "path": "stats", "defaultEngine": "sglang"})
    assert (kw["scheme"], kw["path"], kw["default_engine"]) == ("https", "/stats", "sglang")
