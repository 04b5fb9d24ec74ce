"""Every knob of the simulator in one dataclass, and the named profiles that preset them.

Names and meanings follow llm-d-inference-sim (``max-num-seqs``, ``prefill-overhead``,
``time-factor-under-load`` ...) so a reader who knows that simulator or vLLM finds them again.
Times are in seconds. ``epp sim`` turns every field into a ``--flag`` of the same name.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from endpoint_picker.errors import ConfigError

# llm-d.ai/role values a simulator can play; "decode" and "both" run the P/D sidecar.
ROLES = ("", "prefill", "decode", "both")
SIDECAR_ROLES = ("decode", "both")


@dataclass(slots=True)
class SimConfig:
    """Capacity, latency, cache, LoRA and fault knobs of one simulated vLLM instance."""

    model: str = "sim-model"
    lora: tuple[str, ...] = ()
    # Capacity (vLLM --max-num-seqs, --max-model-len; llm-d --max-waiting-queue-length).
    max_num_seqs: int = 5
    max_waiting_queue_length: int = 1000
    max_model_len: int = 1024
    default_max_tokens: int = 128
    # Latency model (llm-d "per-token" calculator).
    prefill_overhead: float = 0.03
    prefill_time_per_token: float = 0.0002
    inter_token_latency: float = 0.012
    time_factor_under_load: float = 1.0
    # vLLM's token budget per engine step with chunked prefill. 0: prefills run beside the
    # decode steps (no interference, the model above); N > 0: each step computes its decode
    # tokens plus prompt chunks up to N tokens and lasts longer by their prefill time.
    max_num_batched_tokens: int = 0
    jitter: float = 0.0  # std-dev as a fraction of each mean, at most 0.3; samples clamped to +-70%
    seed: int = 0
    # KV cache.
    block_size: int = 16
    num_gpu_blocks: int = 1024
    enable_prefix_caching: bool = True
    # KV events (vLLM's --kv-events-config): 0 / "" = off. Instance i of a fleet gets port + i.
    kv_events_port: int = 0  # bind a PUB socket on host:port (vLLM's tcp://*:5557); -1 any port
    kv_events_endpoint: str = ""  # or connect the PUB to a central subscriber (tcp://host:port)
    kv_events_replay_port: int = 0  # ROUTER answering replay requests (vLLM's replay_endpoint)
    kv_events_topic: str = "kv@{endpoint}@{model}"  # llm-d's convention; {endpoint} = host:port
    kv_events_engine: str = "vllm"  # or "sglang": its variant of the same wire format
    hash_seed: str = ""  # the engine's block-hash seed (vLLM's PYTHONHASHSEED); the EPP ignores it
    # LoRA.
    max_loras: int = 1
    lora_load_time: float = 0.05
    # Other endpoints.
    embedding_dim: int = 16
    max_body_bytes: int = 16 * 1024 * 1024
    # Faults.
    fail_rate: float = 0.0
    fail_statuses: tuple[int, ...] = (500, 503, 429)
    slow_metrics: float = 0.0  # seconds /metrics waits before answering
    stale_metrics: float = 0.0  # seconds a rendered /metrics body is served again unchanged
    stream_interval: int = 1  # tokens per SSE write (vLLM --stream-interval)
    # Prefill/decode disaggregation (docs/simulator.md, "P/D"). A "decode" (or "both") instance
    # runs llm-d's routing sidecar: given x-prefiller-host-port it has that prefiller do the
    # prefill, then pulls the KV over a link of this bandwidth and decodes locally.
    role: str = ""  # "" (aggregated, no sidecar), "prefill", "decode" or "both"
    kv_bytes_per_token: int = 131072  # KV bytes one token takes (Llama-3-8B fp16: 128 KiB)
    kv_transfer_bandwidth: float = 25e9  # bytes/s of the prefiller -> decoder link (200 Gb/s)
    kv_transfer_latency: float = 0.001  # fixed cost of one KV transfer (handshake, notify), s
    profile: str = field(default="custom", compare=False)

    def __post_init__(self) -> None:
        self.validate()

    @property
    def sidecar(self) -> bool:
        """Whether this instance acts as llm-d's decode sidecar on ``x-prefiller-host-port``."""
        return self.role in SIDECAR_ROLES

    def validate(self) -> None:
        """Reject impossible settings with the field name and the reason."""
        positive = ("max_num_seqs", "max_model_len", "block_size", "num_gpu_blocks", "max_loras")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"must be >= 1, got {getattr(self, name)}", path=name)
        non_negative = (
            "max_waiting_queue_length",
            "prefill_overhead",
            "prefill_time_per_token",
            "inter_token_latency",
            "lora_load_time",
            "slow_metrics",
            "stale_metrics",
            "seed",
            "kv_bytes_per_token",
            "kv_transfer_latency",
            "max_num_batched_tokens",
        )
        for name in non_negative:
            if getattr(self, name) < 0:
                raise ConfigError(f"must be >= 0, got {getattr(self, name)}", path=name)
        if self.role not in ROLES:
            raise ConfigError(f"must be one of {ROLES}, got {self.role!r}", path="role")
        if self.kv_transfer_bandwidth <= 0:
            raise ConfigError("must be > 0 (bytes per second)", path="kv_transfer_bandwidth")
        if self.time_factor_under_load < 1.0:
            raise ConfigError("must be >= 1.0", path="time_factor_under_load")
        if not 0.0 <= self.jitter <= 0.3:
            raise ConfigError(
                "must be within [0, 0.3] (std-dev as a fraction of the mean)", path="jitter"
            )
        if not 0.0 <= self.fail_rate <= 1.0:
            raise ConfigError("must be within [0, 1]", path="fail_rate")
        if self.default_max_tokens < 1 or self.stream_interval < 1 or self.embedding_dim < 1:
            raise ConfigError("default_max_tokens, stream_interval, embedding_dim must be >= 1")
        if self.max_body_bytes < 4 * 1024 * 1024:
            raise ConfigError("must be at least 4 MiB", path="max_body_bytes")
        if not self.model or self.model in self.lora:
            raise ConfigError(
                "model must be non-empty and differ from every LoRA name", path="model"
            )
        if self.kv_events_port and self.kv_events_endpoint:
            raise ConfigError(
                "give kv_events_port (bind) or kv_events_endpoint (connect), not both",
                path="kv_events_endpoint",
            )
        if self.kv_events_replay_port and not (self.kv_events_port or self.kv_events_endpoint):
            raise ConfigError(
                "needs kv_events_port or kv_events_endpoint", path="kv_events_replay_port"
            )
        for status in self.fail_statuses:
            if not 400 <= status <= 599:
                raise ConfigError(f"not an HTTP error status: {status}", path="fail_statuses")

    @classmethod
    def from_profile(cls, name: str, **overrides: Any) -> SimConfig:
        """The named profile with ``overrides`` applied; unknown names fail with the choices."""
        if name not in PROFILES:
            raise ConfigError(
                f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}", path="profile"
            )
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(f"unknown simulator knob(s): {', '.join(unknown)}")
        values: dict[str, Any] = {**PROFILES[name], **overrides, "profile": name}
        for key in ("lora", "fail_statuses"):
            if key in values and isinstance(values[key], list):
                values[key] = tuple(values[key])
        return cls(**values)


PROFILES: dict[str, dict[str, Any]] = {
    # Fast and small, so tests see queueing, eviction and LoRA swaps within milliseconds.
    "tiny-test": {
        "max_num_seqs": 4,
        "max_waiting_queue_length": 16,
        "max_model_len": 512,
        "default_max_tokens": 16,
        "prefill_overhead": 0.002,
        "prefill_time_per_token": 0.0001,
        "inter_token_latency": 0.002,
        "block_size": 4,
        "num_gpu_blocks": 256,
        "kv_bytes_per_token": 8192,
        "kv_transfer_bandwidth": 1e9,
        "max_loras": 2,
        "lora_load_time": 0.005,
    },
    # A 7-8B model on one H100 (llm-d docs/latency-profiles.md, "balanced per-token"): TTFT of
    # 60-120 ms for ~200-token prompts, ITL 10-15 ms; ~27k blocks of 16 tokens fit the KV budget.
    "8b-h100": {
        "max_num_seqs": 256,
        "max_waiting_queue_length": 1000,
        "max_model_len": 8192,
        "default_max_tokens": 256,
        "prefill_overhead": 0.03,
        "prefill_time_per_token": 0.0002,
        "inter_token_latency": 0.012,
        "time_factor_under_load": 1.5,
        "jitter": 0.1,
        "block_size": 16,
        "num_gpu_blocks": 27000,
        "max_loras": 4,
        "lora_load_time": 0.05,
    },
    # llm-d-inference-sim's own defaults (max-num-seqs 5, 1024 blocks, max-model-len 1024).
    "default": {},
}
