"""Saturation detectors: how full the pool is (flow control's dispatch gate, legacy shedding)
and whether one endpoint is full (the scheduling filter). Upstream's plugin type names and params.

``saturation(...) >= 1.0`` means saturated. The concurrency detector reads the datastore
endpoints' own ``inflight_requests``/``inflight_tokens``, which the director updates right after
admission; upstream counted in per-request clones that admission never saw (spec section 4.9).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal, Protocol, Self

from pydantic import Field

from endpoint_picker.datastore import Endpoint
from endpoint_picker.errors import ConfigError
from endpoint_picker.params import Duration, PluginParams, validate_params

log = logging.getLogger(__name__)


class SaturationDetector(Protocol):
    type_name: ClassVar[str]

    def saturation(self, endpoints: Sequence[Endpoint], now: float) -> float: ...

    def endpoint_saturated(self, endpoint: Endpoint, now: float) -> bool: ...

    def filter(self, endpoints: Sequence[Endpoint], now: float) -> list[Endpoint]: ...


class UtilizationParams(PluginParams):
    """``utilization-detector`` parameters (upstream's names and defaults)."""

    queue_depth_threshold: int = Field(5, gt=0)
    kv_cache_util_threshold: float = Field(0.8, gt=0, le=1)
    metrics_staleness_threshold: Duration = Field(0.2, gt=0)
    headroom: float = Field(0.0, ge=0)


class ConcurrencyParams(PluginParams):
    """``concurrency-detector`` parameters (upstream's names and defaults)."""

    concurrency_mode: Literal["requests", "tokens"] = "requests"
    max_concurrency: int = Field(100, gt=0)
    max_token_concurrency: int = Field(1_000_000, gt=0)
    headroom: float = Field(0.0, ge=0)


class UtilizationDetector:
    """``utilization-detector``: mean over endpoints of max(queue/threshold, kv/threshold);
    an endpoint with missing or stale metrics counts as fully saturated (1.0).

    Unlike upstream, each endpoint's share is capped at 1.0 before the mean. Upstream's uncapped
    mean lets one backed-up endpoint (queue 230 against a threshold of 5 reads 46) hold the
    whole pool saturated while the others sit idle: measured in benchmarks/routing.py, the pool
    then ran 7 of 16 slots and critical requests waited 21 s. Capped, the pool reads saturated
    only when every endpoint is at its thresholds, and is then exactly 1.0, so usage limits
    above 1.0 never hold with this detector.
    """

    type_name: ClassVar[str] = "utilization-detector"

    def __init__(
        self,
        queue_depth_threshold: int = 5,
        kv_cache_util_threshold: float = 0.8,
        metrics_staleness_threshold: float = 0.2,
        headroom: float = 0.0,
    ) -> None:
        self.queue_depth_threshold = queue_depth_threshold
        self.kv_cache_util_threshold = kv_cache_util_threshold
        self.metrics_staleness_threshold = metrics_staleness_threshold
        self.headroom = headroom

    params_model: ClassVar[type[UtilizationParams]] = UtilizationParams

    @classmethod
    def from_config(cls, p: UtilizationParams) -> Self:
        if p.headroom > 1:
            log.warning(
                "utilization-detector headroom %.2f > 1.0 allows over 2x the thresholds", p.headroom
            )
        return cls(
            p.queue_depth_threshold,
            float(p.kv_cache_util_threshold),
            p.metrics_staleness_threshold,
            float(p.headroom),
        )

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None = None) -> Self:
        path = f"{cls.type_name}.parameters"
        return cls.from_config(validate_params(cls.params_model, params, path=path))

    def _fresh(self, ep: Endpoint, now: float) -> bool:
        return ep.metrics.age(now) <= self.metrics_staleness_threshold

    def endpoint_load(self, ep: Endpoint, now: float) -> float:
        if not self._fresh(ep, now):
            return 1.0
        m = ep.metrics
        return max(
            ep.queue_depth / self.queue_depth_threshold,
            m.kv_cache_usage_percent / self.kv_cache_util_threshold,
        )

    def saturation(self, endpoints: Sequence[Endpoint], now: float) -> float:
        if not endpoints:
            return 1.0
        return sum(min(1.0, self.endpoint_load(ep, now)) for ep in endpoints) / len(endpoints)

    def endpoint_saturated(self, endpoint: Endpoint, now: float) -> bool:
        if not self._fresh(endpoint, now):
            return True
        scale = 1.0 + self.headroom
        m = endpoint.metrics
        return (
            endpoint.queue_depth >= self.queue_depth_threshold * scale
            or m.kv_cache_usage_percent >= self.kv_cache_util_threshold * scale
        )

    def filter(self, endpoints: Sequence[Endpoint], now: float) -> list[Endpoint]:
        """Unsaturated endpoints; all of them when none passes (fail-open, as upstream)."""
        kept = [ep for ep in endpoints if not self.endpoint_saturated(ep, now)]
        return kept if kept else list(endpoints)


class ConcurrencyDetector:
    """``concurrency-detector``: in-flight load over capacity, by requests or estimated tokens."""

    type_name: ClassVar[str] = "concurrency-detector"

    def __init__(
        self,
        concurrency_mode: str = "requests",
        max_concurrency: int = 100,
        max_token_concurrency: int = 1_000_000,
        headroom: float = 0.0,
    ) -> None:
        if concurrency_mode not in ("requests", "tokens"):
            raise ValueError(f"concurrency_mode must be requests or tokens, got {concurrency_mode}")
        self.tokens = concurrency_mode == "tokens"
        self.max_concurrency = max_concurrency
        self.max_token_concurrency = max_token_concurrency
        self.headroom = headroom

    params_model: ClassVar[type[ConcurrencyParams]] = ConcurrencyParams

    @classmethod
    def from_config(cls, p: ConcurrencyParams) -> Self:
        return cls(
            p.concurrency_mode, p.max_concurrency, p.max_token_concurrency, float(p.headroom)
        )

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None = None) -> Self:
        path = f"{cls.type_name}.parameters"
        return cls.from_config(validate_params(cls.params_model, params, path=path))

    @property
    def capacity(self) -> int:
        """Per-endpoint capacity in the current mode."""
        return self.max_token_concurrency if self.tokens else self.max_concurrency

    def load(self, ep: Endpoint) -> int:
        return ep.inflight_tokens if self.tokens else ep.inflight_requests

    def saturation(self, endpoints: Sequence[Endpoint], now: float) -> float:
        if not endpoints:
            return 1.0
        return sum(self.load(ep) for ep in endpoints) / (self.capacity * len(endpoints))

    def endpoint_saturated(self, endpoint: Endpoint, now: float) -> bool:
        return self.load(endpoint) >= self.capacity * (1.0 + self.headroom)

    def filter(self, endpoints: Sequence[Endpoint], now: float) -> list[Endpoint]:
        """Endpoints below capacity; may be empty (no fail-open, as upstream)."""
        return [ep for ep in endpoints if not self.endpoint_saturated(ep, now)]


SATURATION_DETECTORS: dict[str, type[UtilizationDetector] | type[ConcurrencyDetector]] = {
    UtilizationDetector.type_name: UtilizationDetector,
    ConcurrencyDetector.type_name: ConcurrencyDetector,
}


def detector_from_config(
    type_name: str, params: Mapping[str, Any] | None = None
) -> SaturationDetector:
    """A detector by upstream type name: ``utilization-detector`` or ``concurrency-detector``."""
    cls = SATURATION_DETECTORS.get(type_name)
    if cls is None:
        raise ConfigError(
            f"unknown saturation detector {type_name!r} (known: {', '.join(SATURATION_DETECTORS)})",
            path="saturationDetector",
        )
    return cls.from_params(params)
