"""Priority under overload with the defaults: does critical go first, and do the GPUs stay busy?

For every cell of the sweep (servers x max-num-seqs x output length x streaming x overload, on
each front) this drives ``epp run`` with **no config file** (the embedded pool and objectives:
critical 10, standard unset, sheddable -10) in front of ``epp sim --profile 8b-h100`` with
Poisson arrivals of the three objectives, at a multiple of the pool's estimated capacity.
Per cell: critical p90/p99 time to first byte against its idle p90, priority-0 p90, the share
of the pool's slots busy (the servers' own running count over max-num-seqs), accounting (the
EPP's flow-control outcome counts per priority against what the client sent), and whether this
machine could drive the cell at all (``priority_machine``: such cells are marked machine-bound,
neither pass nor fail). Writes ``<name>.json``, a Markdown table ``<name>.md`` and a heatmap
``<name>_heatmap.png``.

**Timing.** One simulator pool and one EPP serve every cell of a (servers, max-num-seqs, front)
group, back to back; a cell starts once the pool is idle. The simulators run ``--speed`` times
faster than the profile for long outputs (``POST /sim/slowdown``), so a cell reaches steady
state in seconds. Each cell: a warm-up (1.2 service times, at least 1 s), then a measurement window
long enough for ``--min-critical`` critical arrivals (between ``--window`` and ``--max-window``
seconds); latencies count requests sent inside the window, busy slots are sampled inside it. The
idle p90 is measured once per (output, streaming) in a group. Requests still open at the end
(sheddable backlog) are cancelled by the client and counted by the EPP as
``EvictedContextCancelled``. Overloads run in ascending order; once a cell is machine-bound by a
signal that only grows with load (the client could not keep the rate, or a process used a whole
core), the same cell at the higher overloads is not run but recorded as machine-bound
("skipped"; ``--no-skip`` runs them anyway).

**Slow server** (``--slow half,midrun``): server 0 runs at half speed from the start, or slows
to half speed at the start of the window; the cell reports its learned capacity over time (from
the EPP), its queue, and critical's latency after the slowdown.

Usage:
  .venv/bin/python benchmarks/priority.py                 # full sweep into benchmarks/results/
  .venv/bin/python benchmarks/priority.py --quick         # one small cell, under a minute
  .venv/bin/python benchmarks/priority.py --servers 4 --seqs 4 --outputs short --stream on \\
      --overloads 2 --fronts fast,extproc                 # chosen cells
  ... --slow none,half,midrun                             # the slow-server scenarios
  ... --detector utilization-detector                     # the same, with upstream's detector
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "routing"))
sys.path.insert(0, str(HERE / "priority_bench"))

from priority_cell import CellRunner, Stack  # noqa: E402
from priority_machine import carries_up  # noqa: E402
from priority_report import heatmap, skipped_numbers, table  # noqa: E402
from routing_procs import EppFront, Pool, wait_serving  # noqa: E402

from results_file import machine  # noqa: E402

PROFILE = "8b-h100"
SWEEP: dict[str, list[Any]] = {
    "servers": [2, 4, 8],
    "seqs": [4, 32, 256],
    "outputs": ["short", "long"],
    "stream": [True, False],
    "overloads": [1.5, 2.0, 3.0],
    "fronts": ["fast", "extproc"],
    "slow": ["none"],
}
QUICK: dict[str, list[Any]] = {
    "servers": [2],
    "seqs": [4],
    "outputs": ["short"],
    "stream": [True],
    "overloads": [2.0],
    "fronts": ["extproc"],
    "slow": ["none"],
}
# The pre-issue-13 default, for comparison: the default config naming upstream's detector.
UPSTREAM_DEFAULT = (
    "apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\n"
    "featureGates: [flowControl]\nsaturationDetector: {pluginRef: %s}\n"
)


async def run_group(
    servers: int, seqs: int, front: str, cells: list[dict[str, Any]], args: argparse.Namespace
) -> list[dict[str, Any]]:
    """Start one pool and one EPP, run ``cells`` back to back on them, stop both."""
    workdir = args.logs / f"{servers}x{seqs}-{front}"
    workdir.mkdir(parents=True, exist_ok=True)
    pool = Pool(servers, PROFILE, {"max_num_seqs": seqs}, workdir)
    await pool.start()
    config = None
    if args.detector_params:  # the default detector (or --detector) with these parameters
        name = args.detector or "learned-capacity-detector"
        config = (
            "apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\n"
            "featureGates: [flowControl]\n"
            f"plugins:\n- type: {name}\n  parameters: {args.detector_params}\n"
            f"saturationDetector: {{pluginRef: {name}}}\n"
        )
    elif args.detector:
        config = UPSTREAM_DEFAULT % args.detector
    epp = EppFront(pool.endpoints, None, workdir, front=front, config_text=config)
    results = []
    try:
        await epp.start()
        await wait_serving(epp.url, "sim-model")
        assert pool.proc is not None and epp.proc is not None and epp.metrics_url is not None
        stack = Stack(epp.url, epp.metrics_url, pool.endpoints, pool.proc.pid, epp.proc.pid)
        runner = CellRunner(stack, args)
        bound_at: dict[tuple[str, bool, str], str] = {}  # (output, stream, slow) -> why
        for cell in cells:
            print(f"[{time.strftime('%H:%M:%S')}] {cell}", flush=True)
            series = (cell["output"], cell["stream"], cell["slow"])
            if series in bound_at and not args.no_skip:
                n = skipped_numbers(servers * seqs, bound_at[series])
                results.append({"cell": cell, "numbers": n})
                print(f"    skipped: machine-bound at {bound_at[series]}", flush=True)
                continue
            results.append(await runner.run(cell))
            n = results[-1]["numbers"]
            if why := carries_up(n["machine"]):
                bound_at[series] = f"{cell['overload']:g}x ({why})"
            print(
                f"    critical {n['critical_over_idle'] or 0:.1f}x idle, busy "
                f"{n['slots_busy']:.0%}, {n['verdict']}, {n['cell_wall_s']:.0f}s",
                flush=True,
            )
    finally:
        await epp.stop()
        await pool.stop()
    return results


def _list(raw: str | None, base: list[Any], kind: Any) -> list[Any]:
    return [kind(x) for x in raw.split(",")] if raw else base


def _cells(args: argparse.Namespace) -> list[dict[str, Any]]:
    base = QUICK if args.quick else SWEEP
    detector = args.detector or "learned-capacity-detector (default)"
    if args.detector_params:
        detector += f" {args.detector_params}"
    axes = [
        _list(args.fronts, base["fronts"], str),
        _list(args.servers, base["servers"], int),
        _list(args.seqs, base["seqs"], int),
        _list(args.outputs, base["outputs"], str),
        [s == "on" for s in args.stream.split(",")] if args.stream else base["stream"],
        _list(args.slow, base["slow"], str),
        # Ascending: a cell machine-bound at one load skips the higher ones (see --no-skip).
        sorted(_list(args.overloads, base["overloads"], float)),
    ]
    keys = ("front", "servers", "seqs", "output", "stream", "slow", "overload")
    return [
        {"detector": detector, **dict(zip(keys, values, strict=True))}
        for values in itertools.product(*axes)
    ]


def render(args: argparse.Namespace) -> int:
    """Rewrite ``<name>.md`` and the heatmap from ``<name>.json`` (no run)."""
    doc = json.loads((args.out / f"{args.name}.json").read_text())
    (args.out / f"{args.name}.md").write_text(f"`{doc['command']}`\n\n" + table(doc["cells"]))
    heatmap(doc["cells"], args.out / f"{args.name}_heatmap.png")
    print(f"rendered {args.out / args.name}.md and _heatmap.png")
    return 0


async def run(args: argparse.Namespace) -> int:
    cells = _cells(args)
    groups: dict[tuple[int, int, str], list[dict[str, Any]]] = {}
    for c in cells:
        groups.setdefault((c["servers"], c["seqs"], c["front"]), []).append(c)
    results: list[dict[str, Any]] = []
    out: Path = args.out
    await asyncio.to_thread(out.mkdir, parents=True, exist_ok=True)
    command = " ".join(["benchmarks/priority.py", *sys.argv[1:]])
    t0 = time.monotonic()
    for (servers, seqs, front), mine in groups.items():
        results += await run_group(servers, seqs, front, mine, args)
        doc = {
            **machine(),
            "command": command,
            "profile": PROFILE,
            "speed": args.speed,
            "wall_s": time.monotonic() - t0,
            "cells": results,
        }
        (out / f"{args.name}.json").write_text(json.dumps(doc, indent=1))
    (out / f"{args.name}.md").write_text(f"`{command}`\n\n" + table(results))
    heatmap(results, out / f"{args.name}_heatmap.png")
    print(table(results))
    print(f"wrote {out / args.name}.json, .md and _heatmap.png in {time.monotonic() - t0:.0f} s")
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one small cell, under a minute")
    parser.add_argument("--servers", help="comma-separated, e.g. 2,4,8")
    parser.add_argument("--seqs", help="max-num-seqs values, e.g. 4,32,256")
    parser.add_argument("--outputs", help="short,long")
    parser.add_argument("--stream", help="on,off")
    parser.add_argument("--overloads", help="multiples of capacity, e.g. 1.5,2,3")
    parser.add_argument("--fronts", help="fast,extproc")
    parser.add_argument("--slow", help="none,half,midrun: a server at half speed (see above)")
    parser.add_argument("--detector", help="name a saturation detector instead of no config")
    parser.add_argument(
        "--detector-params", help="the detector's parameters, as YAML flow, e.g. {holdback: 0}"
    )
    parser.add_argument(
        "--speed", type=float, default=4.0, help="simulator speed-up for long outputs (4)"
    )
    parser.add_argument("--window", type=float, default=3.0, help="shortest window, s (3)")
    parser.add_argument("--max-window", type=float, default=4.5, help="longest window, s (4.5)")
    parser.add_argument(
        "--min-critical", type=int, default=20, help="critical arrivals per window (20)"
    )
    parser.add_argument("--idle-n", type=int, default=8, help="idle probe requests (8)")
    parser.add_argument(
        "--no-skip",
        action="store_true",
        help="run every cell, also those above a load this machine could not drive",
    )
    parser.add_argument("--out", type=Path, help="where results go")
    parser.add_argument("--name", help="file name stem (default priority / priority-quick)")
    parser.add_argument("--logs", type=Path, help="process logs")
    parser.add_argument(
        "--render-only", action="store_true", help="rewrite .md and heatmap from .json"
    )
    args = parser.parse_args(argv)
    args.name = args.name or ("priority-quick" if args.quick else "priority")
    args.out = args.out or (HERE / "out" if args.quick else HERE / "results")
    args.logs = args.logs or HERE / "out" / f"{args.name}-logs"
    if args.render_only:
        return render(args)
    try:
        import uvloop

        return int(uvloop.run(run(args)))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
