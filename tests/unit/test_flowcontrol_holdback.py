"""Holdback and defaults with the learned-capacity detector: flow control on a real event loop,
the scheduler's dispatch-time room check, and which detector a config gets."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from endpoint_picker.clock import FakeClock
from endpoint_picker.config.loader import load_config_text
from endpoint_picker.datastore import Endpoint, Metrics
from endpoint_picker.flowcontrol import FlowControlConfig, FlowController, LearnedCapacityDetector
from endpoint_picker.flowcontrol.controller import TopShare
from endpoint_picker.requests.types import TOP_BAND_KEY, InferenceRequest
from endpoint_picker.runner.app import wire_detector
from endpoint_picker.scheduling import Scheduler, SchedulerProfile
from endpoint_picker.scheduling.plugins.handlers import SingleProfileHandler
from endpoint_picker.scheduling.plugins.pickers import MaxScorePicker

_ids = itertools.count()
HEAD = "apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\n"


def req(priority: int) -> InferenceRequest:
    return InferenceRequest(
        request_id=f"h{next(_ids)}",
        headers={},
        raw_body=b"x",
        priority=priority,
        fairness_id="t",
        incoming_model="m",
        target_model="m",
    )


async def steps(n: int = 20) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def plain_scheduler() -> Scheduler:
    """One profile, no filters or scorers: the picker chooses at random among candidates."""
    profile = SchedulerProfile(
        "default",
        filters=[],
        scorers=[],
        picker=MaxScorePicker.from_params("max-score-picker", None),
    )
    return Scheduler([profile], SingleProfileHandler.from_params("single-profile-handler", None))


class OneEndpoint:
    """Flow control over one endpoint with ``det``; ``handle`` admits a request and counts it
    in flight on the endpoint, as the director does; ``dispatched`` lists them in order."""

    def __init__(self, det: LearnedCapacityDetector) -> None:
        self.clock = FakeClock()
        self.ep = Endpoint(name="e", pod_name="e", address="10.0.0.1", port=8000)
        self.ep.metrics = Metrics(running_requests_size=0, update_time=self.clock.now())
        self.fc = FlowController(FlowControlConfig(), det, lambda: [self.ep], self.clock)
        self.dispatched: list[InferenceRequest] = []

    async def handle(self, r: InferenceRequest) -> None:
        await self.fc.admit(r)
        self.ep.inflight_requests += 1
        self.dispatched.append(r)


async def test_lower_bands_leave_the_reserved_slot_for_the_top_band() -> None:
    pool = OneEndpoint(
        LearnedCapacityDetector.from_params({"initialCapacity": 4, "holdback": 0.05})
    )
    ep, fc, handle, dispatched = pool.ep, pool.fc, pool.handle, pool.dispatched
    await fc.start()

    # A critical request makes band 10 the top band; it completes at once.
    await handle(req(10))
    ep.inflight_requests -= 1
    tasks = [asyncio.create_task(handle(req(p))) for p in (0, 0, 0, 0, -10)]
    await steps()
    assert [r.priority for r in dispatched[1:]] == [0, 0, 0]  # 3 of 4 slots: one held back
    crit = asyncio.create_task(handle(req(10)))
    await steps()
    assert dispatched[-1].priority == 10 and ep.inflight_requests == 4  # took the reserve
    # Flow control tells the scheduler which requests are the top band's (no probe slots).
    assert [r.state[TOP_BAND_KEY] for r in dispatched] == [True, False, False, False, True]
    ep.inflight_requests -= 2
    fc.notify()
    await steps()
    # Two slots free: the top band is idle, so lower bands fill up to the ceiling again, in
    # strict order (priority 0 before -10).
    assert [r.priority for r in dispatched[5:]] == [0]
    assert fc.registry.len == 1
    await fc.stop()
    await asyncio.gather(*tasks, crit, return_exceptions=True)


def test_scheduler_room_check_skips_full_endpoints() -> None:
    a = Endpoint(name="a", pod_name="a", address="10.0.0.1", port=8000)
    b = Endpoint(name="b", pod_name="b", address="10.0.0.2", port=8000)
    sched = plain_scheduler()
    request = req(0)
    sched.room_check = lambda ep, affine, confirmed: ep is b
    assert [sched.schedule(request, [a, b]).endpoints[0] for _ in range(5)] == [b] * 5
    sched.room_check = lambda ep, affine, confirmed: False  # none has room: every candidate stays
    assert {sched.schedule(request, [a, b]).endpoints[0] for _ in range(40)} == {a, b}


def probing(clock: FakeClock) -> tuple[LearnedCapacityDetector, Endpoint]:
    """A detector and an endpoint "a" running 4 of its learned 4 slots, with a probe open
    (capacity 5, confirmed 4)."""
    det = LearnedCapacityDetector.from_params(
        {"initialCapacity": 4, "probeInterval": 1, "serverView": False}
    )
    a = Endpoint(name="a", pod_name="a", address="10.0.0.1", port=8000)
    for _ in range(6):  # a queues while running 4: its plateau is 4
        clock.advance(0.05)
        a.metrics = Metrics(running_requests_size=4, waiting_queue_size=1, update_time=clock.now())
        det.capacity(a, clock.now())
    clock.advance(1.0)
    a.metrics = Metrics(running_requests_size=4, update_time=clock.now())  # nothing waits
    a.inflight_requests = 4
    assert det.capacity(a, clock.now()) == 5 and det.learner(a).confirmed == 4  # a probe
    return det, a


def test_the_top_band_goes_to_a_known_slot_before_a_probe() -> None:
    # The runner's wiring: the scheduler asks the detector for a known slot (no capacity
    # probe) for a request flow control dispatched from its top band, and falls back to a
    # probe only where no known slot is free. Other requests may go to either.
    clock = FakeClock()
    det, a = probing(clock)
    b = Endpoint(name="b", pod_name="b", address="10.0.0.2", port=8000)
    b.inflight_requests = 3
    b.metrics = Metrics(running_requests_size=3, update_time=clock.now())
    sched = plain_scheduler()
    wire_detector(sched, det, clock)

    def target(top: bool | None) -> Endpoint:
        request = req(10 if top else 0)
        if top is not None:
            request.state[TOP_BAND_KEY] = top
        return sched.schedule(request, [a, b]).endpoints[0]

    assert {target(True) for _ in range(20)} == {b}
    assert {target(False) for _ in range(40)} == {a, b}  # the probe is theirs to test
    assert {target(None) for _ in range(40)} == {a, b}  # flow control off: no band known
    b.inflight_requests = 4
    assert {target(True) for _ in range(20)} == {a}  # no known slot free: the probe it is


async def test_the_top_band_waits_for_a_known_slot_rather_than_a_probe() -> None:
    # With lower bands queued, a top-band request waits in the EPP for a slot the server is
    # known to run instead of taking the open probe (which the server would likely refuse,
    # keeping it in the server's queue); with no backlog below it, it takes the probe.
    clock = FakeClock()
    det, a = probing(clock)
    a.inflight_requests = 3  # one known slot free
    fc = FlowController(FlowControlConfig(), det, lambda: [a], clock)
    await fc.start()
    dispatched: list[InferenceRequest] = []

    async def handle(r: InferenceRequest) -> None:
        await fc.admit(r)
        a.inflight_requests += 1
        dispatched.append(r)

    await handle(req(10))  # band 10 is the top band; it takes the known slot
    low = asyncio.create_task(handle(req(0)))  # held back: only the probe is free
    crit = asyncio.create_task(handle(req(10)))
    await steps()
    assert [r.priority for r in dispatched] == [10] and a.inflight_requests == 4
    a.inflight_requests -= 1  # a completion frees a known slot
    fc.notify()
    await steps()
    assert [r.priority for r in dispatched] == [10, 10]
    assert fc.registry.len == 1  # priority 0 still held back
    low.cancel()
    await steps()
    alone = asyncio.create_task(handle(req(10)))  # no backlog below: the probe is its to take
    await steps()
    assert [r.priority for r in dispatched] == [10, 10, 10] and a.inflight_requests == 5
    await fc.stop()
    await asyncio.gather(low, crit, alone, return_exceptions=True)


def test_dispatches_reach_the_detectors_server_view() -> None:
    # The scheduler tells its dispatch hook where each request goes (pre_request, just before
    # the director counts it in flight); the learned-capacity detector then counts it as on
    # its way until a scrape well after it, so the server's view cannot count it out.
    a = Endpoint(name="a", pod_name="a", address="10.0.0.1", port=8000)
    sched = plain_scheduler()
    det = LearnedCapacityDetector.from_params({"initialCapacity": 4, "maxCapacity": 4})
    clock = FakeClock()
    sched.on_dispatch = lambda ep: det.record_dispatch(ep, clock.now())
    a.metrics = Metrics(running_requests_size=0, update_time=clock.now())
    for _ in range(4):
        request = req(0)
        sched.pre_request(request, sched.schedule(request, [a]))
        a.inflight_requests += 1
    assert det.load(a) == 4 and not det.has_room(a, clock.now())  # the scrape saw none of them
    clock.advance(1.0)
    a.metrics = Metrics(running_requests_size=2, update_time=clock.now())  # two finished there
    assert det.load(a) == 3 and det.has_room(a, clock.now())  # freed: one (a quarter of 4)


def test_default_detector_follows_flow_control() -> None:
    assert load_config_text(None).saturation_detector == "learned-capacity-detector"
    on = load_config_text(HEAD + "flowControl: {maxRequests: 10}\n")
    assert on.saturation_detector == "learned-capacity-detector"
    off = load_config_text(HEAD + "flowControl: {enabled: false}\n")
    assert off.saturation_detector == "utilization-detector"
    named = load_config_text(
        HEAD + "plugins:\n- type: concurrency-detector\n"
        "saturationDetector: {pluginRef: concurrency-detector}\n"
    )
    assert named.saturation_detector == "concurrency-detector"
    tuned = load_config_text(
        HEAD + "plugins:\n- type: utilization-detector\n  parameters: {queueDepthThreshold: 2}\n"
    )
    assert tuned.saturation_detector == "utilization-detector"


async def test_one_priority_in_use_fills_every_slot() -> None:
    clock = FakeClock()
    ep = Endpoint(name="e", pod_name="e", address="10.0.0.1", port=8000)
    ep.metrics = Metrics(update_time=clock.now())
    det = LearnedCapacityDetector.from_params({"initialCapacity": 4, "maxCapacity": 4})
    fc = FlowController(FlowControlConfig(), det, lambda: [ep], clock)
    await fc.start()

    async def handle(r: InferenceRequest) -> None:
        await fc.admit(r)
        ep.inflight_requests += 1

    tasks = [asyncio.create_task(handle(req(0))) for _ in range(6)]
    await steps()
    assert ep.inflight_requests == 4 and fc.registry.len == 2  # no higher band: nothing held back
    await fc.stop()
    await asyncio.gather(*tasks, return_exceptions=True)


def test_top_share_decays_with_time() -> None:
    share = TopShare(tau=5.0)
    assert share.value(0.0) == 0.0
    for i in range(10):
        share.add(i % 5 < 2, float(i) * 0.01)  # 4 of 10 top-band dispatches
    assert share.value(0.1) == pytest.approx(0.4, abs=0.01)
    assert share.value(100.0) == pytest.approx(0.4, abs=0.01)  # no news: the ratio holds
    for i in range(200):
        share.add(False, 100.0 + i * 0.1)  # 20 s of lower bands only: older counts fade
    assert share.value(120.0) < 0.05


async def test_reserve_grows_with_the_measured_top_band_share() -> None:
    """Through the flow controller: with critical a large share of recent dispatches, bands
    below it stop at 29 of 32 slots (three held back) instead of the 5% floor's 30."""
    pool = OneEndpoint(
        LearnedCapacityDetector.from_params({"initialCapacity": 32, "maxCapacity": 32})
    )
    ep, fc, handle = pool.ep, pool.fc, pool.handle
    await fc.start()

    # History: 60 critical and 40 priority-0 requests, each done at once. With the 29 below,
    # critical is 60/129 = 47% of the dispatches: 3 free slots leave none free 5.6% of the
    # time, 4 would leave 3.2 idle on average (over 8% of 32), so 3.
    for p in [10, 10, 10, 0, 0] * 20:
        await handle(req(p))
        ep.inflight_requests -= 1
    tasks = [asyncio.create_task(handle(req(0))) for _ in range(40)]
    await steps(200)
    assert ep.inflight_requests == 29 and fc.registry.len == 11
    await fc.stop()
    await asyncio.gather(*tasks, return_exceptions=True)
