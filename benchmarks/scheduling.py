"""Scheduling micro-benchmark: the default profile over 8, 64 and 512 endpoints, 4 KB prompts.

Reports decisions/s and p50/p99 latency of ``Scheduler.schedule`` (prefix hashing included;
``pre_request`` runs too but is not timed, as it happens after the decision). Prompts share
system prompts, so the prefix index is exercised with real hits.

    .venv/bin/python benchmarks/scheduling.py [--requests N] [--endpoints 8,64,512]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

from endpoint_picker.config import build_scheduler, load_config
from endpoint_picker.datastore import Endpoint, Metrics
from endpoint_picker.requests.types import InferenceRequest
from results_file import write_results


def endpoints(n: int, rng: random.Random) -> list[Endpoint]:
    return [
        Endpoint(
            name=f"pod-{i}-rank-0",
            pod_name=f"pod-{i}",
            address=f"10.0.{i // 250}.{i % 250}",
            port=8000,
            metrics=Metrics(
                waiting_queue_size=rng.randint(0, 10),
                running_requests_size=rng.randint(0, 50),
                kv_cache_usage_percent=rng.random(),
                cache_block_size=16,
                cache_num_blocks=20_000,
                update_time=time.monotonic(),
            ),
        )
        for i in range(n)
    ]


def prompts(count: int, rng: random.Random) -> list[str]:
    systems = [f"System prompt {k}: " + "You are a careful assistant. " * 70 for k in range(16)]
    out = []
    for i in range(count):
        text = rng.choice(systems)[:3000] + f" user {i} asks: " + "lorem ipsum " * 90
        out.append(text[:4096])
    return out


def run(n_endpoints: int, n_requests: int) -> tuple[float, float, float]:
    rng = random.Random(42)
    sched = build_scheduler(load_config(None))
    eps = endpoints(n_endpoints, rng)
    texts = prompts(n_requests, rng)
    lat: list[float] = []
    for i, text in enumerate(texts):
        req = InferenceRequest(f"r{i}", {}, target_model="llama", prompt_text=text)
        t = time.perf_counter()
        result = sched.schedule(req, eps)
        lat.append(time.perf_counter() - t)
        sched.pre_request(req, result)
        if i % 50 == 0:  # a scrape: metrics move
            for ep in eps:
                ep.metrics.waiting_queue_size = rng.randint(0, 10)
    lat.sort()
    warm = lat[len(lat) // 10 :] if len(lat) > 100 else lat
    warm.sort()
    p50 = statistics.median(warm)
    p99 = warm[min(len(warm) - 1, int(len(warm) * 0.99))]
    return len(warm) / sum(warm), p50, p99


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--endpoints", default="8,64,512")
    ap.add_argument("--results", type=Path, help="JSON results file (default: results/)")
    args = ap.parse_args()
    rows: list[dict[str, float]] = []
    print("$ " + " ".join([sys.executable.rsplit("/", 1)[-1], *sys.argv]))
    print(f"{'endpoints':>9} {'decisions/s':>12} {'p50 ms':>8} {'p99 ms':>8}")
    for n in (int(x) for x in args.endpoints.split(",")):
        rate, p50, p99 = run(n, args.requests)
        print(f"{n:>9} {rate:>12.0f} {p50 * 1e3:>8.3f} {p99 * 1e3:>8.3f}")
        rows.append(
            {"endpoints": n, "decisions_per_s": rate, "p50_ms": p50 * 1e3, "p99_ms": p99 * 1e3}
        )
    setup = {"requests": args.requests, "prompt_bytes": 4096, "system_prompts": 16}
    print("wrote", write_results("scheduling", {"setup": setup, "rows": rows}, args.results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
