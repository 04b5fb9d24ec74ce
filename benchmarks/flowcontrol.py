"""Flow control micro-benchmark: enqueue+dispatch operations per second and memory per queued
request, with 10,000 queued requests over 1,000 flows in 4 priority bands.

Two measurements:
- core: the synchronous registry (bands, flow queues, fairness and ordering policies) that does
  the admission work, without an event loop;
- async: the full ``FlowController.admit`` path, one asyncio task per request (as the director
  runs it), gated by a real concurrency detector: all requests queue while the pool is saturated,
  then the gate opens and every request is dispatched.

Memory is measured with tracemalloc and excludes the request bodies and the request objects
(they exist with or without flow control); the async figure is given with and without the
caller's task and coroutine. Run: ``.venv/bin/python benchmarks/flowcontrol.py`` (about 10 s).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

from endpoint_picker.clock import FakeClock
from endpoint_picker.datastore import Endpoint
from endpoint_picker.flowcontrol import ConcurrencyDetector, FlowControlConfig, FlowController
from endpoint_picker.flowcontrol.bands import FlowRegistry
from endpoint_picker.flowcontrol.config import PriorityBandConfig
from endpoint_picker.flowcontrol.types import FlowKey, Item, Outcome
from endpoint_picker.requests.types import InferenceRequest
from results_file import write_results

N, FLOWS, BANDS = 10_000, 1_000, 4
PRIORITIES = (30, 20, 10, 0)


def config(fairness: str, ordering: str) -> FlowControlConfig:
    band = PriorityBandConfig(fairness_policy=fairness, ordering_policy=ordering)
    return FlowControlConfig(default_priority_band=band)


def requests() -> list[InferenceRequest]:
    """10,000 requests, flow i%1000, band by flow, empty bodies (memory beyond the body)."""
    out = []
    for i in range(N):
        flow = i % FLOWS
        out.append(
            InferenceRequest(
                request_id=f"r{i}",
                headers={"x-slo-ttft-ms": str(i % 500)},
                priority=PRIORITIES[flow % BANDS],
                fairness_id=f"tenant-{flow}",
            )
        )
    return out


def bench_core(fairness: str, ordering: str, reqs: list[InferenceRequest]) -> tuple[float, float]:
    def fill(reg: FlowRegistry) -> None:
        for seq, r in enumerate(reqs):
            reg.enqueue(Item(r, FlowKey(r.fairness_id, r.priority), seq, 0.0, 60.0, None), 0.0)

    gc.collect()
    tracemalloc.start()  # memory in a run of its own: tracing slows the timed run
    base = tracemalloc.get_traced_memory()[0]
    traced = FlowRegistry(config(fairness, ordering))
    fill(traced)
    per_item = (tracemalloc.get_traced_memory()[0] - base) / N
    tracemalloc.stop()
    del traced
    reg = FlowRegistry(config(fairness, ordering))
    t0 = time.perf_counter()
    fill(reg)
    t_enq = time.perf_counter() - t0
    t0 = time.perf_counter()
    n = 0
    while isinstance(got := reg.select(0.0, 0.0), Item):
        got.outcome = Outcome.DISPATCHED
        n += 1
    t_disp = time.perf_counter() - t0
    assert n == N and reg.len == 0
    return 2 * N / (t_enq + t_disp), per_item


async def bench_async(reqs: list[InferenceRequest], trace: bool) -> tuple[float, float, float]:
    """(ops/s, bytes per queued request with the caller's task, bytes in flow control only);
    memory only when ``trace`` (tracing slows everything, so timing runs untraced)."""
    ep = Endpoint(name="e", pod_name="e", address="10.0.0.1", port=8000)
    det = ConcurrencyDetector(max_concurrency=1)
    fc = FlowController(
        config("round-robin-fairness-policy", "fcfs-ordering-policy"),
        det,
        lambda: [ep],
        FakeClock(),
        pool_name="bench",
    )
    await fc.start()
    ep.inflight_requests = 1  # saturated: everything queues
    done = 0

    async def one(r: InferenceRequest) -> None:
        nonlocal done
        await fc.admit(r)
        done += 1

    coros = [one(r) for r in reqs]  # the caller's coroutines exist before admission
    gc.collect()
    if trace:
        tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    t0 = time.perf_counter()
    tasks = [asyncio.create_task(c) for c in coros]
    while fc.registry.len < N:  # noqa: ASYNC110 - polling is the measurement here
        await asyncio.sleep(0)
    t_enq = time.perf_counter() - t0
    with_tasks = fc_only = 0.0
    if trace:
        with_tasks = (tracemalloc.get_traced_memory()[0] - base) / N
        snapshot = tracemalloc.take_snapshot()
        tracemalloc.stop()
        stats = snapshot.statistics("filename")
        fc_only = sum(s.size for s in stats if "endpoint_picker" in s.traceback[0].filename) / N
    t0 = time.perf_counter()
    ep.inflight_requests = 0
    det.max_concurrency = 10**9
    fc.notify()
    await asyncio.gather(*tasks)
    t_disp = time.perf_counter() - t0
    assert done == N
    await fc.stop()
    return 2 * N / (t_enq + t_disp), with_tasks, fc_only


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--uvloop", action="store_true", help="run the async part on uvloop")
    ap.add_argument("--results", type=Path, help="JSON results file (default: results/)")
    args = ap.parse_args()
    core: list[dict[str, Any]] = []
    print("command:", " ".join([sys.executable, *sys.argv]))
    print(
        f"{N} queued requests over {FLOWS} flows in {BANDS} bands; one core, CPython "
        f"{sys.version.split()[0]}"
    )
    reqs = requests()
    for fairness, ordering in (
        ("global-strict-fairness-policy", "fcfs-ordering-policy"),
        ("round-robin-fairness-policy", "fcfs-ordering-policy"),
        ("global-strict-fairness-policy", "edf-ordering-policy"),
        ("round-robin-fairness-policy", "slo-deadline-ordering-policy"),
    ):
        best_ops, mem = 0.0, 0.0
        for _ in range(3):
            ops, mem = bench_core(fairness, ordering, reqs)
            best_ops = max(best_ops, ops)
        print(
            f"core  {fairness:31} {ordering:29} {best_ops:>10,.0f} ops/s  "
            f"{mem:>6.0f} B/queued request"
        )
        core.append(
            {"fairness": fairness, "ordering": ordering, "ops_per_s": best_ops, "bytes": mem}
        )
    if args.uvloop:
        import uvloop

        uvloop.install()
    _, with_tasks, fc_only = asyncio.run(bench_async(reqs, trace=True))
    ops = max(asyncio.run(bench_async(reqs, trace=False))[0] for _ in range(3))
    print(
        f"async FlowController.admit (round-robin, fcfs)   {ops:>10,.0f} ops/s  "
        f"{fc_only:>6.0f} B/queued request in flow control "
        f"({with_tasks:.0f} B with the caller's task)"
    )
    figures = {
        "setup": {"queued": N, "flows": FLOWS, "bands": BANDS, "uvloop": args.uvloop},
        "core": core,
        "admit": {"ops_per_s": ops, "bytes": fc_only, "bytes_with_task": with_tasks},
    }
    print("wrote", write_results("flowcontrol", figures, args.results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
