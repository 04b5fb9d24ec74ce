"""FlowController and LegacyAdmission on a real event loop with an injected FakeClock."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence

import pytest

from endpoint_picker.clock import FakeClock
from endpoint_picker.datastore import Endpoint
from endpoint_picker.errors import Internal, ResourceExhausted, ServiceUnavailable
from endpoint_picker.flowcontrol import (
    CAPACITY_MESSAGE,
    SHED_MESSAGE,
    ConcurrencyDetector,
    FlowControlConfig,
    FlowController,
    LegacyAdmission,
    Outcome,
    UtilizationDetector,
    build_admission,
)
from endpoint_picker.flowcontrol.config import PriorityBandConfig
from endpoint_picker.metrics import REGISTRY
from endpoint_picker.requests.types import InferenceRequest

_ids = itertools.count()


def req(priority: int = 0, flow: str = "t", size: int = 10, **headers: str) -> InferenceRequest:
    return InferenceRequest(
        request_id=f"r{next(_ids)}",
        headers={k.replace("_", "-"): v for k, v in headers.items()},
        raw_body=b"x" * size,
        priority=priority,
        fairness_id=flow,
        incoming_model="m",
        target_model="m",
    )


def endpoint(name: str = "e0") -> Endpoint:
    return Endpoint(name=name, pod_name=name, address="10.0.0.1", port=8000)


async def steps(n: int = 10) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


class Director:
    """Plays the director's part: count in flight in the ``dispatch`` callback admission runs;
    release on completion and notify. This is the accounting the concurrency detector must see.
    ``steps_after_admit`` makes the caller await after admit returns, as a careless edit of the
    real director could."""

    def __init__(self, fc: FlowController | LegacyAdmission, ep: Endpoint) -> None:
        self.fc, self.ep = fc, ep
        self.dispatched: list[InferenceRequest] = []
        self.errors: list[Exception] = []
        self.done: dict[str, asyncio.Event] = {}
        self.steps_after_admit = 0

    def _count(self, r: InferenceRequest) -> None:
        self.ep.inflight_requests += 1
        self.dispatched.append(r)

    async def handle(self, r: InferenceRequest) -> None:
        try:
            await self.fc.admit(r, lambda: self._count(r))
        except (ResourceExhausted, ServiceUnavailable, Internal) as exc:
            self.errors.append(exc)
            return
        await steps(self.steps_after_admit)
        ev = self.done.setdefault(r.request_id, asyncio.Event())
        await ev.wait()
        self.ep.inflight_requests -= 1
        self.fc.notify()

    def complete(self, r: InferenceRequest) -> None:
        self.done.setdefault(r.request_id, asyncio.Event()).set()


async def make(
    config: FlowControlConfig | None = None, max_concurrency: int = 1, pool: str = "p"
) -> tuple[FlowController, Endpoint, FakeClock, Director]:
    ep, clock = endpoint(), FakeClock()
    fc = FlowController(
        config or FlowControlConfig(),
        ConcurrencyDetector(max_concurrency=max_concurrency),
        lambda: [ep],
        clock,
        pool_name=pool,
    )
    await fc.start()
    return fc, ep, clock, Director(fc, ep)


async def test_inflight_accounting_is_seen_by_admission() -> None:
    # Upstream's bug (spec 4.9): in-flight counts invisible to admission. Here 20 arrivals at once
    # against capacity 3 must dispatch exactly 3, then one more per completion.
    fc, ep, _, d = await make(max_concurrency=3)
    rs = [req() for _ in range(20)]
    tasks = [asyncio.create_task(d.handle(r)) for r in rs]
    await steps(30)
    assert len(d.dispatched) == 3 and ep.inflight_requests == 3
    assert fc.registry.len == 17
    d.complete(d.dispatched[0])
    await steps(30)
    assert len(d.dispatched) == 4 and ep.inflight_requests == 3
    for r in rs:
        d.complete(r)
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert [r.request_id for r in d.dispatched] == [r.request_id for r in rs]  # FCFS
    assert fc.outcomes == {Outcome.DISPATCHED: 20}
    await fc.stop()


async def test_a_caller_that_awaits_after_admit_cannot_break_accounting() -> None:
    # The director counts in flight inside admit's dispatch callback, so awaiting after admit
    # returns (here: 5 loop steps per request) cannot let a dispatch cycle see a stale count.
    fc, ep, _, d = await make(max_concurrency=2)
    d.steps_after_admit = 5
    rs = [req() for _ in range(10)]
    tasks = [asyncio.create_task(d.handle(r)) for r in rs]
    await steps(40)
    assert len(d.dispatched) == 2 and ep.inflight_requests == 2
    d.complete(d.dispatched[0])
    await steps(40)
    assert len(d.dispatched) == 3 and ep.inflight_requests == 2
    for r in rs:
        d.complete(r)
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert fc.outcomes == {Outcome.DISPATCHED: 10}
    await fc.stop()


async def test_an_error_in_dispatch_reaches_the_caller_and_frees_the_next_dispatch() -> None:
    fc, _, _, d = await make(max_concurrency=5)

    def broken() -> None:
        raise Internal("scheduler returned no endpoints")

    with pytest.raises(Internal):
        await fc.admit(req(), broken)
    # The controller is not left waiting for the failed request's caller to account for it.
    r = req()
    task = asyncio.create_task(d.handle(r))
    await steps()
    assert d.dispatched == [r]
    d.complete(r)
    await asyncio.wait_for(task, 5)
    await fc.stop()


async def test_strict_priority_and_head_of_line_hold() -> None:
    fc, _, _, d = await make(max_concurrency=1)
    first = req(priority=0)
    t0 = asyncio.create_task(d.handle(first))
    await steps()
    low = [req(priority=0, flow=f"l{i}") for i in range(3)]
    high = [req(priority=5, flow=f"h{i}") for i in range(3)]
    tasks = [asyncio.create_task(d.handle(r)) for r in low + high]
    await steps()
    assert d.dispatched == [first]  # saturated: everyone waits, nobody overtakes
    for _ in range(6):
        d.complete(d.dispatched[-1])
        await steps()
    assert [r.priority for r in d.dispatched[1:]] == [5, 5, 5, 0, 0, 0]
    d.complete(d.dispatched[-1])
    await asyncio.wait_for(asyncio.gather(t0, *tasks), 5)
    await fc.stop()


async def test_capacity_rejection_is_429_with_upstream_message() -> None:
    cfg = FlowControlConfig(max_requests=2)
    fc, _, _, d = await make(cfg, max_concurrency=1)
    rs = [req() for _ in range(4)]
    tasks = [asyncio.create_task(d.handle(r)) for r in rs]
    await steps()
    # one dispatched, two queued (exactly at capacity is allowed), one rejected
    assert len(d.dispatched) == 1 and fc.registry.len == 2
    assert len(d.errors) == 1
    err = d.errors[0]
    assert isinstance(err, ResourceExhausted) and err.http_status == 429
    assert err.msg == CAPACITY_MESSAGE == "request rejected pre-queue: queue at capacity"
    assert fc.outcomes[Outcome.REJECTED_CAPACITY] == 1
    for r in rs:
        d.complete(r)
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    await fc.stop()


async def test_band_byte_limit_with_quantity() -> None:
    cfg = FlowControlConfig.from_dict({"defaultPriorityBand": {"maxBytes": "1Ki"}})
    fc, _, _, d = await make(cfg, max_concurrency=1)
    blocker = req(size=1)
    tb = asyncio.create_task(d.handle(blocker))
    await steps()
    a, b = req(size=1000), req(size=25)
    ta, tb2 = asyncio.create_task(d.handle(a)), asyncio.create_task(d.handle(b))
    await steps()
    assert fc.registry.bytes == 1000 and len(d.errors) == 1  # 1000 + 25 > 1024
    for r in (blocker, a):
        d.complete(r)
    await asyncio.wait_for(asyncio.gather(tb, ta, tb2), 5)
    await fc.stop()


async def test_ttl_expiry_is_503_and_deterministic() -> None:
    cfg = FlowControlConfig(default_request_ttl=30.0)
    fc, _, clock, d = await make(cfg, max_concurrency=1)
    first, waiting = req(), req()
    t1 = asyncio.create_task(d.handle(first))
    await steps()
    clock.advance(10)
    t2 = asyncio.create_task(d.handle(waiting))
    await steps()
    clock.advance(29.9)
    fc.notify()
    await steps()
    assert d.errors == []  # deadline is enqueue time + 30 s
    clock.advance(0.2)
    fc.notify()
    await steps()
    assert len(d.errors) == 1
    err = d.errors[0]
    assert isinstance(err, ServiceUnavailable) and err.http_status == 503
    assert err.msg.startswith("request timed out in queue: ")
    assert fc.outcomes[Outcome.EVICTED_TTL] == 1 and fc.registry.len == 0
    d.complete(first)
    await asyncio.wait_for(asyncio.gather(t1, t2), 5)
    await fc.stop()


async def test_cancel_leaves_queue_at_once_and_records_outcome() -> None:
    fc, _, _, d = await make(max_concurrency=1, pool="cancel-pool")
    first, waiting = req(flow="c"), req(flow="c", size=7)
    t1 = asyncio.create_task(d.handle(first))
    await steps()
    t2 = asyncio.create_task(fc.admit(waiting))
    await steps()
    labels = {
        "fairness_id": "c",
        "priority": "0",
        "inference_pool": "cancel-pool",
        "model_name": "m",
        "target_model_name": "m",
    }
    size = "inference_extension_flow_control_queue_size"
    assert REGISTRY.get_sample_value(size, labels) == 1.0  # inside admit: the waiting one only
    assert REGISTRY.get_sample_value(size.replace("size", "bytes"), labels) == 7.0
    assert fc.registry.len == 1
    t2.cancel()
    with pytest.raises(asyncio.CancelledError):
        await t2
    assert fc.registry.len == 0 and fc.registry.bytes == 0
    assert fc.outcomes[Outcome.EVICTED_CONTEXT_CANCELLED] == 1
    assert REGISTRY.get_sample_value(size, labels) == 0.0
    hist = "inference_extension_flow_control_request_queue_duration_seconds_count"
    assert REGISTRY.get_sample_value(hist, {**labels, "outcome": "EvictedContextCancelled"}) == 1
    d.complete(first)
    await t1
    await fc.stop()


async def test_stop_evicts_queued_with_500_and_rejects_new() -> None:
    fc, _, _, d = await make(max_concurrency=1)
    rs = [req() for _ in range(3)]
    tasks = [asyncio.create_task(d.handle(r)) for r in rs]
    await steps()
    await fc.stop()
    await steps()
    assert len(d.errors) == 2 and all(isinstance(e, Internal) for e in d.errors)
    assert fc.outcomes[Outcome.EVICTED_OTHER] == 2
    with pytest.raises(Internal, match="internal flow control error"):
        await fc.admit(req())
    assert fc.outcomes[Outcome.REJECTED_OTHER] == 1
    d.complete(rs[0])
    await asyncio.wait_for(asyncio.gather(*tasks), 5)


async def test_holdback_low_band_stops_earlier_than_high() -> None:
    cfg = FlowControlConfig(
        default_priority_band=PriorityBandConfig(usage_limit=0.7),
        priority_bands=(PriorityBandConfig(priority=10),),
    )
    fc, ep, _, d = await make(cfg, max_concurrency=10)
    tasks = [asyncio.create_task(d.handle(req(priority=0))) for _ in range(10)]
    await steps(40)
    assert len(d.dispatched) == 7  # low band holds at saturation 0.7
    tasks += [asyncio.create_task(d.handle(req(priority=10))) for _ in range(5)]
    await steps(40)
    assert len(d.dispatched) == 10 and ep.inflight_requests == 10  # high band goes to 1.0
    assert [r.priority for r in d.dispatched[7:]] == [10, 10, 10]
    for r in list(d.dispatched):
        d.complete(r)
    await steps(40)
    for r in list(d.dispatched):
        d.complete(r)
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    await fc.stop()


async def test_utilization_gate_reopens_on_notify_after_scrape() -> None:
    ep, clock = endpoint(), FakeClock()
    fc = FlowController(
        FlowControlConfig(), UtilizationDetector(), lambda: [ep], clock, pool_name="util"
    )
    await fc.start()
    ep.metrics.update_time = clock.now()
    ep.metrics.waiting_queue_size = 5  # exactly at threshold: saturated
    task = asyncio.create_task(fc.admit(req()))
    await steps()
    assert not task.done() and fc.saturation == 1.0
    sat = REGISTRY.get_sample_value(
        "inference_extension_flow_control_pool_saturation", {"inference_pool": "util"}
    )
    assert sat == 1.0
    ep.metrics.waiting_queue_size = 1  # a scrape lands
    fc.notify()
    await asyncio.wait_for(task, 5)
    await fc.stop()


async def test_recheck_timer_dispatches_without_notify() -> None:
    ep, clock = endpoint(), FakeClock()
    fc = FlowController(
        FlowControlConfig(),
        ConcurrencyDetector(max_concurrency=1),
        lambda: [ep],
        clock,
        recheck_interval=0.001,
    )
    await fc.start()
    ep.inflight_requests = 1
    task = asyncio.create_task(fc.admit(req()))
    await steps()
    assert not task.done()
    ep.inflight_requests = 0  # capacity freed, but nobody calls notify()
    await asyncio.wait_for(task, 5)
    await fc.stop()


async def test_legacy_admission_sheds_only_sheddable_when_saturated() -> None:
    ep = endpoint()
    eps: list[Endpoint] = [ep]
    la = LegacyAdmission(ConcurrencyDetector(max_concurrency=1), lambda: eps, FakeClock())
    await la.admit(req(priority=-1))  # not saturated
    ep.inflight_requests = 1
    await la.admit(req(priority=0))  # priority >= 0 never shed
    with pytest.raises(ResourceExhausted) as exc:
        await la.admit(req(priority=-1))
    assert exc.value.msg == SHED_MESSAGE and exc.value.http_status == 429
    eps.clear()  # no endpoints counts as saturated
    with pytest.raises(ResourceExhausted):
        await la.admit(req(priority=-5))


def test_build_admission_honours_the_switch() -> None:
    det = UtilizationDetector()
    no_eps: Sequence[Endpoint] = ()
    on = build_admission(FlowControlConfig(), det, lambda: no_eps)
    off = build_admission(FlowControlConfig.from_dict({"enabled": False}), det, lambda: no_eps)
    assert isinstance(on, FlowController) and isinstance(off, LegacyAdmission)


async def test_controller_gc_follows_the_injected_clock() -> None:
    fc, _, clock, d = await make(max_concurrency=5)
    r = req(priority=7, flow="gc")
    task = asyncio.create_task(d.handle(r))
    await steps()
    d.complete(r)
    await task
    assert fc.registry.priorities() == [7]
    clock.advance(299)
    assert fc.collect_garbage() == (0, 0)
    clock.advance(1)
    assert fc.collect_garbage() == (1, 0)  # flow idle 5 minutes
    clock.advance(300)
    assert fc.collect_garbage() == (0, 1)  # band idle 10 minutes
    assert fc.registry.priorities() == []
    await fc.stop()
