"""Routing quality: the same workloads through round robin and through the EPP, side by side.

For every workload and arm this starts a fresh simulated pool (``epp sim``, profile ``8b-h100``
shrunk so that capacity, prefix caching and KV pressure matter on a laptop-sized machine), then
either a bare Envoy doing round robin (no EPP) or ``epp run`` with the arm's config and its own
Envoy, and drives it with inference-perf (kubernetes-sigs), one process per tenant. Client numbers
come from inference-perf's JSON reports, server numbers from the simulators' ``/metrics`` and the
EPP's flow-control outcome counters. Writes ``results.json``, PNG plots and a Markdown report.

Usage:
  .venv/bin/python benchmarks/routing.py            # full run (~30 min): BENCHMARKS.md + plots
  .venv/bin/python benchmarks/routing.py --quick    # smoke run (< 3 min) into benchmarks/out/
  .venv/bin/python benchmarks/routing.py --workloads shared_prefix --arms round-robin,shipped \
      --out /tmp/sp                                  # a subset: results and REPORT.md in /tmp/sp
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "routing"))

from routing_env import BenchUnavailable, ensure_all, inference_perf_version  # noqa: E402
from routing_metrics import Sampler, epp_outcomes, pool_counters  # noqa: E402
from routing_procs import EppFront, Front, Pool, RoundRobinFront, wait_serving  # noqa: E402
from routing_workloads import ARMS, CONFIGS, MODEL, Workload, run_tenant, workloads  # noqa: E402

POOL_SIZE = 4
PROFILE = "8b-h100"
# 8b-h100 is an H100's worth of batch (256 seqs, 27k blocks): far more than 2 shared cores can
# drive. 4 running sequences and 1200 KV blocks (19k tokens) per instance keep the request rates
# small while prefix caching and KV pressure still decide latency.
POOL_OVERRIDES: dict[str, Any] = {"max_num_seqs": 4, "num_gpu_blocks": 1200}


async def run_arm(
    workload: Workload, arm_name: str, binary: Path, tokenizer: Path, logs: Path
) -> dict[str, Any]:
    """One arm of one workload, on a fresh pool; everything it started is stopped."""
    arm = ARMS[arm_name]
    workdir = logs / workload.name / arm_name
    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    overrides = {**POOL_OVERRIDES, **dict(workload.pool_overrides), **dict(arm.pool_overrides)}
    pool = Pool(POOL_SIZE, PROFILE, overrides, workdir)
    await pool.start()
    front: Front | None = None
    try:
        if not arm.epp:
            front = RoundRobinFront(pool.endpoints, workdir)
        else:
            config = CONFIGS / arm.config if arm.config else None  # None: the shipped defaults
            front = EppFront(pool.endpoints, config, workdir)
        await front.start()
        await wait_serving(front.url, MODEL)
        result: dict[str, Any] = {"arm": arm_name, "title": arm.title, "warmup_requests": 1}
        if workload.idle_probe is not None:
            idle = await run_tenant(
                binary, tokenizer, front.url, workload.idle_probe, workdir / "idle"
            )
            result["idle"] = idle
        sim_urls = [f"http://{e}/metrics" for e in pool.endpoints]
        sampler = Sampler(sim_urls)
        sampler.start()
        started = time.monotonic()
        try:
            tenants = await asyncio.gather(
                *(
                    run_tenant(binary, tokenizer, front.url, t, workdir / t.name)
                    for t in workload.tenants
                )
            )
        finally:
            await sampler.stop()
        result["wall_s"] = time.monotonic() - started
        result["tenants"] = list(tenants)
        result["pool"] = {**sampler.summary(), **await pool_counters(sim_urls)}
        if front.metrics_url:
            result["epp_outcomes"] = await epp_outcomes(front.metrics_url)
        return result
    finally:
        if front is not None:
            await front.stop()
        await pool.stop()


def _save(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))


def render_only(args: argparse.Namespace) -> int:
    """Re-render plots and report from --out's results.json (after editing NOTES.md, say)."""
    from routing_report import write_report

    path = args.out / "results.json"
    if not path.exists():
        print(f"error: {path} not found; run the benchmark first", file=sys.stderr)
        return 2
    print(f"wrote {write_report(json.loads(path.read_text()), args.out, args.report)}")
    return 0


async def run(args: argparse.Namespace) -> int:
    binary, tokenizer = ensure_all()
    chosen = workloads(args.quick)
    default = [n for n, w in chosen.items() if w.in_quick or not args.quick]
    names = args.workloads.split(",") if args.workloads else default
    unknown = [n for n in names if n not in chosen]
    if unknown:
        print(f"error: unknown workload(s) {unknown}; choose from {list(chosen)}", file=sys.stderr)
        return 2
    out: Path = args.out
    previous = out / "results.json"
    results: dict[str, Any] = {
        "quick": args.quick,
        "command": " ".join(["benchmarks/routing.py", *sys.argv[1:]]),
        "pool": {"count": POOL_SIZE, "profile": PROFILE, "overrides": POOL_OVERRIDES},
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "inference_perf": inference_perf_version(),
        "workloads": {},
    }
    if args.merge and previous.exists():  # keep what is not re-run, in its order
        old = json.loads(await asyncio.to_thread(previous.read_text))
        results["command"] = f"{old['command']}; then {results['command']}"
        results["started"] = old["started"]
        results["workloads"] = old["workloads"]
    for name in names:
        wl = chosen[name]
        arms = args.arms.split(",") if args.arms else list(wl.arms)
        bad = [a for a in arms if a not in ARMS]
        if bad:
            print(f"error: unknown arm(s) {bad}; choose from {list(ARMS)}", file=sys.stderr)
            return 2
        entry: dict[str, Any] = results["workloads"].get(name) or {"arms": {}}
        entry["title"] = wl.title
        if wl.pool_overrides:
            entry["pool_overrides"] = dict(wl.pool_overrides)
        results["workloads"][name] = entry
        for arm in arms:
            print(f"[{time.strftime('%H:%M:%S')}] {name} / {arm} ...", flush=True)
            entry["arms"][arm] = await run_arm(wl, arm, binary, tokenizer, args.logs)
            await asyncio.to_thread(_save, out / "results.json", results)
    results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    await asyncio.to_thread(_save, out / "results.json", results)
    from routing_report import write_report

    report = await asyncio.to_thread(write_report, results, out, args.report)
    print(f"wrote {out / 'results.json'} and {report}")
    return 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line, with --out, --logs and --report resolved."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run, under 3 minutes")
    parser.add_argument(
        "--workloads",
        help="comma-separated subset (shared_prefix,priority,uniform,kv_pressure)",
    )
    parser.add_argument(
        "--arms", help="comma-separated subset (round-robin,random,shipped,fc-off,...)"
    )
    parser.add_argument("--out", type=Path, help="results, plots and logs go here")
    parser.add_argument("--report", type=Path, help="Markdown report path")
    parser.add_argument("--logs", type=Path, help="process logs and raw inference-perf reports")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the other arms and workloads of --out's results.json; replace only those run",
    )
    parser.add_argument(
        "--render-only", action="store_true", help="only re-render --out's results.json"
    )
    args = parser.parse_args(argv)
    committed = HERE / "results"
    if args.out is None:
        args.out = HERE / "out" / "quick" if args.quick else committed
    if args.logs is None:
        args.logs = HERE / "out" / ("routing-quick" if args.quick else "routing-full")
    into_committed = not args.quick and args.out.resolve() == committed.resolve()
    if args.report is None:
        # BENCHMARKS.md is the report of the committed results only: a run into another
        # folder writes its report there.
        args.report = HERE.parent / "BENCHMARKS.md" if into_committed else args.out / "REPORT.md"
    if into_committed and (args.workloads or args.arms) and not (args.merge or args.render_only):
        parser.error(
            "--workloads/--arms into benchmarks/results would replace the committed results "
            "with a subset: add --merge (replace only what runs) or --out DIR"
        )
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.render_only:
        return render_only(args)
    try:
        import uvloop

        return int(uvloop.run(run(args)))
    except BenchUnavailable as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
