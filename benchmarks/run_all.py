"""Run every benchmark in this folder, one after the other, each printing its own figures.

Usage: ``make bench`` (or ``.venv/bin/python benchmarks/run_all.py [NAME ...]``). Each benchmark
is a script of its own; this only runs them in turn and stops at the first failure.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
ORDER = ["flowcontrol", "scheduling", "sim_capacity", "overhead", "routing"]


def main(argv: list[str]) -> int:
    names = argv or [n for n in ORDER if (HERE / f"{n}.py").exists()]
    for name in names:
        script = HERE / f"{name}.py"
        if not script.exists():
            print(f"no benchmark named {name!r} (have: {', '.join(ORDER)})", file=sys.stderr)
            return 2
        print(f"\n=== {name}: {sys.executable} {script.relative_to(HERE.parent)}", flush=True)
        rc = subprocess.call([sys.executable, str(script)])
        if rc != 0:
            print(f"benchmark {name} failed with exit code {rc}", file=sys.stderr)
            return rc
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
