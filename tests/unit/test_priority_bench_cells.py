"""The priority benchmark's own judgement of a cell: when a cell says more about this machine
than about the EPP (machine-bound), and how a cell skipped for that reason is reported."""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks" / "routing"))
sys.path.insert(0, str(ROOT / "benchmarks" / "priority_bench"))

from priority_figures import sweep_block, verdicts  # noqa: E402
from priority_load import _cannot_drive, prompt  # noqa: E402
from priority_machine import carries_up, short_of_rate, verdict  # noqa: E402
from priority_report import heatmap, skipped_numbers, table  # noqa: E402


def test_a_poisson_count_that_falls_short_by_chance_is_not_machine_bound() -> None:
    # 14/s for 6.6 s: 92 arrivals expected; 73 (11/s) is 2 standard deviations short, which a
    # Poisson process does about once in 40 cells. Not the machine.
    assert not short_of_rate(73, 14.0, 6.6, 0.9)
    ok = verdict(14.0, 73, 6.6, 0.001, {"client": 0.1}, {})
    assert not ok["machine_bound"], ok["reasons"]
    # 700/s of 1,900/s over 3 s is the client failing to keep up.
    assert short_of_rate(2100, 1900.0, 3.0, 0.9)
    bound = verdict(1900.0, 2100, 3.0, 0.001, {}, {})
    assert bound["machine_bound"] and bound["reasons"] == ["arrivals 700/s of 1900/s"]
    # The client's own early stop uses the same test.
    assert _cannot_drive(0.0, 2.5, 22, 14.0) == ""
    assert _cannot_drive(0.0, 2.5, 1000, 1900.0).startswith("sent 400/s")


def test_chance_alone_rarely_trips_the_shortfall() -> None:
    rng = random.Random(7)
    tripped = 0
    for _ in range(2000):
        t, n = 0.0, 0
        while (t := t + rng.expovariate(14.0)) <= 6.6:
            n += 1
        tripped += short_of_rate(n, 14.0, 6.6, 0.9)
    assert tripped <= 10  # 3 standard deviations: about 0.1% of cells


def test_only_signals_that_grow_with_load_carry_to_the_next_overload() -> None:
    assert carries_up({"reasons": ["client stopped: arrivals 1.0 s late"]})
    assert carries_up({"reasons": ["simulators starved 0.3 s/s", "simulators CPU 0.99 cores"]})
    assert carries_up({"reasons": ["simulators starved 0.3 s/s"]}) == ""  # other users
    assert carries_up({"reasons": ["client lag p90 60 ms"]}) == ""
    assert carries_up({"reasons": []}) == ""


def test_a_skipped_cell_is_reported_machine_bound_and_not_counted_as_measured(
    tmp_path: Path,
) -> None:
    cell = {"front": "fast", "servers": 8, "seqs": 256, "output": "short", "stream": True}
    skipped: dict[str, Any] = {
        "cell": {**cell, "slow": "none", "overload": 2.0},
        "numbers": skipped_numbers(2048, "1.5x (client stopped: arrivals 1.0 s late)"),
    }
    ran: dict[str, Any] = {
        "cell": {**cell, "slow": "none", "overload": 1.5},
        "numbers": {
            **skipped_numbers(2048, "x"),
            "skipped": None,
            "goal": {"critical_p90": True, "accounting": True},
            "machine": {
                "machine_bound": True,
                "reasons": ["client stopped: arrivals 1.0 s late"],
                "loadavg_1m": 2.0,
            },
        },
    }
    cells = [ran, skipped]
    doc = {"cells": cells, "wall_s": 60}
    v = verdicts(doc)
    assert (v["machine_bound"], v["skipped"], v["bound_ran"], v["driven"]) == (2, 1, 1, 0)
    assert v["bound_per_goal"]["critical_p90"] == 1  # the skipped cell counts nothing
    block = sweep_block(doc)
    assert "1 of them not run" in block
    assert "skipped (lower load machine-bound)" in block
    assert "load average 2-2" in block  # the skipped cell has no load reading of its own
    assert "skipped: machine-bound at 1.5x" in table(cells)
    assert heatmap(cells, tmp_path / "h.png").stat().st_size > 1000


def test_cells_with_the_same_seed_never_repeat_a_prompts_first_block() -> None:
    # One EPP serves several cells, and cells of the same size share a seed: a repeated prompt
    # would be a prefix hit (the index and the servers' caches still hold it), not the
    # distinct traffic the sweep means to send. 64 characters: one 16-token prefix block.
    first = [prompt(random.Random(4))[:64] for _ in range(50)]
    again = [prompt(random.Random(4))[:64] for _ in range(50)]
    assert len(set(first + again)) == 100
