"""Priority under overload with the defaults: does critical go first, and do the GPUs stay busy?

For every cell of the sweep (servers x max-num-seqs x output length x streaming x overload, on
each front) this drives ``epp run`` with **no config file** (the embedded pool and objectives:
critical 10, standard unset, sheddable -10) in front of ``epp sim --profile 8b-h100`` with
Poisson arrivals of the three objectives, at a multiple of the pool's estimated capacity.
Per cell: critical p90/p99 time to first byte against its idle p90, priority-0 p90, the share
of the pool's slots busy (sampled from the simulators), and accounting (the EPP's flow-control
outcome counts per priority against what the client sent). Writes ``<name>.json``, a Markdown
table ``<name>.md`` and a heatmap ``<name>_heatmap.png``.

One simulator pool and one EPP serve every cell of a (servers, max-num-seqs, front) group; a
cell starts only once the pool is idle again. Requests still open when a cell ends (sheddable
backlog) are cancelled by the client and counted by the EPP as ``EvictedContextCancelled``.

Usage:
  .venv/bin/python benchmarks/priority.py                 # full sweep into benchmarks/results/
  .venv/bin/python benchmarks/priority.py --quick         # one small cell, under a minute
  .venv/bin/python benchmarks/priority.py --servers 4 --seqs 4 --outputs short --stream on \\
      --overloads 2 --fronts fast,extproc                 # chosen cells
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

from priority_load import Load, SlotSampler, idle_probe, mean_service_s, pool_idle  # noqa: E402
from priority_report import cell_numbers, heatmap, table  # noqa: E402
from routing_metrics import epp_outcomes, fetch, parse  # noqa: E402
from routing_procs import EppFront, Pool, wait_serving  # noqa: E402

PROFILE = "8b-h100"
SWEEP: dict[str, list[Any]] = {
    "servers": [2, 4, 8],
    "seqs": [4, 32, 256],
    "outputs": ["short", "long"],
    "stream": [True, False],
    "overloads": [1.5, 2.0, 3.0],
    "fronts": ["fast", "extproc"],
}
QUICK: dict[str, list[Any]] = {
    "servers": [2],
    "seqs": [4],
    "outputs": ["short"],
    "stream": [True],
    "overloads": [2.0],
    "fronts": ["extproc"],
}
# The pre-issue-13 default, for comparison: the default config naming upstream's detector.
UPSTREAM_DEFAULT = (
    "apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\n"
    "saturationDetector: {pluginRef: %s}\n"
)


def _delta(
    after: dict[str, dict[str, int]], before: dict[str, dict[str, int]]
) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for prio, counts in after.items():
        for outcome, n in counts.items():
            d = n - before.get(prio, {}).get(outcome, 0)
            if d:
                out.setdefault(prio, {})[outcome] = d
    return out


async def _epp_gauges(url: str) -> tuple[float | None, float]:
    """(learned capacity summed over endpoints, None with another detector; requests still
    inside flow control) from the EPP's metrics."""
    import aiohttp

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        samples = parse(await fetch(session, url))
    found = [v for n, _, v in samples if n == "endpoint_picker_flow_control_learned_capacity"]
    queued = sum(v for n, _, v in samples if n == "inference_extension_flow_control_queue_size")
    return (sum(found) if found else None), queued


async def run_cell(
    epp: EppFront, sims: list[str], cell: dict[str, Any], load_s: float, idle_n: int
) -> dict[str, Any]:
    """One cell on a running pool and EPP: idle probe, then the overload, then the numbers."""
    slots = cell["servers"] * cell["seqs"]
    metrics = [f"http://{e}/metrics" for e in sims]
    epp_metrics = epp.metrics_url
    assert epp_metrics is not None  # an EPP front always has one
    service = mean_service_s(cell["output"])
    t0 = time.monotonic()
    await pool_idle(metrics)
    idle = await idle_probe(
        epp.url, cell["output"], cell["stream"], idle_n, parallel=max(1, min(4, slots // 4))
    )
    await pool_idle(metrics)
    rate = cell["overload"] * slots / service
    before = await epp_outcomes(epp_metrics)
    sampler = SlotSampler(metrics, epp_metrics)
    sampler.start()
    load = Load(epp.url, rate, load_s, cell["output"], cell["stream"], seed=len(sims))
    started = time.monotonic()
    try:
        await load.run(grace_s=2 * service + 5)
    finally:
        await sampler.stop()
    # The EPP records a cancelled request when the front passes the disconnect on: wait for it.
    sent = len(load.shots)
    deadline = time.monotonic() + 15
    while True:
        outcomes = _delta(await epp_outcomes(epp_metrics), before)
        if sum(sum(c.values()) for c in outcomes.values()) >= sent or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.25)
    learned, still_queued = await _epp_gauges(epp_metrics)
    busy, waiting = sampler.window(started + min(service, load_s / 3), started + load_s)
    numbers = cell_numbers(load.shots, idle, outcomes, busy, waiting, slots)
    numbers["learned_slots"] = learned
    if sampler.learned and any(sampler.learned):
        numbers["learned_slots_min_max"] = [min(sampler.learned), max(sampler.learned)]
    numbers["epp_still_queued"] = still_queued
    numbers["cell_wall_s"] = time.monotonic() - t0
    numbers["offered_rate"] = rate
    numbers["est_service_s"] = service
    return {"cell": cell, "numbers": numbers}


async def run_group(
    servers: int, seqs: int, front: str, cells: list[dict[str, Any]], args: argparse.Namespace
) -> list[dict[str, Any]]:
    workdir = args.logs / f"{servers}x{seqs}-{front}"
    workdir.mkdir(parents=True, exist_ok=True)
    pool = Pool(servers, PROFILE, {"max_num_seqs": seqs}, workdir)
    await pool.start()
    config = UPSTREAM_DEFAULT % args.detector if args.detector else None
    epp = EppFront(pool.endpoints, None, workdir, front=front, config_text=config)
    results = []
    try:
        await epp.start()
        await wait_serving(epp.url, "sim-model")
        for cell in cells:
            print(f"[{time.strftime('%H:%M:%S')}] {cell}", flush=True)
            load_s = args.load_s or (12.0 if cell["output"] == "short" else 25.0)
            results.append(await run_cell(epp, pool.endpoints, cell, load_s, args.idle_n))
    finally:
        await epp.stop()
        await pool.stop()
    return results


def _cells(args: argparse.Namespace) -> list[dict[str, Any]]:
    base = QUICK if args.quick else SWEEP
    pick: dict[str, list[Any]] = {
        "servers": [int(x) for x in args.servers.split(",")] if args.servers else base["servers"],
        "seqs": [int(x) for x in args.seqs.split(",")] if args.seqs else base["seqs"],
        "outputs": args.outputs.split(",") if args.outputs else base["outputs"],
        "stream": [s == "on" for s in args.stream.split(",")] if args.stream else base["stream"],
        "overloads": [float(x) for x in args.overloads.split(",")]
        if args.overloads
        else base["overloads"],
        "fronts": args.fronts.split(",") if args.fronts else base["fronts"],
    }
    detector = args.detector or "learned-capacity-detector (default)"
    return [
        {
            "front": f,
            "detector": detector,
            "servers": s,
            "seqs": q,
            "output": o,
            "stream": st,
            "overload": ov,
        }
        for f, s, q, o, st, ov in itertools.product(
            pick["fronts"],
            pick["servers"],
            pick["seqs"],
            pick["outputs"],
            pick["stream"],
            pick["overloads"],
        )
    ]


async def run(args: argparse.Namespace) -> int:
    cells = _cells(args)
    groups: dict[tuple[int, int, str], list[dict[str, Any]]] = {}
    for c in cells:
        groups.setdefault((c["servers"], c["seqs"], c["front"]), []).append(c)
    results: list[dict[str, Any]] = []
    out: Path = args.out
    await asyncio.to_thread(out.mkdir, parents=True, exist_ok=True)
    command = " ".join(["benchmarks/priority.py", *sys.argv[1:]])
    for (servers, seqs, front), mine in groups.items():
        results += await run_group(servers, seqs, front, mine, args)
        doc = {"command": command, "profile": PROFILE, "cells": results}
        (out / f"{args.name}.json").write_text(json.dumps(doc, indent=1))
    (out / f"{args.name}.md").write_text(f"`{command}`\n\n" + table(results))
    heatmap(results, out / f"{args.name}_heatmap.png")
    print(table(results))
    print(f"wrote {out / args.name}.json, .md and _heatmap.png")
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
    parser.add_argument("--detector", help="name a saturation detector instead of no config")
    parser.add_argument("--load-s", type=float, help="seconds of arrivals per cell")
    parser.add_argument("--idle-n", type=int, default=12, help="idle probe requests per cell")
    parser.add_argument("--out", type=Path, help="where results go")
    parser.add_argument("--name", help="file name stem (default priority / priority-quick)")
    parser.add_argument("--logs", type=Path, help="process logs")
    args = parser.parse_args(argv)
    if args.quick and args.load_s is None:
        args.load_s = 8.0
    if args.quick and args.idle_n == 12:
        args.idle_n = 6
    args.name = args.name or ("priority-quick" if args.quick else "priority")
    args.out = args.out or (HERE / "out" if args.quick else HERE / "results")
    args.logs = args.logs or HERE / "out" / f"{args.name}-logs"
    try:
        import uvloop

        return int(uvloop.run(run(args)))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
