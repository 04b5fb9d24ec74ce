"""Typed parameters of the precise-prefix plugins, with llm-d's names (camelCase, strict).

Each model is self-contained (``extra="forbid"``, camelCase aliases) so the plugin registry can
hold it next to the factory. :func:`parse` turns a validation error into a
:class:`ConfigError` with the parameter's path.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from endpoint_picker import units
from endpoint_picker.errors import ConfigError


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, alias_generator=to_camel)


def _duration(value: Any) -> float:
    """Go duration text (``2s``), or integer nanoseconds as llm-d's JSON durations allow."""
    if isinstance(value, bool):
        raise ValueError("must be a duration")
    if isinstance(value, int | float):
        return float(value) / 1e9
    if not isinstance(value, str):
        raise ValueError("must be a duration such as '2s'")
    seconds = units.parse_duration(value)
    if seconds < 0:
        raise ValueError("must not be negative")
    return seconds


# -- token-producer --------------------------------------------------------------------------


class VllmBackend(_Params):
    url: str = "http://localhost:8000"
    timeout: str = "5s"
    mm_timeout: str = "30s"


class TokenProducerParams(_Params):
    """llm-d's ``token-producer`` parameters, plus ``tokenizerPath`` (ours: a local
    ``tokenizer.json`` or its folder). ``vllm``, ``estimate`` and ``udsTokenizerConfig`` are
    accepted so llm-d's configs load; see docs/precise-prefix.md for what each becomes here."""

    model_name: str = ""
    tokenizer_path: str = ""
    vllm: VllmBackend | None = None
    estimate: dict[str, Any] | None = None
    uds_tokenizer_config: dict[str, Any] | None = None


# -- precise-prefix-cache-producer -----------------------------------------------------------


class TokenProcessorConfig(_Params):
    block_size_tokens: int = 0
    block_size: int = 0  # deprecated alias of blockSizeTokens (llm-d keeps it)
    hash_seed: str = ""

    def resolved_block_size(self) -> int:
        """llm-d's rule: blockSizeTokens, else the deprecated blockSize, else 16."""
        size = self.block_size_tokens or self.block_size or 16
        if size <= 0:
            raise ValueError(f"blockSizeTokens must be greater than 0, got {size}")
        return size


class InMemoryConfig(_Params):
    size: int = Field(100_000_000, ge=1)
    pod_cache_size: int = Field(10, ge=1)


class KVBlockIndexConfig(_Params):
    in_memory_config: InMemoryConfig = Field(default_factory=InMemoryConfig)
    enable_metrics: bool = False
    metrics_logging_interval: Any = None  # accepted; metrics go to /metrics, not to the log
    cost_aware_memory_config: dict[str, Any] | None = None
    redis_config: dict[str, Any] | None = None

    @field_validator("cost_aware_memory_config", "redis_config")
    @classmethod
    def _unsupported(cls, value: Any) -> Any:
        if value is not None:
            raise ValueError("only the in-memory index is supported (inMemoryConfig)")
        return value


class IndexerConfig(_Params):
    kv_block_index_config: KVBlockIndexConfig = Field(default_factory=KVBlockIndexConfig)
    tokenizers_pool_config: dict[str, Any] | None = None  # deprecated in llm-d; ignored
    kv_cache_backend_configs: list[dict[str, Any]] | None = None


class PodDiscoveryConfig(_Params):
    pod_label_selector: str = "llm-d.ai/inference-serving=true"
    pod_namespace: str = ""
    socket_port: int = Field(5557, ge=1, le=65535)
    replay_port: int = Field(0, ge=0, le=65535)  # ours: vLLM's replay ROUTER; 0 = no replay


class KVEventsConfig(_Params):
    zmq_endpoint: str = ""
    topic_filter: str = "kv@"
    concurrency: int = Field(4, ge=1)  # accepted; one event loop serves every stream here
    engine_type: str = "vllm"
    discover_pods: bool | None = None
    pod_discovery_config: PodDiscoveryConfig = Field(default_factory=PodDiscoveryConfig)

    @field_validator("engine_type")
    @classmethod
    def _engine(cls, value: str) -> str:
        if value not in ("vllm", "sglang"):  # one positional wire format, one decoder
            raise ValueError(f"must be 'vllm' or 'sglang', got {value!r}")
        return value


class PreciseProducerParams(_Params):
    token_processor_config: TokenProcessorConfig = Field(default_factory=TokenProcessorConfig)
    indexer_config: IndexerConfig = Field(default_factory=IndexerConfig)
    kv_events_config: KVEventsConfig = Field(default_factory=KVEventsConfig)
    speculative_indexing: bool = False
    speculative_ttl: float = Field(2.0, alias="speculativeTTL")

    @field_validator("speculative_ttl", mode="before")
    @classmethod
    def _ttl(cls, value: Any) -> float:
        return _duration(value)


# -- scorers ---------------------------------------------------------------------------------


class NoHitLruParams(_Params):
    prefix_plugin_type: str = "prefix-cache-scorer"  # accepted; hits come from the producer
    prefix_plugin_name: str = "prefix-cache-scorer"
    prefix_match_info_producer_name: str = ""
    lru_size: int = Field(1024, ge=1)


class ActiveRequestParams(_Params):
    request_timeout: float = 0.0  # deprecated and ignored in llm-d too
    idle_threshold: int = Field(0, ge=0)
    max_busy_score: float = Field(1.0, ge=0.0, le=1.0)

    @field_validator("request_timeout", mode="before")
    @classmethod
    def _timeout(cls, value: Any) -> float:
        return _duration(value)


class NoParams(_Params):
    pass


P = TypeVar("P", bound=BaseModel)


def parse(model: type[P], params: Mapping[str, Any] | None) -> P:
    """Validate ``params`` as ``model``; errors name the first bad field's path."""
    if params is not None and not isinstance(params, Mapping):
        raise ConfigError("parameters must be a mapping")
    try:
        return model.model_validate(dict(params or {}))
    except ValidationError as err:
        first = err.errors()[0]
        path = ".".join(str(p) for p in first["loc"])
        reason = "unknown parameter" if first["type"] == "extra_forbidden" else first["msg"]
        reason = reason.removeprefix("Value error, ")
        raise ConfigError(reason, path=path or None) from None
