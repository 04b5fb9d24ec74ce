"""The status page data: bounded decision log and totals, real snapshots, docs figures."""

from __future__ import annotations

import json
from pathlib import Path

from tests.unit.script_module import load_script

from endpoint_picker.clock import FakeClock
from endpoint_picker.config import build, load_config
from endpoint_picker.datastore import Datastore
from endpoint_picker.flowcontrol import build_admission
from endpoint_picker.flowcontrol.learned import LearnedCapacityDetector
from endpoint_picker.requests.types import InferenceRequest
from endpoint_picker.runner.status import DecisionLog, StatusPage
from endpoint_picker.scheduling.framework import ProfileRunResult, SchedulingResult

ROOT = Path(__file__).resolve().parents[2]


def _request(i: int, objective: str | None = "critical", priority: int = 10) -> InferenceRequest:
    return InferenceRequest(
        request_id=f"r{i}", headers={}, objective=objective, priority=priority, target_model="m"
    )


def _world() -> tuple[Datastore, FakeClock]:
    ds = Datastore()
    ds.set_static_endpoints({"a": ("10.0.0.1", 8000), "b": ("10.0.0.2", 8000)})
    return ds, FakeClock()


def test_recent_decisions_are_bounded_newest_first_with_scores_per_candidate() -> None:
    ds, clock = _world()
    a, b = ds.endpoints()
    log = DecisionLog(maxlen=3, clock=clock)  # every one detailed below (detailed=5)
    for i in range(5):
        run = ProfileRunResult([b], [a, b], [("queue-scorer", 2.0, [0.25, 1.0])], [0.5, 2.0])
        log.record(_request(i), SchedulingResult({"default": run}, "default", [b]), 0.01 * i)
        clock.advance(1.0)
    recent = log.recent()
    assert [d["request_id"] for d in recent] == ["r4", "r3", "r2"]
    prof = recent[0]["profiles"][0]
    assert prof["picked"] == ["b"] and prof["weights"] == {"queue-scorer": 2.0}
    assert prof["candidates"] == [
        {"endpoint": "a", "scores": {"queue-scorer": 0.25}, "total": 0.5},
        {"endpoint": "b", "scores": {"queue-scorer": 1.0}, "total": 2.0},
    ]
    assert recent[0]["waited_s"] == 0.04 and recent[0]["endpoint"] == "b"
    assert log.dispatched[10] == 5


def test_totals_fold_unknown_objectives_past_the_bound() -> None:
    log = DecisionLog()
    for i in range(1_005):
        log.outcome(_request(i, objective=f"tenant-{i}"), "completed")
    log.outcome(None, "400")
    assert len(log.totals) <= 1_000 + 2
    assert log.totals[("other", "completed")] == 5
    assert log.totals[("other", "400")] == 1  # a new pair past the bound folds too


async def test_snapshot_shows_bands_flows_and_saturation_from_real_flow_control() -> None:
    ds, clock = _world()
    built = build(load_config(None), clock=clock)
    admission = build_admission(built.flow_control, built.detector, ds.endpoints, clock)
    page = StatusPage(ds, DecisionLog(clock=clock), lambda: admission, clock=clock)
    detector = admission.detector
    assert isinstance(detector, LearnedCapacityDetector)  # the default with flow control on
    detector.saturation(ds.endpoints(), clock.now())
    page.sample()
    snap = page.snapshot()
    json.dumps(snap)  # serialisable as served
    assert {e["name"] for e in snap["endpoints"]} == {"a", "b"}
    assert all(not e["healthy"] and e["metrics_age_s"] is None for e in snap["endpoints"])
    # The default detector learns each endpoint's capacity; the page shows what it holds.
    assert [e["capacity"] for e in snap["endpoints"]] == [
        detector.learned(ep.name) for ep in ds.endpoints()
    ]
    assert snap["flow_control"]["enabled"] is True
    assert len(snap["saturation_history"]) == 1


def test_docs_figures_are_the_committed_results() -> None:
    bench = load_script(ROOT / "benchmarks" / "status_overhead.py", "status_overhead")
    result = json.loads(bench.OUT.read_text())
    assert bench.render(result) in (ROOT / "docs" / "observability.md").read_text()
