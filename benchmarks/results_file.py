"""Where a benchmark's figures go: one JSON file per benchmark under ``benchmarks/results/``.

Each file says how it was made (command, time, CPUs, the 1-minute load average as it ended,
Python), so the figures quoted in README.md and docs/ (rendered from these files by
``benchmarks/render_figures.py``) always come with the conditions they were measured under.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    """The conditions of a run: when, on how many CPUs, how busy they already were."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpus": os.cpu_count(),
        "load_average_1m": round(load[0], 2),
        "python": platform.python_version(),
    }


def write_results(name: str, figures: dict[str, Any], path: Path | None = None) -> Path:
    """Write ``figures`` with the run's command and machine to ``path`` (default: results/)."""
    target = path or RESULTS / f"{name}.json"
    command = " ".join([".venv/bin/python", f"benchmarks/{name}.py", *sys.argv[1:]])
    data = {"benchmark": name, "command": command, **machine(), **figures}
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(data, indent=1) + "\n")
    return target


def read_results(name: str, directory: Path = RESULTS) -> dict[str, Any] | None:
    """A benchmark's latest results, or None when it has not been run into ``directory``."""
    path = directory / f"{name}.json"
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data
