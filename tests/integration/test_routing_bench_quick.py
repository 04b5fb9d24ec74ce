"""The routing benchmark's --quick smoke run, end to end, so the harness cannot rot.

Real processes throughout: ``epp sim``, Envoy, ``epp run`` and inference-perf in its own Python
3.12 venv (created on first use; the test is skipped where it cannot be). Asserts what the run
must show whatever the machine's speed: every request answered and accounted for, round robin
spreading evenly, prefix-aware routing hitting the prefix cache more often than round robin.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from e2e_support import run_in_own_group

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks" / "routing"))

from routing_env import BenchUnavailable, ensure_all  # noqa: E402

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client_ready() -> None:
    try:
        ensure_all()
    except BenchUnavailable as err:
        pytest.skip(f"inference-perf unavailable here: {err}")


# The run's own bound; creating inference-perf's venv (the fixture, first use only) is bounded
# by routing_env.INSTALL_TIMEOUT_S instead, so a slow package index does not eat the run's time.
@pytest.mark.timeout(420, func_only=True)
def test_quick_run_reports_every_arm(client_ready: None, tmp_path: Path) -> None:
    report = tmp_path / "REPORT.md"
    proc = run_in_own_group(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "routing.py"),
            "--quick",
            "--out",
            str(tmp_path),
            "--logs",
            str(tmp_path / "logs"),
            "--report",
            str(report),
        ],
        timeout=400,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    shared = results["workloads"]["shared_prefix"]["arms"]
    assert set(shared) == {"round-robin", "shipped"}
    for res in shared.values():
        summary = res["tenants"][0]["summary"]
        assert summary["successes"]["count"] == summary["load_summary"]["count"] > 0
        assert summary["failures"]["count"] == 0
    spread = shared["round-robin"]["pool"]["requests_per_endpoint"]
    assert len(spread) == 4 and max(spread) - min(spread) <= 2  # round robin (+1 warm-up)
    assert (
        shared["shipped"]["pool"]["prefix_hit_rate"]
        > shared["round-robin"]["pool"]["prefix_hit_rate"]
    )

    fc = results["workloads"]["priority"]["arms"]["fc-concurrency"]
    sent: dict[str, int] = {"0": fc["warmup_requests"]}
    for tenant in [*fc["tenants"], fc["idle"]]:
        key = str(tenant["priority"])
        sent[key] = sent.get(key, 0) + tenant["summary"]["load_summary"]["count"]
    outcomes = {p: sum(o.values()) for p, o in fc["epp_outcomes"].items()}
    assert outcomes == sent  # every request the clients sent ended with one EPP outcome

    text = report.read_text()
    assert "## Targets and measurements" in text and "EPP as shipped" in text
    for png in ("routing_shared_prefix_vs_load.png", "routing_priority_ttft.png"):
        assert (tmp_path / png).stat().st_size > 5000
        assert png in text
