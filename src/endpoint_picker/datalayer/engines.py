"""Per-engine metric maps: which Prometheus series mean queue, running, KV use, LoRA, cache info.

Upstream's ``core-metrics-extractor`` names each series with a PromQL-like selector string,
``name{label=value,...}`` (values may be quoted; only ``=`` matchers; empty string = disabled).
We keep that spelling so an upstream ``engineConfigs`` list works unchanged, and compile each
string once into a :class:`MetricSpec` at configuration time, never per scrape.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from endpoint_picker.datastore import ENGINE_TYPE_LABEL
from endpoint_picker.errors import ConfigError

_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_MATCHER = re.compile(r'^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^",}]*?))\s*$')


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """A series selector: a metric name and exact label matches."""

    name: str
    labels: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, text: str) -> MetricSpec | None:
        """``name{a=b,c="d"}`` -> MetricSpec; ``""`` -> None (disabled). Raises ValueError."""
        text = text.strip()
        if not text:
            return None
        name, brace, rest = text.partition("{")
        name = name.strip()
        if not _NAME.match(name):
            raise ValueError(f"invalid metric name {name!r} in spec {text!r}")
        labels: list[tuple[str, str]] = []
        if brace:
            if not rest.endswith("}"):
                raise ValueError(f"unterminated label set in spec {text!r}")
            body = rest[:-1].strip()
            for part in _split_matchers(body):
                m = _MATCHER.match(part)
                if m is None:
                    raise ValueError(f"invalid label matcher {part.strip()!r} in spec {text!r}")
                value = m.group(2) if m.group(2) is not None else m.group(3)
                labels.append((m.group(1), value.replace('\\"', '"')))
        return cls(name, tuple(labels))

    def matches(self, sample_labels: Mapping[str, str]) -> bool:
        return all(sample_labels.get(k) == v for k, v in self.labels)

    def __str__(self) -> str:
        if not self.labels:
            return self.name
        inner = ",".join(f'{k}="{v}"' for k, v in self.labels)
        return f"{self.name}{{{inner}}}"


def _split_matchers(body: str) -> list[str]:
    """Split ``a="x,y",b=z`` on commas outside quotes."""
    parts: list[str] = []
    buf: list[str] = []
    quoted = False
    prev = ""
    for ch in body:
        if ch == '"' and prev != "\\":
            quoted = not quoted
        if ch == "," and not quoted:
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
        prev = ch
    if "".join(buf).strip():
        parts.append("".join(buf))
    return [p for p in parts if p.strip()]


@dataclass(frozen=True, slots=True)
class EngineMap:
    """One engine's metric map (upstream ``engineConfigs[]`` entry), compiled."""

    name: str
    queued: MetricSpec | None = None
    running: MetricSpec | None = None
    kv_usage: MetricSpec | None = None
    lora: MetricSpec | None = None
    cache_info: MetricSpec | None = None
    cache_block_size_label: str = "block_size"
    cache_num_blocks_label: str = "num_gpu_blocks"
    cache_block_size: MetricSpec | None = None
    cache_num_blocks: MetricSpec | None = None
    # Metric names this map reads: lets the scraper skip every other line before parsing.
    names: frozenset[str] = field(default=frozenset(), compare=False)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> EngineMap:
        """Build from upstream's camelCase ``engineConfigs[]`` entry. Raises ValueError."""
        unknown = set(params) - set(_PARAM_FIELDS) - {"name"}
        if unknown:
            raise ValueError(f"unknown field(s) {sorted(unknown)}")
        name = params.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError("engine config needs a non-empty 'name'")
        if name == "default":
            raise ValueError("engine name 'default' is reserved")
        kwargs: dict[str, Any] = {}
        for key, attr in _PARAM_FIELDS.items():
            if key not in params or params[key] is None:
                continue
            value = params[key]
            if not isinstance(value, str):
                raise ValueError(f"{key}: expected a string, got {type(value).__name__}")
            if attr.endswith("_label"):
                kwargs[attr] = value
            else:
                try:
                    kwargs[attr] = MetricSpec.parse(value)
                except ValueError as e:
                    raise ValueError(f"{key}: {e}") from None
        return cls.build(name, **kwargs)

    @classmethod
    def build(cls, name: str, **kwargs: Any) -> EngineMap:
        specs = [v for v in kwargs.values() if isinstance(v, MetricSpec)]
        return cls(name=name, names=frozenset(s.name for s in specs), **kwargs)


_PARAM_FIELDS: dict[str, str] = {
    "queuedRequestsSpec": "queued",
    "runningRequestsSpec": "running",
    "kvUsageSpec": "kv_usage",
    "loraSpec": "lora",
    "cacheInfoSpec": "cache_info",
    "cacheBlockSizeLabelName": "cache_block_size_label",
    "cacheNumBlocksLabelName": "cache_num_blocks_label",
    "cacheBlockSizeSpec": "cache_block_size",
    "cacheNumBlocksSpec": "cache_num_blocks",
}


def _s(text: str) -> MetricSpec:
    spec = MetricSpec.parse(text)
    assert spec is not None
    return spec


# Upstream's built-ins (pkg/epp/datalayer/extractor/metrics/mapping*.go), spec section 6.3.
VLLM = EngineMap.build(
    "vllm",
    queued=_s("vllm:num_requests_waiting"),
    running=_s("vllm:num_requests_running"),
    kv_usage=_s("vllm:kv_cache_usage_perc"),
    lora=_s("vllm:lora_requests_info"),
    cache_info=_s("vllm:cache_config_info"),
    cache_block_size_label="block_size",
    cache_num_blocks_label="num_gpu_blocks",
)
SGLANG = EngineMap.build(
    "sglang",
    queued=_s("sglang:num_queue_reqs"),
    running=_s("sglang:num_running_reqs"),
    kv_usage=_s("sglang:token_usage"),
    cache_info=_s("sglang:cache_config_info"),
    cache_block_size_label="page_size",
    cache_num_blocks_label="num_pages",
)
TRTLLM_SERVE = EngineMap.build(
    "trtllm-serve",
    queued=_s("trtllm_num_requests_waiting"),
    running=_s("trtllm_num_requests_running"),
    kv_usage=_s("trtllm_kv_cache_utilization"),
    cache_block_size=_s("trtllm_kv_cache_tokens_per_block"),
    cache_num_blocks=_s("trtllm_kv_cache_max_blocks"),
)
TRITON_TENSORRT_LLM = EngineMap.build(
    "triton-tensorrt-llm",
    queued=_s("nv_trt_llm_request_metrics{request_type=waiting}"),
    running=_s("nv_trt_llm_request_metrics{request_type=scheduled}"),
    kv_usage=_s("nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type=fraction}"),
    cache_block_size=_s("nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type=tokens_per}"),
    cache_num_blocks=_s("nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type=max}"),
)
# llm-d-router's: Triton Inference Server's generic metrics (non-LLM models, no KV cache).
TRITON = EngineMap.build(
    "triton",
    queued=_s("nv_inference_pending_request_count"),
    running=_s("nv_inference_exec_count"),
)
BUILTIN_ENGINES: dict[str, EngineMap] = {
    e.name: e for e in (VLLM, SGLANG, TRTLLM_SERVE, TRITON_TENSORRT_LLM, TRITON)
}


@dataclass(frozen=True, slots=True)
class EngineSelector:
    """Chooses an endpoint's map from its engine label; missing/unknown -> the default engine."""

    engines: Mapping[str, EngineMap]
    default_engine: str = "vllm"
    label_key: str = ENGINE_TYPE_LABEL

    def __post_init__(self) -> None:
        if self.default_engine not in self.engines:
            raise ConfigError(
                f"{self.default_engine!r} is not a configured engine "
                f"(known: {', '.join(sorted(self.engines))})",
                path="parameters.defaultEngine",
            )

    def for_labels(self, labels: Mapping[str, str]) -> EngineMap:
        engine = self.engines.get(labels.get(self.label_key, ""))
        return engine if engine is not None else self.engines[self.default_engine]


def merge_engines(
    overrides: Mapping[str, EngineMap] | None,
) -> dict[str, EngineMap]:
    """Built-ins plus overrides; an override replaces the built-in of the same name entirely."""
    engines = dict(BUILTIN_ENGINES)
    engines.update(overrides or {})
    return engines


def selector_from_params(params: Mapping[str, Any] | None) -> EngineSelector:
    """Upstream's ``core-metrics-extractor`` parameters -> EngineSelector. Raises ConfigError.

    Accepts ``engineLabelKey``, ``defaultEngine`` and ``engineConfigs[]``; errors name the
    offending path (``engineConfigs[1].kvUsageSpec: ...``).
    """
    params = dict(params or {})
    unknown = set(params) - {"engineLabelKey", "defaultEngine", "engineConfigs"}
    if unknown:
        raise ConfigError(f"unknown field(s) {sorted(unknown)}", path="parameters")
    label_key = params.get("engineLabelKey") or ENGINE_TYPE_LABEL
    default = params.get("defaultEngine") or "vllm"
    if not isinstance(label_key, str):
        raise ConfigError("expected a string", path="parameters.engineLabelKey")
    if not isinstance(default, str):
        raise ConfigError("expected a string", path="parameters.defaultEngine")
    raw = params.get("engineConfigs") or []
    if not isinstance(raw, list):
        raise ConfigError("expected a list", path="parameters.engineConfigs")
    overrides: dict[str, EngineMap] = {}
    for i, entry in enumerate(raw):
        where = f"parameters.engineConfigs[{i}]"
        if not isinstance(entry, Mapping):
            raise ConfigError("expected a mapping", path=where)
        try:
            engine = EngineMap.from_params(entry)
        except ValueError as e:
            raise ConfigError(str(e), path=where) from None
        if engine.name in overrides:
            raise ConfigError(f"duplicate engine name {engine.name!r}", path=where)
        overrides[engine.name] = engine
    return EngineSelector(merge_engines(overrides), default_engine=default, label_key=label_key)
