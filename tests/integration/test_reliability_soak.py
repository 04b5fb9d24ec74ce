"""The soak harness (benchmarks/soak.py), shortened so the suite stays fast on a 2-core box:
45 s per front with a fault every 12 s (each of the three faults at least once) instead of
``--quick``'s 3 minutes. Real processes: ``epp sim`` x3, ``epp run`` and its Envoy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


@pytest.mark.timeout(300)
@pytest.mark.parametrize("front", ["extproc", "fast"])
def test_a_short_soak_answers_everything_and_leaks_nothing(front: str) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "soak.py"), "--front", front,
         "--duration", "45", "--fault-every", "12"],
        capture_output=True, text=True, timeout=280, check=False,
    )  # fmt: skip
    summary = next(
        (json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")), None
    )
    assert summary is not None, proc.stdout + proc.stderr
    assert summary["hung"] == 0, summary
    assert all(v == 0 for v in summary["idle_gauges"].values()), summary
    assert summary["metrics_bytes"] < 1_000_000, summary
    assert summary["answered"].get("200", 0) > 0, summary
    # RSS growth is judged on the full runs (30 min); 45 s is mostly warm-up.
