"""Bands, capacity, ordering and fairness policies, holdback and GC, on the synchronous registry."""

from __future__ import annotations

import itertools
import math

import pytest

from endpoint_picker.flowcontrol.bands import FlowRegistry, Hold
from endpoint_picker.flowcontrol.config import FlowControlConfig, PriorityBandConfig
from endpoint_picker.flowcontrol.ordering import slo_ttft_ms
from endpoint_picker.flowcontrol.types import FlowKey, Item, Outcome
from endpoint_picker.requests.types import InferenceRequest

_seq = itertools.count(1)


def item(
    flow: str = "t",
    priority: int = 0,
    size: int = 1,
    now: float = 0.0,
    ttl: float = math.inf,
    headers: dict[str, str] | None = None,
) -> Item:
    r = InferenceRequest(
        request_id=f"r{next(_seq)}", headers=headers or {}, priority=priority, fairness_id=flow
    )
    it = Item(r, FlowKey(flow, priority), next(_seq), now, now + ttl, None)
    it.size = size  # as if the body had ``size`` bytes, without allocating them
    return it


def drain(reg: FlowRegistry, saturation: float = 0.0, now: float = 0.0) -> list[Item]:
    out: list[Item] = []
    while True:
        got = reg.select(saturation, now)
        if not isinstance(got, Item):
            return out
        got.outcome = Outcome.DISPATCHED
        out.append(got)


def band_cfg(**kw: object) -> FlowControlConfig:
    return FlowControlConfig(default_priority_band=PriorityBandConfig(**kw))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("cfg", "queued", "size", "ok"),
    [
        (FlowControlConfig(max_bytes=10), [5], 5, True),  # exactly at capacity is allowed
        (FlowControlConfig(max_bytes=10), [5], 6, False),
        (FlowControlConfig(max_requests=2), [1], 1, True),
        (FlowControlConfig(max_requests=2), [1, 1], 1, False),
        (band_cfg(max_bytes=10), [10], 1, False),
        (band_cfg(max_bytes=10), [9], 1, True),
        (band_cfg(max_requests=1), [1], 1, False),
        (FlowControlConfig(), [10**6] * 3, 10**6, True),  # 0 = unlimited (band default 1G)
        (FlowControlConfig(), [], 10**9 + 1, False),  # default band maxBytes 1G
    ],
)
def test_has_capacity_matrix(
    cfg: FlowControlConfig, queued: list[int], size: int, ok: bool
) -> None:
    reg = FlowRegistry(cfg)
    for s in queued:
        assert reg.enqueue(item(size=s), 0.0)
    assert reg.enqueue(item(size=size), 0.0) is ok
    assert reg.len == len(queued) + ok


def test_strict_priority_and_hold() -> None:
    reg = FlowRegistry(FlowControlConfig())
    lows = [item(priority=-1) for _ in range(3)]
    highs = [item(priority=3) for _ in range(3)]
    for i in lows + highs:
        reg.enqueue(i, 0.0)
    assert reg.priorities() == [3, -1]
    held = reg.select(1.0, 0.0)
    assert isinstance(held, Hold) and held.band.priority == 3 and reg.len == 6
    assert drain(reg) == highs + lows
    assert reg.select(0.0, 0.0) is None


def test_per_band_ceiling_holds_low_band_but_idle_band_does_not_block() -> None:
    cfg = FlowControlConfig(
        default_priority_band=PriorityBandConfig(usage_limit=0.7),
        priority_bands=(
            PriorityBandConfig(priority=10),
            PriorityBandConfig(priority=20, usage_limit=0.1),
        ),
    )
    reg = FlowRegistry(cfg)
    low, high = item(priority=0), item(priority=10)
    reg.enqueue(low, 0.0)
    held = reg.select(0.8, 0.0)
    assert isinstance(held, Hold) and held.band.priority == 0
    reg.enqueue(high, 0.0)
    assert reg.select(0.8, 0.0) is high  # band 20 (ceiling 0.1) is empty: it holds nothing
    assert reg.select(0.69, 0.0) is low


def test_fcfs_and_global_strict_is_one_virtual_queue() -> None:
    reg = FlowRegistry(FlowControlConfig())
    order = [item(flow=f) for f in "abcabcaa"]
    for i in order:
        reg.enqueue(i, 0.0)
    assert drain(reg) == order


def test_global_strict_heap_stays_bounded_under_a_steady_backlog() -> None:
    # Regression: stale heap entries used to re-push duplicates, so the heap grew with every
    # dispatch and a pick popped thousands of entries. Interleave enqueue and dispatch on a
    # steady backlog of 3 flows and check the heap never holds more than a few per flow.
    reg = FlowRegistry(FlowControlConfig())
    for _ in range(10):
        for f in "abc":
            reg.enqueue(item(flow=f), 0.0)
    fairness = reg.band(0, 0.0).fairness
    largest = 0
    for i in range(3000):
        reg.enqueue(item(flow="abc"[i % 3]), 0.0)
        got = reg.select(0.0, 0.0)
        assert isinstance(got, Item)
        got.outcome = Outcome.DISPATCHED
        largest = max(largest, len(fairness))  # type: ignore[arg-type]
    assert largest <= 2 * 3 + 2
    assert len(drain(reg)) == 30


def test_round_robin_cycles_flows_and_skips_empty() -> None:
    reg = FlowRegistry(band_cfg(fairness_policy="round-robin-fairness-policy"))
    items = {f: [item(flow=f) for _ in range(n)] for f, n in (("a", 3), ("b", 1), ("c", 2))}
    for f in ("c", "a", "b"):
        for i in items[f]:
            reg.enqueue(i, 0.0)
    got = [i.key.fairness_id for i in drain(reg)]
    assert got == ["a", "b", "c", "a", "c", "a"]
    late = item(flow="b")  # a flow joining later enters the cycle in id order
    reg.enqueue(late, 0.0)
    assert drain(reg) == [late]


def test_edf_orders_by_ttl_deadline_then_arrival() -> None:
    reg = FlowRegistry(band_cfg(ordering_policy="edf-ordering-policy"))
    no_ttl = item(now=0.0)
    late = item(now=0.0, ttl=50)
    early = item(now=5.0, ttl=10)
    tie_first, tie_second = item(now=1.0, ttl=19), item(now=2.0, ttl=18)
    for i in (no_ttl, late, early, tie_first, tie_second):
        reg.enqueue(i, 0.0)
    assert drain(reg) == [early, tie_first, tie_second, late, no_ttl]


def test_slo_deadline_ordering_across_flows() -> None:
    reg = FlowRegistry(band_cfg(ordering_policy="slo-deadline-ordering-policy"))
    missing = item(flow="a", now=0.0)
    loose = item(flow="b", now=0.0, headers={"x-slo-ttft-ms": "5000"})
    tight = item(flow="a", now=1.0, headers={"x-slo-ttft-ms": " 100 "})
    bad = item(flow="c", now=0.0, headers={"x-slo-ttft-ms": "-3"})
    for i in (missing, loose, tight, bad):
        reg.enqueue(i, 0.0)
    got = drain(reg)
    assert got[:2] == [tight, loose] and set(got[2:]) == {missing, bad}
    assert got[2:] == [missing, bad]  # both "far future": earlier arrival (seq) first


@pytest.mark.parametrize(
    ("raw", "ms"), [("250", 250), (" 7 ", 7), ("0", 0), ("-1", None), ("abc", None), ("1.5", None)]
)
def test_slo_header_parsing(raw: str, ms: int | None) -> None:
    assert slo_ttft_ms({"x-slo-ttft-ms": raw}) == ms
    assert slo_ttft_ms({}) is None


def test_evicted_items_leave_counts_at_once_and_are_skipped() -> None:
    reg = FlowRegistry(band_cfg(ordering_policy="edf-ordering-policy"))
    items = [item(size=3, ttl=10 + i) for i in range(100)]
    for i in items:
        reg.enqueue(i, 0.0)
    for i in items[:90]:
        i.outcome = Outcome.EVICTED_TTL
        reg.remove(i, 1.0)
    assert (reg.len, reg.bytes) == (10, 30)
    flow = reg.flow(FlowKey("t", 0))
    assert flow is not None and flow.physical_size() <= 2 * 10 + 64  # compacted
    assert drain(reg) == items[90:]


def test_gc_of_idle_flows_and_dynamic_bands_but_not_static() -> None:
    cfg = FlowControlConfig(
        priority_bands=(PriorityBandConfig(priority=1),), flow_gc_timeout=300, band_gc_timeout=600
    )
    reg = FlowRegistry(cfg, now=0.0)
    a, b = item(flow="a", priority=5), item(flow="b", priority=1)
    reg.enqueue(a, 0.0)
    reg.enqueue(b, 0.0)
    assert reg.collect_garbage(10_000.0) == (0, 0)  # busy flows are never collected
    drain(reg, now=100.0)
    assert reg.collect_garbage(399.0) == (0, 0)
    assert reg.collect_garbage(400.0) == (2, 0)  # idle 5 minutes
    assert reg.flow(FlowKey("a", 5)) is None
    assert reg.collect_garbage(699.0) == (0, 0)
    assert reg.collect_garbage(700.0) == (0, 1)  # dynamic band idle 10 minutes
    assert reg.priorities() == [1]  # the configured band stays
    again = item(flow="a", priority=5)  # a collected band comes back on first use
    assert reg.enqueue(again, 701.0) and reg.priorities() == [5, 1]


def test_gc_timer_resets_when_a_flow_is_used_again() -> None:
    reg = FlowRegistry(FlowControlConfig(), now=0.0)
    first = item(flow="a")
    reg.enqueue(first, 0.0)
    drain(reg, now=0.0)
    reg.enqueue(item(flow="a"), 250.0)
    drain(reg, now=260.0)
    assert reg.collect_garbage(400.0) == (0, 0)
    assert reg.collect_garbage(560.0) == (1, 0)
