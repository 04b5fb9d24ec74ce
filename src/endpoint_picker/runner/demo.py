"""``epp demo``: the whole system on this machine, real traffic, a readable summary.

Two tenants send requests at three priorities (objectives ``critical`` 10, ``standard`` unset
= 0, ``sheddable`` -10) over four long shared system prompts, a quarter of them streaming, at a
concurrency that saturates the simulated pool, so flow control has to hold requests and the
priorities show in the latencies.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass

import aiohttp

OBJECTIVES = (("critical", 0.2), ("standard", 0.4), ("sheddable", 0.4))
TENANTS = ("tenant-a", "tenant-b")
SYSTEM_PROMPTS = [
    f"You are assistant #{i}. " + " ".join(f"rule {i}.{j}: answer precisely." for j in range(60))
    for i in range(4)
]
# A pool small enough that the demo's load saturates it: flow control must queue.
SIM_OVERRIDES = {"max_num_seqs": 4, "default_max_tokens": 24, "jitter": 0.0}


@dataclass
class Result:
    objective: str
    tenant: str
    status: int
    endpoint: str
    latency: float
    ttft: float | None
    body: str = ""


def _requests(n: int, seed: int = 7) -> list[tuple[str, str, dict[str, object]]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        objective = rng.choices([o for o, _ in OBJECTIVES], [w for _, w in OBJECTIVES])[0]
        tenant = TENANTS[i % 2]
        prompt = rng.choice(SYSTEM_PROMPTS) + f" Question {i}: what is {i} + {i}?"
        body: dict[str, object] = {"model": "sim-model", "prompt": prompt, "max_tokens": 24}
        if i % 4 == 0:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        out.append((objective, tenant, body))
    return out


async def _send(
    session: aiohttp.ClientSession, url: str, objective: str, tenant: str, body: dict[str, object]
) -> Result:
    headers = {
        "x-gateway-inference-objective": objective,
        "x-gateway-inference-fairness-id": tenant,
        "content-type": "application/json",
    }
    start = time.monotonic()
    ttft = None
    async with session.post(url, data=json.dumps(body), headers=headers) as resp:
        chunks = []
        async for chunk in resp.content.iter_any():
            if ttft is None and body.get("stream"):
                ttft = time.monotonic() - start
            chunks.append(chunk)
        text = b"".join(chunks).decode(errors="replace")
        return Result(
            objective,
            tenant,
            resp.status,
            resp.headers.get("x-sim-endpoint", "-"),
            time.monotonic() - start,
            ttft,
            text if resp.status != 200 else "",
        )


def _pct(values: list[float], q: float) -> str:
    if not values:
        return "-"
    values = sorted(values)
    return f"{values[min(len(values) - 1, int(q * len(values)))] * 1000:.0f}"


def summarize(results: list[Result], outcomes: dict[str, int], wall: float) -> str:
    lines = [f"sent {len(results)} requests in {wall:.1f}s", "", "requests per endpoint:"]
    for ep, n in sorted(Counter(r.endpoint for r in results).items()):
        lines.append(f"  {ep:<22} {n:>5}")
    lines += ["", "per priority (latencies in ms):"]
    lines.append(
        f"  {'objective':<11}{'prio':>5}{'count':>7}{'ok':>6}{'lat p50':>9}{'lat p99':>9}"
        f"{'ttft p50':>10}{'ttft p99':>10}  statuses"
    )
    prio = {"critical": 10, "standard": 0, "sheddable": -10}
    by_obj: dict[str, list[Result]] = defaultdict(list)
    for r in results:
        by_obj[r.objective].append(r)
    for obj, _ in OBJECTIVES:
        rs = by_obj.get(obj, [])
        ok = [r for r in rs if r.status == 200]
        statuses = ", ".join(f"{s}x{n}" for s, n in sorted(Counter(r.status for r in rs).items()))
        lat = [r.latency for r in ok]
        ttft = [r.ttft for r in ok if r.ttft is not None]
        lines.append(
            f"  {obj:<11}{prio[obj]:>5}{len(rs):>7}{len(ok):>6}{_pct(lat, 0.5):>9}"
            f"{_pct(lat, 0.99):>9}{_pct(ttft, 0.5):>10}{_pct(ttft, 0.99):>10}  {statuses}"
        )
    errors = sorted({r.body.strip() for r in results if r.status != 200 and r.body})
    if errors:
        lines += ["", "error bodies seen:"] + [f"  {e[:120]}" for e in errors]
    lines += ["", "EPP outcomes: " + ", ".join(f"{k}={v}" for k, v in sorted(outcomes.items()))]
    return "\n".join(lines)


async def run_demo(
    simulate: int, n_requests: int, concurrency: int, port: int, front: str = "fast"
) -> int:
    from endpoint_picker.runner.app import EppOptions
    from endpoint_picker.runner.defaults import default_manifest_path
    from endpoint_picker.runner.stack import Stack, StackOptions

    options = StackOptions(
        epp=EppOptions(
            manifests=[default_manifest_path()],
            config_file=None,  # the shipped defaults: flow control with the learned capacity
            grpc_port=0,
            grpc_health_port=0,
            metrics_port=0,
            pick_port=0,
            als_port=0,
        ),
        front=front,
        listen_port=port,
        simulate=simulate,
        sim_profile="8b-h100",
        sim_overrides=dict(SIM_OVERRIDES),
    )
    print(f"starting {simulate} simulated vLLM servers, the EPP and Envoy on 127.0.0.1 ...")
    async with Stack(options) as stack:
        url = stack.url + "/v1/completions"
        print(f"Envoy listens on {stack.url}; the EPP's front: {front}")
        ms = stack.epp.metrics_server
        if ms is not None:
            print(f"live status page: http://127.0.0.1:{ms.port}/ (while the demo runs)")
        print(
            f"sending {n_requests} requests, {concurrency} at a time: 2 tenants, objectives "
            "critical(10)/standard(0)/sheddable(-10), 4 shared prefixes, 1 in 4 streaming\n"
        )
        sem = asyncio.Semaphore(concurrency)
        timeout = aiohttp.ClientTimeout(total=120)

        async with aiohttp.ClientSession(timeout=timeout) as session:

            async def one(obj: str, tenant: str, body: dict[str, object]) -> Result:
                async with sem:
                    return await _send(session, url, obj, tenant, body)

            start = time.monotonic()
            results = await asyncio.gather(*(one(*r) for r in _requests(n_requests)))
            wall = time.monotonic() - start
        director = stack.epp.director
        assert director is not None
        # The fast front closes a request's books when Envoy's access-log entry arrives (one
        # flush interval after the response): wait for every outcome before counting them.
        for _ in range(100):
            if sum(director.outcomes.values()) >= len(results):
                break
            await asyncio.sleep(0.05)
        print(summarize(list(results), director.outcomes, wall))
    print("\nstopped everything.")
    return 0 if all(r.status in (200, 429, 503) for r in results) else 1
