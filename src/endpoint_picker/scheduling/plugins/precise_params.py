"""Typed parameters of the precise-prefix plugins, with llm-d's names (camelCase, strict).

Each model is a :class:`~endpoint_picker.params.PluginParams` (strict, ``extra="forbid"``,
camelCase aliases), registered with its plugin's factory in ``config/registry.py``; the config
loader validates a plugin's ``parameters`` against it and reports every error with its path.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field, PlainSerializer, ValidationInfo, field_validator

from endpoint_picker import units
from endpoint_picker.params import PluginParams, format_duration


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


LlmdDuration = Annotated[
    float, BeforeValidator(_duration), PlainSerializer(format_duration, return_type=str)
]
"""A duration as llm-d's configs write it: Go text (``2s``) or integer nanoseconds; held as
float seconds and shown (``epp config --show``) as Go text, so the shown config reads back."""


# -- token-producer --------------------------------------------------------------------------


class VllmBackend(PluginParams):
    url: str = "http://localhost:8000"
    timeout: str = "5s"
    mm_timeout: str = "30s"


class TokenProducerParams(PluginParams):
    """llm-d's ``token-producer`` parameters, plus ``tokenizerPath`` (ours: a local
    ``tokenizer.json`` or its folder). ``vllm``, ``estimate`` and ``udsTokenizerConfig`` are
    accepted so llm-d's configs load; see docs/precise-prefix.md for what each becomes here."""

    model_name: str = ""
    tokenizer_path: str = ""
    vllm: VllmBackend | None = None
    estimate: dict[str, Any] | None = None
    uds_tokenizer_config: dict[str, Any] | None = None


# -- precise-prefix-cache-producer -----------------------------------------------------------


class TokenProcessorConfig(PluginParams):
    block_size_tokens: int = 0
    block_size: int = 0  # deprecated alias of blockSizeTokens (llm-d keeps it)
    hash_seed: str = ""

    @field_validator("block_size_tokens")
    @classmethod
    def _tokens(cls, value: int) -> int:
        if value < 0:
            raise ValueError(f"blockSizeTokens must be greater than 0, got {value}")
        return value

    @field_validator("block_size")
    @classmethod
    def _deprecated(cls, value: int, info: ValidationInfo) -> int:
        if value < 0 and not info.data.get("block_size_tokens"):
            raise ValueError(f"blockSizeTokens must be greater than 0, got {value}")
        return value

    def resolved_block_size(self) -> int:
        """llm-d's rule: blockSizeTokens, else the deprecated blockSize, else 16."""
        size = self.block_size_tokens or self.block_size or 16
        if size <= 0:
            raise ValueError(f"blockSizeTokens must be greater than 0, got {size}")
        return size


class InMemoryConfig(PluginParams):
    size: int = Field(100_000_000, ge=1)
    pod_cache_size: int = Field(10, ge=1)


class KVBlockIndexConfig(PluginParams):
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


class IndexerConfig(PluginParams):
    kv_block_index_config: KVBlockIndexConfig = Field(default_factory=KVBlockIndexConfig)
    tokenizers_pool_config: dict[str, Any] | None = None  # deprecated in llm-d; ignored
    kv_cache_backend_configs: list[dict[str, Any]] | None = None


class PodDiscoveryConfig(PluginParams):
    pod_label_selector: str = "llm-d.ai/inference-serving=true"
    pod_namespace: str = ""
    socket_port: int = Field(5557, ge=1, le=65535)
    replay_port: int = Field(0, ge=0, le=65535)  # ours: vLLM's replay ROUTER; 0 = no replay


class KVEventsConfig(PluginParams):
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


class PreciseProducerParams(PluginParams):
    token_processor_config: TokenProcessorConfig = Field(default_factory=TokenProcessorConfig)
    indexer_config: IndexerConfig = Field(default_factory=IndexerConfig)
    kv_events_config: KVEventsConfig = Field(default_factory=KVEventsConfig)
    speculative_indexing: bool = False
    speculative_ttl: LlmdDuration = Field(2.0, alias="speculativeTTL")


# -- scorers ---------------------------------------------------------------------------------


class NoHitLruParams(PluginParams):
    prefix_plugin_type: str = "prefix-cache-scorer"  # accepted; hits come from the producer
    prefix_plugin_name: str = "prefix-cache-scorer"
    prefix_match_info_producer_name: str = ""
    lru_size: int = Field(1024, ge=1)


class ActiveRequestParams(PluginParams):
    request_timeout: LlmdDuration = 0.0  # deprecated and ignored in llm-d too
    idle_threshold: int = Field(0, ge=0)
    max_busy_score: float = Field(1.0, ge=0.0, le=1.0)
