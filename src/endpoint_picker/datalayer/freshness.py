"""Freshness of scraped metrics, and the pool-level summary upstream exports as gauges.

There is no active health probe of model servers: a server that stops answering simply stops
refreshing its ``Metrics.update_time``. Consumers decide what "too old" means for them
(upstream: 2 s for the pool gauges, 200 ms for the utilization detector).

*Ready* means what ``inference_pool_ready_pods`` counts: metrics at most
``--metrics-staleness-threshold`` old (2 s by default, as upstream). The same threshold is used
by the gauges, the scheduler's candidates and flow control's view of the pool. Scheduling
candidates and flow control's view of the pool are the ready endpoints when there are any
(upstream's default profiles do not filter: an endpoint whose ``/metrics`` timed out kept
taking traffic, twice its share, and a killed server kept getting requests until Envoy failed
them). When none is ready (a cold start, a data layer that cannot scrape) every endpoint stays
a candidate, as upstream: routing never stops for lack of metrics alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from endpoint_picker.datastore import Endpoint, Metrics

DEFAULT_STALENESS_THRESHOLD = 2.0  # --metrics-staleness-threshold


def is_fresh(metrics: Metrics, now: float, threshold: float = DEFAULT_STALENESS_THRESHOLD) -> bool:
    """True when the metrics were scraped at most ``threshold`` seconds ago (never -> False)."""
    return metrics.age(now) <= threshold


def ready_endpoints(
    endpoints: Sequence[Endpoint], now: float, threshold: float = DEFAULT_STALENESS_THRESHOLD
) -> list[Endpoint]:
    """The endpoints with fresh metrics (possibly none)."""
    return [ep for ep in endpoints if ep.metrics.age(now) <= threshold]


def candidates(
    endpoints: Sequence[Endpoint], now: float, threshold: float = DEFAULT_STALENESS_THRESHOLD
) -> Sequence[Endpoint]:
    """The ready endpoints, or all of them when none is ready (see the module docstring)."""
    ready = ready_endpoints(endpoints, now, threshold)
    return ready if ready else endpoints


@dataclass(frozen=True, slots=True)
class PoolStats:
    """Upstream's pool gauges: ``inference_pool_ready_pods`` and averages over fresh endpoints."""

    ready_pods: int
    average_kv_cache_utilization: float
    average_queue_size: float
    average_running_requests: float


def pool_stats(
    endpoints: Iterable[Endpoint], now: float, threshold: float = DEFAULT_STALENESS_THRESHOLD
) -> PoolStats:
    """Summarise endpoints with fresh metrics; stale ones are left out of count and averages."""
    fresh = [ep.metrics for ep in endpoints if is_fresh(ep.metrics, now, threshold)]
    n = len(fresh)
    if n == 0:
        return PoolStats(0, 0.0, 0.0, 0.0)
    return PoolStats(
        ready_pods=n,
        average_kv_cache_utilization=sum(m.kv_cache_usage_percent for m in fresh) / n,
        average_queue_size=sum(m.waiting_queue_size for m in fresh) / n,
        average_running_requests=sum(m.running_requests_size for m in fresh) / n,
    )
