"""The P/D benchmark's rendered block says where P/D wins and loses from the numbers alone."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import render_figures  # noqa: E402


def cell(ttft: float, itl: float, gap: float, tput: float) -> dict[str, Any]:
    return {
        "prompt_tokens": 3000,
        "output_tokens": 24,
        "offered_rps": 2.5,
        "requests": 10,
        "errors": 0,
        "disaggregated": 10,
        "ttft_p50_ms": ttft / 2,
        "ttft_p90_ms": ttft,
        "itl_p50_ms": itl,
        "itl_p90_ms": itl,
        "itl_max_p90_ms": gap,
        "e2e_p50_ms": 1.0,
        "e2e_p90_ms": 2.0,
        "output_tokens_per_s": tput,
        "requests_per_s": 1.0,
    }


def test_verdict_names_wins_losses_and_ties() -> None:
    results = {
        "command": ".venv/bin/python benchmarks/pd.py",
        "measured_at": "now",
        "cpus": 2,
        "load_average_1m": 1.0,
        "setup": {
            "pd": "2P:2D",
            "servers": 4,
            "profile": "8b-h100",
            "max_num_batched_tokens": 2048,
            "front": "fast",
            "duration_s": 40,
        },
        "workloads": {
            "long-prompt": {
                "pd": cell(ttft=2000, itl=12, gap=15, tput=50),
                "aggregated": cell(ttft=1000, itl=50, gap=450, tput=51),
            }
        },
    }
    block = render_figures.pd_block(results)
    assert "| long-prompt (3000 -> 24 tokens) | pd | 2.5 | 1000 / 2000 |" in block
    verdict = block.splitlines()[-1]
    assert "wins on p90 ITL 12 vs 50, p90 longest decode gap 15 vs 450" in verdict
    assert "loses on p90 TTFT 2000 vs 1000" in verdict
    assert "even on throughput" in verdict


def test_missing_results_say_how_to_measure() -> None:
    assert "benchmarks/pd.py" in render_figures.pd_block(None)
