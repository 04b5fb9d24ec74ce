"""``FastHistogram`` records exactly what the client's own ``observe`` records."""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.exposition import generate_latest

from endpoint_picker.metrics import FastHistogram

BUCKETS = (0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1)
VALUES = [0.0, 0.0001, 0.00010001, 0.0005, 0.003, 0.1, 0.1000001, 7.0, -1.0, math.inf, math.nan]


def _samples(registry: CollectorRegistry) -> list[str]:
    """The exposition's sample lines, less ``_created`` (when each histogram was made)."""
    lines = generate_latest(registry).decode().splitlines()
    return [ln for ln in lines if not ln.startswith("t_seconds_created")]


def _histogram(registry: CollectorRegistry) -> Histogram:
    return Histogram("t_seconds", "test", ["plugin"], buckets=BUCKETS, registry=registry)


def test_same_exposition_as_the_clients_observe() -> None:
    slow_registry, fast_registry = CollectorRegistry(), CollectorRegistry()
    slow = _histogram(slow_registry).labels("p")
    fast = FastHistogram(_histogram(fast_registry).labels("p"))
    assert fast.observe != fast.child.observe  # the fast path is in use with this client
    for value in VALUES * 3:
        slow.observe(value)
        fast.observe(value)
    assert _samples(fast_registry) == _samples(slow_registry)
    # Bucket edges are inclusive, as the client's ``amount <= bound``.
    assert 't_seconds_bucket{le="0.0001",plugin="p"} 9.0' in _samples(fast_registry)


def test_unknown_internals_fall_back_to_the_clients_observe() -> None:
    class Child:
        def __init__(self) -> None:
            self.seen: list[float] = []

        def observe(self, amount: float) -> None:
            self.seen.append(amount)

    child = Child()
    fast = FastHistogram(child)
    fast.observe(0.5)
    assert child.seen == [0.5]
