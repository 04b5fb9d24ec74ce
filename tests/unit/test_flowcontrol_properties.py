"""Property-based tests: random arrivals, cancellations, expiries, completions and capacity
changes against a real FlowController on an event loop with a FakeClock."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from endpoint_picker.clock import FakeClock
from endpoint_picker.datastore import Endpoint
from endpoint_picker.errors import ResourceExhausted, ServiceUnavailable
from endpoint_picker.flowcontrol import ConcurrencyDetector, FlowControlConfig, FlowController
from endpoint_picker.flowcontrol import metrics as m
from endpoint_picker.flowcontrol.bands import FlowRegistry
from endpoint_picker.flowcontrol.config import PriorityBandConfig
from endpoint_picker.flowcontrol.types import FlowKey, Item, Outcome
from endpoint_picker.requests.types import InferenceRequest

_pools = itertools.count()
FLOWS = ("a", "b", "c")
PRIORITIES = (-1, 0, 2)

KINDS = ("arrive",) * 4 + ("cancel", "complete", "complete", "advance", "capacity")
# One flat tuple per op: (kind, flow, priority, size, index, seconds, capacity).
op = st.tuples(
    st.sampled_from(KINDS),
    st.sampled_from(FLOWS),
    st.sampled_from(PRIORITIES),
    st.integers(0, 40),
    st.integers(0, 99),
    st.floats(0, 20),
    st.integers(1, 3),
)
configs = st.builds(
    lambda mr, mb, bmr, ttl, fair, order: FlowControlConfig(
        max_requests=mr,
        max_bytes=mb,
        default_request_ttl=ttl,
        default_priority_band=PriorityBandConfig(
            max_requests=bmr, fairness_policy=fair, ordering_policy=order
        ),
    ),
    st.integers(0, 8),
    st.sampled_from([0, 60, 150]),
    st.integers(0, 4),
    st.sampled_from([0.0, 5.0, 30.0]),
    st.sampled_from(["global-strict-fairness-policy", "round-robin-fairness-policy"]),
    st.sampled_from(
        ["fcfs-ordering-policy", "edf-ordering-policy", "slo-deadline-ordering-policy"]
    ),
)


@dataclass
class World:
    fc: FlowController
    ep: Endpoint
    det: ConcurrencyDetector
    results: dict[str, list[str]] = field(default_factory=dict)
    waiting: list[tuple[InferenceRequest, asyncio.Task[None]]] = field(default_factory=list)
    inflight: list[InferenceRequest] = field(default_factory=list)
    release: dict[str, asyncio.Event] = field(default_factory=dict)
    cap_at_dispatch: dict[str, int] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)

    async def handle(self, r: InferenceRequest) -> None:
        try:
            await self.fc.admit(r)
        except ResourceExhausted:
            self.results[r.request_id].append("rejected")
            return
        except ServiceUnavailable:
            self.results[r.request_id].append("expired")
            return
        except asyncio.CancelledError:
            self.results[r.request_id].append("cancelled")
            raise
        self.results[r.request_id].append("dispatched")
        self.ep.inflight_requests += 1
        # in-flight accounting is seen by admission: never over the capacity of the moment
        if self.ep.inflight_requests > self.cap_at_dispatch[r.request_id]:
            self.violations.append(f"{self.ep.inflight_requests} in flight after {r.request_id}")
        self.inflight.append(r)
        ev = self.release[r.request_id] = asyncio.Event()
        await ev.wait()
        self.ep.inflight_requests -= 1
        self.fc.notify()


def instrument(w: World) -> None:
    """Check strict priority at every dispatch and note the capacity it saw."""
    reg = w.fc.registry
    original = reg.select

    def select(saturation: float, now: float) -> Any:
        busy = [p for p, b in reg.bands.items() if b.len > 0]
        got = original(saturation, now)
        # (recorded, not asserted: this runs inside loop callbacks, which swallow exceptions)
        if isinstance(got, Item):
            if got.key.priority != max(busy):
                w.violations.append(f"band {got.key.priority} overtook queued band {max(busy)}")
            if w.ep.inflight_requests >= w.det.max_concurrency:
                w.violations.append(f"dispatched at {w.ep.inflight_requests} in flight")
            w.cap_at_dispatch[got.request.request_id] = w.det.max_concurrency
        return got

    reg.select = select  # type: ignore[method-assign]


def check_limits(cfg: FlowControlConfig, reg: FlowRegistry) -> None:
    if cfg.max_requests:
        assert reg.len <= cfg.max_requests
    if cfg.max_bytes:
        assert reg.bytes <= cfg.max_bytes
    for band in reg.bands.values():
        if band.config.max_requests:
            assert band.len <= band.config.max_requests
        assert band.bytes <= band.config.max_bytes
        assert band.len == sum(f.len for f in band.flows.values())
    assert reg.len == sum(b.len for b in reg.bands.values())


async def scenario(cfg: FlowControlConfig, ops: list[tuple[Any, ...]]) -> None:
    clock, ep = FakeClock(), Endpoint(name="e", pod_name="e", address="10.0.0.1", port=80)
    det = ConcurrencyDetector(max_concurrency=1)
    pool = f"prop-{next(_pools) % 4}"
    w = World(FlowController(cfg, det, lambda: [ep], clock, pool_name=pool), ep, det)
    instrument(w)
    await w.fc.start()
    n = 0
    for kind, flow, priority, size, index, seconds, capacity in ops:
        if kind == "arrive":
            n += 1
            r = InferenceRequest(
                request_id=f"q{n}",
                headers={"x-slo-ttft-ms": str(n % 7)},
                raw_body=b"x" * size,
                priority=priority,
                fairness_id=flow,
            )
            w.results[r.request_id] = []
            w.waiting.append((r, asyncio.create_task(w.handle(r))))
        elif kind == "cancel":
            pending = [t for r, t in w.waiting if not w.results[r.request_id]]
            if pending:
                pending[index % len(pending)].cancel()
        elif kind == "complete" and w.inflight:
            w.release[w.inflight.pop(index % len(w.inflight)).request_id].set()
        elif kind == "advance":
            clock.advance(seconds)
            w.fc.notify()
        elif kind == "capacity":
            det.max_concurrency = capacity
            w.fc.notify()
        for _ in range(6):
            await asyncio.sleep(0)
        check_limits(cfg, w.fc.registry)
    # Wind down: unlimited capacity, release everything, until every task is finished.
    det.max_concurrency = 10**6
    w.fc.notify()
    for _ in range(1000):
        while w.inflight:
            w.release[w.inflight.pop().request_id].set()
        if all(t.done() for _, t in w.waiting):
            break
        await asyncio.sleep(0)
    assert w.violations == []
    assert all(t.done() for _, t in w.waiting)
    await w.fc.stop()

    # every request finalized exactly once, and the books balance
    assert all(len(v) == 1 for v in w.results.values()), w.results
    kinds = Counter(v[0] for v in w.results.values())
    assert sum(kinds.values()) == n
    assert w.fc.outcomes[Outcome.DISPATCHED] == kinds["dispatched"]
    assert w.fc.outcomes[Outcome.REJECTED_CAPACITY] == kinds["rejected"]
    assert w.fc.outcomes[Outcome.EVICTED_TTL] == kinds["expired"]
    assert w.fc.outcomes[Outcome.EVICTED_CONTEXT_CANCELLED] == kinds["cancelled"]
    assert sum(w.fc.outcomes.values()) == n
    assert (w.fc.registry.len, w.fc.registry.bytes, ep.inflight_requests) == (0, 0, 0)
    # queue gauges are back to zero (only this metric family is collected: the shared
    # registry grows over the session, and a full REGISTRY scan per example would dominate)
    for gauge in (m.QUEUE_SIZE, m.QUEUE_BYTES):
        samples = [
            s for fam in gauge.collect() for s in fam.samples if s.labels["inference_pool"] == pool
        ]
        assert (bool(samples) or n == 0) and all(s.value == 0.0 for s in samples)


@settings(max_examples=100, deadline=None)
@given(configs, st.lists(op, min_size=10, max_size=60))
def test_random_sequences_keep_every_invariant(cfg: FlowControlConfig, ops: list[Any]) -> None:
    asyncio.run(scenario(cfg, ops))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from("abcdef"), min_size=1, max_size=60))
def test_round_robin_backlogged_flows_stay_within_one(arrivals: list[str]) -> None:
    cfg = FlowControlConfig(
        default_priority_band=PriorityBandConfig(fairness_policy="round-robin-fairness-policy")
    )
    reg = FlowRegistry(cfg)
    for i, f in enumerate(arrivals):
        r = InferenceRequest(request_id=str(i), headers={}, fairness_id=f)
        assert reg.enqueue(Item(r, FlowKey(f, 0), i, 0.0, float("inf"), None), 0.0)
    remaining = Counter(arrivals)
    served: Counter[str] = Counter()
    while True:
        got = reg.select(0.0, 0.0)
        if not isinstance(got, Item):
            break
        got.outcome = Outcome.DISPATCHED
        f = got.key.fairness_id
        served[f] += 1
        remaining[f] -= 1
        # flows still backlogged have each been served within one of every other flow so far
        backlogged = [g for g in remaining if remaining[g] > 0]
        for g in backlogged:
            assert all(served[g] >= served[h] - 1 for h in remaining)
    assert served == Counter(arrivals)
