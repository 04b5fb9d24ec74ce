"""Saturation detectors: upstream's tables for saturation and the scheduling filter."""

from __future__ import annotations

import pytest

from endpoint_picker.datastore import Endpoint, Metrics
from endpoint_picker.flowcontrol import ConcurrencyDetector, UtilizationDetector

NOW = 1000.0


def ep(queue: int = 0, kv: float = 0.0, age: float | None = 0.0, name: str = "e") -> Endpoint:
    e = Endpoint(name=name, pod_name=name, address="10.0.0.1", port=8000)
    updated = 0.0 if age is None else NOW - age
    e.metrics = Metrics(waiting_queue_size=queue, kv_cache_usage_percent=kv, update_time=updated)
    return e


@pytest.mark.parametrize(
    ("endpoints", "expected"),
    [
        ([], 1.0),  # no pods
        ([ep()], 0.0),
        ([ep(queue=5)], 1.0),  # exactly at the queue threshold
        ([ep(kv=0.4)], 0.5),
        ([ep(queue=2, kv=0.4)], 0.5),  # max of the two ratios
        ([ep(queue=10)], 1.0),  # capped (upstream reads 2.0)
        ([ep(queue=500), ep(), ep(), ep()], 0.25),  # one backed-up endpoint is 1/4 of the pool
        ([ep(age=None)], 1.0),  # never scraped
        ([ep(age=0.3)], 1.0),  # stale (> 200 ms)
        ([ep(age=0.19)], 0.0),  # within the staleness bound
        ([ep(), ep(age=None)], 0.5),
        ([ep(queue=1), ep(kv=0.8)], 0.6),
    ],
)
def test_utilization_saturation(endpoints: list[Endpoint], expected: float) -> None:
    assert UtilizationDetector().saturation(endpoints, NOW) == pytest.approx(expected)


def test_utilization_filter_headroom_and_fail_open() -> None:
    d = UtilizationDetector(headroom=0.2)  # thresholds become 6 waiting, 0.96 kv
    a, b, c, stale = (
        ep(queue=5, name="a"),
        ep(queue=6, name="b"),
        ep(kv=0.9, name="c"),
        ep(age=1.0, name="s"),
    )
    assert d.filter([a, b, c, stale], NOW) == [a, c]
    assert d.endpoint_saturated(b, NOW) and d.endpoint_saturated(stale, NOW)
    assert not d.endpoint_saturated(a, NOW)
    assert d.filter([b, stale], NOW) == [b, stale]  # none pass: fail open


def test_concurrency_requests_and_tokens() -> None:
    a, b = ep(name="a"), ep(name="b")
    d = ConcurrencyDetector(max_concurrency=4)
    assert d.saturation([], NOW) == 1.0
    assert d.saturation([a, b], NOW) == 0.0
    a.inflight_requests = 3
    b.inflight_requests = 1
    assert d.saturation([a, b], NOW) == 0.5
    a.inflight_requests = 4
    assert d.endpoint_saturated(a, NOW) and not d.endpoint_saturated(b, NOW)
    assert d.filter([a, b], NOW) == [b]
    b.inflight_requests = 4
    assert d.filter([a, b], NOW) == []  # no fail-open
    assert ConcurrencyDetector(max_concurrency=4, headroom=0.5).filter([a, b], NOW) == [a, b]
    t = ConcurrencyDetector("tokens", max_token_concurrency=1000)
    a.inflight_tokens, b.inflight_tokens = 900, 300
    assert t.saturation([a, b], NOW) == pytest.approx(0.6)
    assert t.filter([a, b], NOW) == [a, b]
    a.inflight_tokens = 1000
    assert t.filter([a, b], NOW) == [b]
