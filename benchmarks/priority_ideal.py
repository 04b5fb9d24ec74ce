"""Which priority cells any non-preemptive holdback could meet: the sweep against a model.

For every streaming cell of a priority sweep's results (``benchmarks/priority.py``) with at most
``--max-slots`` slots, this runs ``priority_model``'s model of an ideal EPP (no latency, perfect
knowledge, nothing preempted) at every reserve of slots for critical, and reports:

- the model's critical wait and busy share at the reserve the shipped holdback keeps (5% of the
  slots, at least one, grown to critical's demand within an idle budget: the detector's own
  rule, fed critical's share of the pool's turnover, 20% of arrivals times the overload);
- the smallest reserve at which the model meets the cell's latency goal (against the idle p90
  the sweep measured on each front) with at least 90% of slots busy, or that none does;
- what the sweep measured in that cell.

A cell no reserve reaches is out of reach for holdback, the mechanism the EPP uses: keeping a
number of slots free for critical and preempting nothing. (A cleverer non-preemptive policy is
not ruled out by the model in general.)
Larger pools, and cells without streaming (whose allowance is a whole response), met the goal
in the sweep and are left out. The model runs in seconds; it reads the sweep, it does not rerun
it.

Usage:
  .venv/bin/python benchmarks/priority_ideal.py             # benchmarks/results/priority.json
  .venv/bin/python benchmarks/priority_ideal.py --sweep /tmp/sweep/priority.json --out /tmp/x.json
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "routing"))
sys.path.insert(0, str(HERE / "priority_bench"))

from priority_figures import ideal_block  # noqa: E402
from priority_model import CRITICAL_SHARE, best, frontier, meets, simulate  # noqa: E402

from endpoint_picker.datastore import Endpoint, Metrics  # noqa: E402
from endpoint_picker.flowcontrol import LearnedCapacityDetector  # noqa: E402
from results_file import RESULTS, write_results  # noqa: E402


def shipped_reserve(slots: int, overload: float) -> int:
    """The slots the shipped detector (its defaults) keeps for critical in a full pool of
    ``slots``, when critical takes its share of arrivals at ``overload`` times capacity: its
    share of the pool's turnover, as the flow controller measures it."""
    det = LearnedCapacityDetector.from_params({"initialCapacity": slots, "maxCapacity": slots})
    ep = Endpoint(name="pool", pod_name="pool", address="127.0.0.1", port=8000)
    ep.metrics = Metrics(running_requests_size=0, update_time=1.0)
    share = min(1.0, CRITICAL_SHARE * overload)
    ceiling = det.holdback_ceiling([ep], 1.0, top_share=share)
    return round(slots * (1 - ceiling))


def rows(sweep: dict[str, Any], max_slots: int, criticals: int) -> list[dict[str, Any]]:
    """One row per (servers, seqs, output, overload) among the sweep's streaming cells."""
    out: dict[tuple[int, int, str, float], dict[str, Any]] = {}
    for c in sweep["cells"]:
        k, n = c["cell"], c["numbers"]
        slots = k["servers"] * k["seqs"]
        if (
            not k["stream"]
            or k["slow"] != "none"
            or slots > max_slots
            or n.get("skipped")
            or not n.get("idle_p90")
        ):
            continue
        key = (k["servers"], k["seqs"], k["output"], k["overload"])
        if key not in out:
            model = frontier(slots, k["output"], k["overload"], n["speed"], criticals)
            ours = shipped_reserve(slots, k["overload"])
            at = next((o for o in model if o.reserve == ours), None) or simulate(
                slots, k["output"], k["overload"], ours, n["speed"], criticals
            )
            out[key] = {
                "servers": k["servers"],
                "seqs": k["seqs"],
                "slots": slots,
                "output": k["output"],
                "overload": k["overload"],
                "speed": n["speed"],
                "shipped_reserve": ours,
                "at_shipped": asdict(at),
                "frontier": [asdict(o) for o in model],
                "fronts": {},
                "_model": model,
                "_at": at,
            }
        row = out[key]
        top = best(row["_model"], n["idle_p90"])
        row["fronts"][k["front"]] = {
            "idle_p90": n["idle_p90"],
            "best_reserve": None if top is None else top.reserve,
            "best_busy": None if top is None else top.busy,
            "shipped_meets": meets(row["_at"], n["idle_p90"]),
            "measured_verdict": n["verdict"],
            "measured_missed": sorted(g for g, v in n["goal"].items() if not v),
            "measured_critical_p90": n["critical"]["p90"],
            "measured_critical_p99": n["critical"]["p99"],
            "measured_critical_scored": n["critical"]["scored"],
        }
    for row in out.values():
        del row["_model"], row["_at"]
    return sorted(out.values(), key=lambda r: (r["slots"], r["output"], r["overload"]))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sweep", type=Path, default=RESULTS / "priority.json")
    parser.add_argument("--out", type=Path, help="default: benchmarks/results/priority_ideal.json")
    parser.add_argument("--max-slots", type=int, default=64)
    parser.add_argument("--criticals", type=int, default=20000, help="critical arrivals a run")
    args = parser.parse_args(argv)
    sweep = json.loads(args.sweep.read_text())
    figures = {
        "sweep": {"command": sweep["command"], "measured_at": sweep["measured_at"]},
        "criticals": args.criticals,
        "max_slots": args.max_slots,
        "rows": rows(sweep, args.max_slots, args.criticals),
    }
    path = write_results("priority_ideal", figures, args.out)
    print(ideal_block(json.loads(path.read_text())))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
