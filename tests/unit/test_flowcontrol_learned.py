"""learned-capacity-detector: capacity learning per endpoint, saturation, room, holdback.

Every scrape is a Metrics snapshot with a new ``update_time``; time is a FakeClock.
"""

from __future__ import annotations

import random

import pytest

from endpoint_picker.clock import FakeClock
from endpoint_picker.datastore import Endpoint, Metrics
from endpoint_picker.errors import ConfigError
from endpoint_picker.flowcontrol import LearnedCapacityDetector, detector_from_config
from endpoint_picker.flowcontrol.capacity import CapacityLearner
from endpoint_picker.flowcontrol.learned import demand_reserve
from endpoint_picker.metrics import REGISTRY

SCRAPE = 0.05


class Server:
    """A fake model server (named as one): ``slots`` run, the rest wait, as vLLM does."""

    def __init__(self, slots: int, clock: FakeClock, kv_per_request: float = 0.0) -> None:
        self.slots, self.clock, self.kv_per_request = slots, clock, kv_per_request

    def scrape(self, inflight: int) -> Metrics:
        running = min(inflight, self.slots)
        if self.kv_per_request:
            running = min(running, int(1.0 / self.kv_per_request))
        kv = min(1.0, running * self.kv_per_request)
        self.clock.advance(SCRAPE)
        return Metrics(
            running_requests_size=running,
            waiting_queue_size=inflight - running,
            kv_cache_usage_percent=kv,
            update_time=self.clock.now(),
        )


class LaggyServer(Server):
    """A fake model server (named as one) as a busy one is scraped: up to ``transit`` of the
    EPP's requests are not on it (finished, their responses still on the way through the
    front; or dispatched and not yet arrived), and with probability ``lag`` a scrape catches
    one that arrived and waits for the next engine step to be admitted, with slots free."""

    def __init__(self, slots: int, clock: FakeClock, transit: int, lag: float) -> None:
        super().__init__(slots, clock)
        self.transit, self.lag = transit, lag
        self.rng = random.Random(5)
        self.running: list[int] = []

    def scrape(self, inflight: int) -> Metrics:
        there = max(0, inflight - self.rng.randint(0, self.transit))
        running = min(there, self.slots)
        if there <= self.slots and running and self.rng.random() < self.lag:
            running -= 1
        self.running.append(running)
        self.clock.advance(SCRAPE)
        return Metrics(
            running_requests_size=running,
            waiting_queue_size=there - running,
            update_time=self.clock.now(),
        )


def drive(learner: CapacityLearner, server: Server, seconds: float) -> list[int]:
    """Saturating load: the EPP always sends exactly the learned capacity. Capacity per scrape."""
    seen = []
    for _ in range(round(seconds / SCRAPE)):
        sent = learner.capacity
        learner.observe(server.scrape(sent), server.clock.now(), sent)
        seen.append(learner.capacity)
    return seen


def test_slow_start_finds_the_plateau_and_stays_there() -> None:
    clock = FakeClock()
    learner, server = CapacityLearner(4), Server(256, clock)
    seen = drive(learner, server, 1.5)
    assert learner.capacity == 256
    assert seen.index(256) <= 16  # x1.5 per scrape, then 5 queueing scrapes: under a second
    # Then steady: one probe above 256 per probe interval, withdrawn at the first scrape that
    # shows the server queueing it.
    steady = drive(learner, server, 12.0)
    assert max(steady) <= 257 and steady.count(257) <= 3  # <= 3 probes of 12 s, one scrape each
    assert steady[-1] in (256, 257)


def test_slow_start_is_not_ended_by_admission_lag_or_requests_in_transit() -> None:
    # 32 slots; a scrape often catches a request not yet admitted, and a few of the EPP's
    # requests are never on the server at scrape time. Neither is a plateau: the capacity
    # still reaches the server's slots within a second, and the server runs nearly full.
    clock = FakeClock()
    learner, server = CapacityLearner(4), LaggyServer(32, clock, transit=3, lag=0.6)
    seen = drive(learner, server, 1.0)
    assert max(seen) >= 32, seen
    drive(learner, server, 10.0)
    assert 32 <= learner.capacity <= 32 + 3 + 1
    last = server.running[-100:]  # the last 5 s
    assert sum(last) / len(last) >= 0.9 * 32


def test_a_refused_probe_is_withdrawn_at_the_first_queueing_scrape() -> None:
    clock = FakeClock()
    learner, server = CapacityLearner(4, probe_interval=1.0), Server(4, clock)
    drive(learner, server, 1.0)
    assert learner.capacity == 4
    clock.advance(1.0)  # the probe interval has passed
    learner.observe(server.scrape(4), clock.now())  # full, nothing waiting: probe
    assert learner.capacity == 5
    learner.observe(server.scrape(5), clock.now())  # the server queues the probe's request
    assert learner.capacity == 4
    # Queueing now and then below the confirmed plateau still needs CONFIRM scrapes.
    m = Metrics(running_requests_size=3, waiting_queue_size=1, update_time=clock.now() + SCRAPE)
    learner.observe(m, clock.now() + SCRAPE)
    assert learner.capacity == 4


def test_plateau_while_waiting_sets_capacity() -> None:
    clock = FakeClock()
    learner = CapacityLearner(16)
    for _ in range(5):  # five of the last ten scrapes queueing at 4 confirm a lower capacity
        clock.advance(SCRAPE)
        m = Metrics(running_requests_size=4, waiting_queue_size=12, update_time=clock.now())
        learner.observe(m, clock.now())
    assert learner.capacity == 4
    # A re-read of the same scrape is not a new observation.
    assert not learner.observe(m, clock.now() + 1)


def test_sporadic_queueing_below_capacity_is_not_a_plateau() -> None:
    clock = FakeClock()
    learner = CapacityLearner(8)
    drive(learner, Server(8, clock), 1.0)  # settles at its plateau, 8
    clock.advance(3.0)  # the plateau sample ages out of the window
    for i in range(40):  # every fifth scrape catches a request between arrival and admission
        clock.advance(SCRAPE)
        waiting = 1 if i % 5 == 0 else 0
        m = Metrics(
            running_requests_size=8 - waiting, waiting_queue_size=waiting, update_time=clock.now()
        )
        learner.observe(m, clock.now())
        assert learner.capacity >= 8


def test_resize_down_is_learned_within_the_plateau_window() -> None:
    clock = FakeClock()
    learner, server = CapacityLearner(4), Server(32, clock)
    drive(learner, server, 1.0)
    assert learner.capacity == 32
    server.slots = 8
    seen = drive(learner, server, 3.0)
    assert learner.capacity == 8
    assert seen.index(8) * SCRAPE <= 2.5  # plateauWindow (2s) plus five queueing scrapes


def test_resize_up_is_learned_after_one_probe() -> None:
    clock = FakeClock()
    learner, server = CapacityLearner(4, probe_interval=5.0), Server(4, clock)
    drive(learner, server, 1.0)
    assert learner.capacity == 4
    server.slots = 64
    seen = drive(learner, server, 7.0)
    assert learner.capacity == 64
    assert seen.index(64) * SCRAPE <= 5.0 + 1.0  # the next probe, then slow start again


def test_kv_bound_server_is_capped_by_what_it_runs() -> None:
    clock = FakeClock()
    # 32 slots, but the cache holds 10 requests of this prompt length (10% each).
    learner, server = CapacityLearner(4, kv_threshold=0.95), Server(32, clock, 0.1)
    drive(learner, server, 2.0)
    assert learner.capacity == 10
    # Longer prompts: 5 fit now. The server queues at 5 and the capacity follows.
    server.kv_per_request = 0.2
    drive(learner, server, 3.0)
    assert learner.capacity == 5


def test_no_growth_while_the_kv_cache_is_nearly_full() -> None:
    clock = FakeClock()
    learner = CapacityLearner(4, kv_threshold=0.9)
    for _ in range(5):
        clock.advance(SCRAPE)
        m = Metrics(running_requests_size=4, kv_cache_usage_percent=0.93, update_time=clock.now())
        learner.observe(m, clock.now())
    assert learner.capacity == 4


def test_slow_server_keeps_its_slots() -> None:
    # A server at half speed runs as many requests at once; it frees them half as often, which
    # dispatch-on-completion already follows. Its capacity is its slots, learned as fast.
    clock = FakeClock()
    fast, slow = CapacityLearner(4), CapacityLearner(4)
    drive(fast, Server(16, clock), 1.0)
    drive(slow, Server(16, clock), 1.0)
    assert fast.capacity == slow.capacity == 16


def endpoint(name: str, inflight: int, metrics: Metrics) -> Endpoint:
    ep = Endpoint(name=name, pod_name=name, address="10.0.0.1", port=8000)
    ep.inflight_requests, ep.metrics = inflight, metrics
    return ep


def test_saturation_room_filter_and_holdback() -> None:
    clock = FakeClock()
    det = LearnedCapacityDetector.from_params(
        {"initialCapacity": 8, "maxCapacity": 8, "holdback": 0.1}
    )
    now = clock.now()
    a = endpoint("a", 8, Metrics(running_requests_size=8, update_time=now))
    b = endpoint("b", 2, Metrics(running_requests_size=2, update_time=now))
    assert det.saturation([a, b], now) == pytest.approx(10 / 16)
    assert not det.has_room(a, now) and det.has_room(b, now)
    assert det.filter([a, b], now) == [b]
    assert det.holdback_ceiling([a, b], now) == pytest.approx(14 / 16)  # ceil(1.6) = 2 slots
    b.inflight_requests = 8
    b.metrics = Metrics(running_requests_size=8, update_time=now)
    assert det.saturation([a, b], now) == 1.0
    assert det.filter([a, b], now) == [a, b]  # none has room: fail open
    value = REGISTRY.get_sample_value(
        "endpoint_picker_flow_control_learned_capacity", {"endpoint": "a"}
    )
    assert value == 8.0
    # Stale or never-scraped endpoints offer no room and no capacity; endpoints that left the
    # pool are forgotten, with their gauge series.
    stale = endpoint("c", 0, Metrics())
    assert not det.has_room(stale, now)
    assert det.saturation([stale], now) == 1.0
    assert (
        REGISTRY.get_sample_value(
            "endpoint_picker_flow_control_learned_capacity", {"endpoint": "a"}
        )
        is None
    )


def test_an_open_probe_is_no_slot_for_the_top_band() -> None:
    # A probe (one slot above a server's plateau) may be refused, and a request in it then
    # queues in that server. Holdback reserves slots the servers are known to run, and the
    # top band's room check (confirmed=True) counts only those.
    clock = FakeClock()
    det = LearnedCapacityDetector.from_params(
        {"initialCapacity": 4, "probeInterval": 1, "holdback": 0.05, "serverView": False}
    )
    a, b = endpoint("a", 4, Metrics()), endpoint("b", 3, Metrics())
    server = Server(4, clock)
    drive(det.learner(a), server, 1.0)  # a's plateau: 4
    clock.advance(1.0)
    a.metrics = server.scrape(4)  # full, nothing waiting, the probe interval passed: a probe
    now = clock.now()
    b.metrics = Metrics(running_requests_size=3, update_time=now)
    assert det.capacity(a, now) == 5 and det.learner(a).confirmed == 4
    assert det.capacity(b, now) == det.learner(b).confirmed == 4
    assert det.room_at_dispatch(a, now) and not det.room_at_dispatch(a, now, confirmed=True)
    assert det.room_at_dispatch(b, now) and det.room_at_dispatch(b, now, confirmed=True)
    # 7 of 9 slots in use, one of the two free ones a probe: the reserve (one slot) is b's
    # known slot, so lower bands stop now (with the probe counted as a free slot they would
    # take b's, and the top band would be left the probe).
    assert det.saturation([a, b], now) == pytest.approx(7 / 9)
    assert det.holdback_ceiling([a, b], now) == pytest.approx(7 / 9)
    # A lower band's request in the probe takes nothing from the reserve: still b's slot.
    a.inflight_requests = 5
    assert det.saturation([a, b], now) == pytest.approx(8 / 9)
    assert det.holdback_ceiling([a, b], now) == pytest.approx(8 / 9)


def test_holdback_never_takes_every_slot() -> None:
    det = LearnedCapacityDetector.from_params({"initialCapacity": 1})
    m = Metrics(update_time=1.0)
    assert det.holdback_ceiling([endpoint("a", 0, m)], 1.0) == 1.0
    assert det.holdback_ceiling([endpoint("a", 0, m), endpoint("b", 0, m)], 1.0) == 0.5
    off = LearnedCapacityDetector.from_params({"holdback": 0})
    assert off.holdback_ceiling([endpoint("a", 0, m), endpoint("b", 0, m)], 1.0) == 1.0


def test_params_are_strict_with_the_field_path() -> None:
    det = detector_from_config(
        "learned-capacity-detector", {"probeInterval": "1m30s", "plateauWindow": 3}
    )
    assert isinstance(det, LearnedCapacityDetector)
    assert det.params.probe_interval == 90.0 and det.params.plateau_window == 3.0
    with pytest.raises(ConfigError, match="unknown field") as err:
        LearnedCapacityDetector.from_params({"probeIntervall": "1s"})
    assert err.value.path == "learned-capacity-detector.parameters.probeIntervall"
    with pytest.raises(ConfigError) as err:
        LearnedCapacityDetector.from_params({"probeInterval": "soon"})
    assert err.value.path == "learned-capacity-detector.parameters.probeInterval"
    with pytest.raises(ConfigError) as err:
        LearnedCapacityDetector.from_params({"initialCapacity": 0})
    assert err.value.path == "learned-capacity-detector.parameters.initialCapacity"


def test_load_is_the_servers_view_when_it_shows_finished_requests() -> None:
    # 8 in flight for the EPP, but the last scrape shows 5 running, nothing waiting: 3 have
    # finished at the server and the front has not reported their end yet (a stream's tail, an
    # access-log flush). Those slots are free now.
    det = LearnedCapacityDetector.from_params({"initialCapacity": 8, "maxCapacity": 8})
    ep = endpoint("a", 8, Metrics(running_requests_size=5, update_time=1.0))
    assert det.load(ep) == 8  # no dispatch reported yet: the server view is not trusted
    det.record_dispatch(ep, 0.1)  # the runner wires the scheduler's dispatch hook
    assert det.load(ep) == 6 and det.has_room(ep, 1.0)  # at most a quarter of 8 freed
    # Never above the EPP's own count (the server may run other clients' requests too).
    ep.metrics = Metrics(running_requests_size=8, waiting_queue_size=2, update_time=1.1)
    assert det.load(ep) == 8
    off = LearnedCapacityDetector.from_params({"serverView": False, "initialCapacity": 8})
    off.record_dispatch(ep, 0.1)
    ep.metrics = Metrics(running_requests_size=5, update_time=1.2)
    assert off.load(ep) == 8


def test_requests_on_their_way_are_not_counted_out() -> None:
    # Dispatched shortly before the scrape: the server may not have them yet, so they count
    # on top of what it showed. Dispatched well before it (beyond transitAllowance): in its
    # running count already, or finished.
    det = LearnedCapacityDetector.from_params(
        {"initialCapacity": 8, "maxCapacity": 8, "transitAllowance": "100ms"}
    )
    ep = endpoint("a", 8, Metrics(running_requests_size=5, update_time=1.0))
    det.record_dispatch(ep, 0.5)  # long before the scrape
    det.record_dispatch(ep, 0.95)  # within the allowance before it
    det.record_dispatch(ep, 1.01)  # after it
    assert det.load(ep) == 5 + 2
    assert det.has_room(ep, 1.02)
    ep.metrics = Metrics(running_requests_size=8, update_time=1.2)  # next scrape: all seen
    assert det.load(ep) == 8 and not det.has_room(ep, 1.2)
    # A stale scrape cannot free a slot either: requests dispatched since are all counted.
    ep.metrics = Metrics(running_requests_size=7, update_time=1.25)
    for t in (1.3, 1.4, 1.5, 1.6):
        det.record_dispatch(ep, t)
    assert det.load(ep) == 8


def test_affinity_budget_applies_only_to_a_request_with_affinity() -> None:
    det = LearnedCapacityDetector.from_params({"initialCapacity": 4, "maxCapacity": 4})
    ep = endpoint("a", 4, Metrics(running_requests_size=4, update_time=1.0))
    assert not det.has_room(ep, 1.0)
    assert det.room_at_dispatch(ep, 1.0, affine=True)  # may wait at its preferred server
    assert not det.room_at_dispatch(ep, 1.0, affine=False)  # nothing to wait for: strict
    ep.inflight_requests = 6
    assert not det.room_at_dispatch(ep, 1.0, affine=True)  # budget (2) spent
    strict = LearnedCapacityDetector.from_params({"affinityBudget": 0, "maxCapacity": 4})
    assert not strict.room_at_dispatch(endpoint("b", 4, ep.metrics), 1.0, affine=True)
    stale = endpoint("c", 0, Metrics(running_requests_size=0, update_time=-10.0))
    assert not det.room_at_dispatch(stale, 1.0, affine=True)  # no fresh metrics: no room


def test_transit_allowance_doubles_when_the_server_queues_after_counting_out() -> None:
    from endpoint_picker.flowcontrol.server_view import MAX_ALLOWANCE, ServerView

    view = ServerView(0.1)
    view.record(0.5)  # before the scrape's allowance: counted as seen by it
    assert view.load(8, Metrics(running_requests_size=6, update_time=1.0), 8) == 6
    # The next scrape shows the server queueing: a request was on its way longer than 100 ms.
    assert view.load(8, Metrics(running_requests_size=8, waiting_queue_size=1, update_time=1.05), 8)
    assert view.allowance == 0.2
    for i in range(10):  # persistent: bounded
        view.load(8, Metrics(running_requests_size=6, update_time=1.1 + i * 0.05), 8)
        view.load(
            8,
            Metrics(running_requests_size=8, waiting_queue_size=1, update_time=1.12 + i * 0.05),
            8,
        )
    assert view.allowance == MAX_ALLOWANCE
    for i in range(200):  # quiet scrapes: back down to the configured allowance
        view.load(4, Metrics(running_requests_size=4, update_time=3.0 + i * 0.05), 8)
    assert view.allowance == 0.1


def test_the_server_view_frees_at_most_a_quarter_of_the_capacity() -> None:
    from endpoint_picker.flowcontrol.server_view import ServerView

    # 24 in flight on a 16-slot server that shows 4 running: a view that far off is wrong (a
    # starved machine: requests took seconds to arrive). It frees 4 (a quarter), no more.
    assert ServerView(0.1).load(24, Metrics(running_requests_size=4, update_time=1.0), 16) == 20
    # A 4-slot server: one slot at most.
    assert ServerView(0.1).load(4, Metrics(running_requests_size=1, update_time=1.0), 4) == 3


def test_demand_reserve_follows_the_birth_death_model() -> None:
    # Critical takes 40% of the turnover (r = 2.5): free reserved slots j = 0..k weigh r**j,
    # so none is free with chance 1 / sum(r**j): k = 2 gives 1/9.75 = 10%, k = 3 gives 3.9%.
    assert demand_reserve(32, 0.4, miss_rate=0.05, max_idle=1.0) == 3
    assert demand_reserve(32, 0.4, miss_rate=0.11, max_idle=1.0) == 2
    # The idle budget caps it: k = 3 leaves 2.44 slots free on average (7.6% of 32, within
    # 8%); in 16 slots k = 1 (0.71 free, 4.5%) is all that fits.
    assert demand_reserve(32, 0.4, miss_rate=0.05, max_idle=0.08) == 3
    assert demand_reserve(16, 0.4, miss_rate=0.05, max_idle=0.08) == 1
    assert demand_reserve(8, 0.4, miss_rate=0.05, max_idle=0.08) == 0
    # A heavier top band needs more; none at all, or a top band alone, needs none.
    assert demand_reserve(64, 0.6, miss_rate=0.05, max_idle=0.08) == 5
    assert demand_reserve(64, 0.0, miss_rate=0.05, max_idle=0.08) == 0
    assert demand_reserve(64, 1.0, miss_rate=0.05, max_idle=0.08) == 0
    assert demand_reserve(64, 0.4, miss_rate=0.0, max_idle=0.08) == 0  # off
    assert demand_reserve(4, 0.9, miss_rate=0.01, max_idle=1.0) == 3  # never every slot


def test_holdback_reserve_grows_with_the_top_bands_share() -> None:
    det = LearnedCapacityDetector.from_params({"initialCapacity": 32, "maxCapacity": 32})
    now = 1.0
    ep = endpoint("a", 0, Metrics(running_requests_size=0, update_time=now))
    assert det.holdback_ceiling([ep], now) == pytest.approx(30 / 32)  # 5%: ceil(1.6) = 2
    assert det.holdback_ceiling([ep], now, top_share=0.2) == pytest.approx(30 / 32)
    assert det.holdback_ceiling([ep], now, top_share=0.4) == pytest.approx(29 / 32)
    fixed = LearnedCapacityDetector.from_params(
        {"initialCapacity": 32, "maxCapacity": 32, "holdbackMissRate": 0}
    )
    assert fixed.holdback_ceiling([ep], now, top_share=0.4) == pytest.approx(30 / 32)
    off = LearnedCapacityDetector.from_params(
        {"initialCapacity": 32, "maxCapacity": 32, "holdback": 0}
    )
    assert off.holdback_ceiling([ep], now, top_share=0.4) == 1.0
