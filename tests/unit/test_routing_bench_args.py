"""benchmarks/routing.py's command line: where a run's report goes, so that a partial or
scratch run never rewrites BENCHMARKS.md or replaces the committed results with a subset."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest
from tests.unit.script_module import load_script

ROOT = Path(__file__).resolve().parents[2]


def _routing() -> ModuleType:
    return load_script(ROOT / "benchmarks" / "routing.py", "routing_bench")


def test_a_full_run_into_the_committed_results_writes_benchmarks_md() -> None:
    args = _routing().parse_args([])
    assert args.out.resolve() == (ROOT / "benchmarks" / "results").resolve()
    assert args.report.resolve() == (ROOT / "BENCHMARKS.md").resolve()


def test_a_run_into_another_folder_writes_its_report_there(tmp_path: Path) -> None:
    args = _routing().parse_args(["--workloads", "shared_prefix", "--out", str(tmp_path)])
    assert args.report == tmp_path / "REPORT.md"
    quick = _routing().parse_args(["--quick"])
    assert quick.report == quick.out / "REPORT.md"
    assert quick.report.resolve() != (ROOT / "BENCHMARKS.md").resolve()


def test_an_explicit_report_is_kept(tmp_path: Path) -> None:
    args = _routing().parse_args(["--out", str(tmp_path), "--report", str(tmp_path / "r.md")])
    assert args.report == tmp_path / "r.md"


def test_a_subset_into_the_committed_results_needs_merge(
    capsys: pytest.CaptureFixture[str],
) -> None:
    routing = _routing()
    with pytest.raises(SystemExit) as exc:
        routing.parse_args(["--workloads", "uniform"])
    assert exc.value.code == 2
    assert "--merge" in capsys.readouterr().err
    merged = routing.parse_args(["--workloads", "kv_pressure", "--merge"])
    assert merged.report.resolve() == (ROOT / "BENCHMARKS.md").resolve()
