"""Saturation detectors: how full the pool is (flow control's dispatch gate, legacy shedding)
and whether one endpoint is full (the scheduling filter). Upstream's plugin type names and params.

``saturation(...) >= 1.0`` means saturated. The concurrency detector reads the datastore
endpoints' own ``inflight_requests``/``inflight_tokens``, which the director updates right after
admission; upstream counted in per-request clones that admission never saw (spec section 4.9).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Protocol, Self

from endpoint_picker.datastore import Endpoint
from endpoint_picker.errors import ConfigError
from endpoint_picker.units import parse_duration

log = logging.getLogger(__name__)


class SaturationDetector(Protocol):
    type_name: ClassVar[str]

    def saturation(self, endpoints: Sequence[Endpoint], now: float) -> float: ...

    def endpoint_saturated(self, endpoint: Endpoint, now: float) -> bool: ...

    def filter(self, endpoints: Sequence[Endpoint], now: float) -> list[Endpoint]: ...


class _Params:
    """Strict reading of a plugin's ``parameters`` with ConfigError naming the field."""

    def __init__(self, type_name: str, params: Mapping[str, Any] | None) -> None:
        self.type_name, self.params, self.seen = type_name, dict(params or {}), set[str]()
        if params is not None and not isinstance(params, Mapping):
            raise ConfigError("parameters must be a mapping", path=f"{type_name}.parameters")

    def error(self, key: str, reason: str) -> ConfigError:
        return ConfigError(reason, path=f"{self.type_name}.parameters.{key}")

    def number(self, key: str, default: float, *, integer: bool = False) -> float:
        self.seen.add(key)
        v = self.params.get(key, default)
        ok = isinstance(v, int) if integer else isinstance(v, int | float)
        if isinstance(v, bool) or not ok:
            raise self.error(key, f"expected {'an integer' if integer else 'a number'}, got {v!r}")
        return float(v)

    def duration(self, key: str, default: float) -> float:
        self.seen.add(key)
        if key not in self.params:
            return default
        try:
            return parse_duration(self.params[key])
        except ValueError as exc:
            raise self.error(key, str(exc)) from None

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        self.seen.add(key)
        v = self.params.get(key, default)
        if v not in choices:
            raise self.error(key, f"must be one of {', '.join(choices)}, got {v!r}")
        return str(v)

    def finish(self) -> None:
        for key in self.params:
            if key not in self.seen:
                raise self.error(key, "unknown parameter")


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

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None = None) -> Self:
        p = _Params(cls.type_name, params)
        q = int(p.number("queueDepthThreshold", 5, integer=True))
        kv = p.number("kvCacheUtilThreshold", 0.8)
        stale = p.duration("metricsStalenessThreshold", 0.2)
        headroom = p.number("headroom", 0.0)
        p.finish()
        if q <= 0:
            raise p.error("queueDepthThreshold", f"must be > 0, got {q}")
        if not 0 < kv <= 1:
            raise p.error("kvCacheUtilThreshold", f"must be in (0, 1], got {kv}")
        if stale <= 0:
            raise p.error("metricsStalenessThreshold", "must be > 0")
        if headroom < 0:
            raise p.error("headroom", f"must be >= 0, got {headroom}")
        if headroom > 1:
            log.warning(
                "utilization-detector headroom %.2f > 1.0 allows over 2x the thresholds", headroom
            )
        return cls(q, float(kv), stale, float(headroom))

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

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None = None) -> Self:
        p = _Params(cls.type_name, params)
        mode = p.choice("concurrencyMode", "requests", ("requests", "tokens"))
        max_c = int(p.number("maxConcurrency", 100, integer=True))
        max_t = int(p.number("maxTokenConcurrency", 1_000_000, integer=True))
        headroom = p.number("headroom", 0.0)
        p.finish()
        if max_c <= 0:
            raise p.error("maxConcurrency", f"must be > 0, got {max_c}")
        if max_t <= 0:
            raise p.error("maxTokenConcurrency", f"must be > 0, got {max_t}")
        if headroom < 0:
            raise p.error("headroom", f"must be >= 0, got {headroom}")
        return cls(mode, max_c, max_t, float(headroom))

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
