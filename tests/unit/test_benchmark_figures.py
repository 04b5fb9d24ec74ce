"""The benchmark figures in README.md and docs/ are the ones the committed results files hold."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import render_figures  # noqa: E402


def test_every_quoted_figure_matches_the_committed_results() -> None:
    stale = render_figures.stale(ROOT)
    assert stale == [], f"run .venv/bin/python benchmarks/render_figures.py ({stale} are stale)"


def test_a_block_edited_by_hand_is_found_and_rewritten(tmp_path: Path) -> None:
    for rel, wanted in render_figures.blocks().items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        text = (ROOT / rel).read_text()
        name = next(iter(wanted))
        begin = text.index(f"<!-- BEGIN figures:{name} ")
        end = text.index("-->", begin) + 4
        (tmp_path / rel).write_text(text[:end] + "| typed by hand | 42x |\n" + text[end:])
    assert sorted(render_figures.stale(tmp_path)) == sorted(render_figures.blocks())
    render_figures.stale(tmp_path, write=True)
    assert render_figures.stale(tmp_path) == []
    assert "typed by hand" not in (tmp_path / "README.md").read_text()


def test_missing_results_are_quoted_as_not_measured(tmp_path: Path) -> None:
    table = render_figures.blocks(tmp_path)["README.md"]["benchmarks"]
    assert table.count("not measured into `benchmarks/results/` yet") == 6  # every row


def test_the_shipped_arm_is_quoted_first_when_measured(tmp_path: Path) -> None:
    results = json.loads((ROOT / "benchmarks/results/results.json").read_text())
    shared = results["workloads"]["shared_prefix"]["arms"]
    shared["shipped"] = {**shared["fc-off"], "arm": "shipped", "title": "EPP as shipped"}
    (tmp_path / "results.json").write_text(json.dumps(results))
    cell = render_figures.routing_summary(json.loads((tmp_path / "results.json").read_text()))
    assert "not run yet" not in cell
    assert cell.index("`shipped` shared prefix") < cell.index("`fc-off` shared prefix")


def test_a_block_that_is_not_there_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"README.md: no marked block for benchmarks"):
        render_figures.rewrite("no markers here\n", {"benchmarks": "x\n"}, "README.md")


def test_the_priority_ordering_goal_compares_time_held_in_the_epp() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks" / "priority_bench"))
    from priority_report import _held_in_order, bucket_quantile

    # Cumulative buckets as Prometheus writes them: 6 of 10 within 0.1 s, all within 1 s.
    held = {"0.01": 2, "0.1": 6, "1.0": 10, "+Inf": 10}
    assert bucket_quantile(held, 0.5) == 0.1
    assert bucket_quantile(held, 0.9) == 1.0
    assert bucket_quantile({}, 0.5) is None
    assert bucket_quantile({"+Inf": 0}, 0.5) is None
    late = {"0.01": 0, "1.0": 1, "+Inf": 3}
    assert bucket_quantile(late, 0.9) == float("inf")
    standard = {"epp_wait_p90": 0.25}
    assert _held_in_order(standard, {"epp_wait_p50": 2.5})
    assert not _held_in_order(standard, {"epp_wait_p50": 0.1})  # priority 0 held longer
    assert _held_in_order(standard, {"epp_wait_p50": None})  # no sheddable dispatched
    assert not _held_in_order({"epp_wait_p90": None}, {"epp_wait_p50": 0.1})


def test_benchmarks_md_ends_with_the_routing_notes() -> None:
    # BENCHMARKS.md is the routing report followed by benchmarks/routing/NOTES.md: prose edited
    # in BENCHMARKS.md alone is lost the next time the report is rendered (--render-only).
    import re

    def prose(text: str) -> str:  # marked blocks emptied: render_figures.py fills those
        return re.sub(
            r"(<!-- BEGIN figures:[^\n]*-->\n).*?(<!-- END figures:)", r"\1\2", text, flags=re.S
        )

    notes = prose((ROOT / "benchmarks" / "routing" / "NOTES.md").read_text()).strip()
    published = prose((ROOT / "BENCHMARKS.md").read_text()).strip()
    assert published.endswith(notes), "edit benchmarks/routing/NOTES.md, then --render-only"
