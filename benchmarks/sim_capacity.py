"""How much simulated load one ``epp sim`` process sustains, and the CPU it costs.

Starts ``epp sim --count N`` as a child process (so its CPU is measured apart from this client),
keeps ``--concurrency`` requests in flight per instance (closed loop), and reports over a
measured window, per phase (non-streaming, then streaming SSE):

- simulated tokens/s and requests/s (from the simulators' own ``/metrics`` counters),
- mean running requests per instance and mean inter-token latency (also from ``/metrics``),
- the simulator process's CPU (user+system from /proc) as a share of one core.

Target (issue 3): 8 instances x 32 running at 15 ms ITL with under 50% of one core.

    .venv/bin/python benchmarks/sim_capacity.py            # ~35 s
    .venv/bin/python benchmarks/sim_capacity.py --duration 5 --stream-duration 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from results_file import write_results

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def totals(http: aiohttp.ClientSession, ports: list[int]) -> dict[str, float]:
    """Counters summed over all instances, plus the running gauge."""
    want = {
        "vllm:generation_tokens_total": "tokens",
        "vllm:request_success_total": "requests",
        "vllm:num_requests_running": "running",
        "vllm:inter_token_latency_seconds_sum": "itl_sum",
        "vllm:inter_token_latency_seconds_count": "itl_count",
    }
    out = dict.fromkeys(want.values(), 0.0)
    for port in ports:
        async with http.get(f"http://127.0.0.1:{port}/metrics") as r:
            text = await r.text()
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name in want:
                    out[want[s.name]] += s.value
    return out


async def client(
    http: aiohttp.ClientSession, port: int, args: argparse.Namespace, stream: bool, stop: float
) -> None:
    """One closed-loop user: send, wait for the whole answer, repeat until ``stop``."""
    url = f"http://127.0.0.1:{port}/v1/completions"
    prompt = " ".join(f"w{i}" for i in range(args.prompt_tokens))
    body = {
        "model": "sim-model",
        "prompt": prompt,
        "max_tokens": args.max_tokens,
        "ignore_eos": True,
        "stream": stream,
    }
    while time.monotonic() < stop:
        async with http.post(url, json=body) as r:
            if stream:
                async for _ in r.content.iter_any():
                    pass
            else:
                await r.read()
            if r.status != 200:
                raise RuntimeError(f"status {r.status} from {url}")


async def phase(
    http: aiohttp.ClientSession, pid: int, ports: list[int], args: argparse.Namespace,
    stream: bool, duration: float,
) -> dict[str, float]:  # fmt: skip
    warmup = 2.0
    stop = time.monotonic() + warmup + duration
    users = [
        asyncio.create_task(client(http, port, args, stream, stop))
        for port in ports
        for _ in range(args.concurrency)
    ]
    await asyncio.sleep(warmup)
    t0, c0, m0 = time.monotonic(), cpu_seconds(pid), await totals(http, ports)
    running = []
    while time.monotonic() < stop - 0.5:
        await asyncio.sleep(0.5)
        running.append((await totals(http, ports))["running"])
    t1, c1, m1 = time.monotonic(), cpu_seconds(pid), await totals(http, ports)
    await asyncio.gather(*users)
    wall = t1 - t0
    return {
        "tokens_per_s": (m1["tokens"] - m0["tokens"]) / wall,
        "requests_per_s": (m1["requests"] - m0["requests"]) / wall,
        "running_per_instance": sum(running) / max(1, len(running)) / len(ports),
        "itl_ms": 1000
        * (m1["itl_sum"] - m0["itl_sum"])
        / max(1, m1["itl_count"] - m0["itl_count"]),
        "sim_cpu_core_share": (c1 - c0) / wall,
        "window_s": wall,
    }


async def main(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        port_file = Path(tmp) / "ports.json"
        cmd = [
            sys.executable, "-m", "endpoint_picker.cli", "sim", "--count", str(args.count),
            "--base-port", "0", "--port-file", str(port_file), "--profile", "8b-h100",
            "--max-num-seqs", str(args.concurrency), "--inter-token-latency", str(args.itl),
            "--time-factor-under-load", "1.0", "--jitter", "0",
        ]  # fmt: skip
        proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE)
        try:
            assert proc.stdout is not None
            for _ in range(args.count):
                await asyncio.wait_for(proc.stdout.readline(), 60)
            ports = json.loads(port_file.read_text())
            conn = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(connector=conn) as http:
                results = {"non-streaming": await phase(http, proc.pid, ports, args, False,
                                                        args.duration)}  # fmt: skip
                if args.stream_duration > 0:
                    results["streaming"] = await phase(
                        http, proc.pid, ports, args, True, args.stream_duration
                    )
        finally:
            proc.send_signal(signal.SIGINT)
            await proc.wait()
    print(f"epp sim: {args.count} instances x {args.concurrency} concurrent, ITL "
          f"{args.itl * 1000:g} ms, {args.prompt_tokens}-token prompts, {args.max_tokens} "
          f"output tokens, {os.cpu_count()} CPUs")  # fmt: skip
    for name, r in results.items():
        print(
            f"  {name:14s} {r['tokens_per_s']:8.0f} tokens/s {r['requests_per_s']:6.1f} req/s  "
            f"running/instance {r['running_per_instance']:5.1f}  mean ITL {r['itl_ms']:5.2f} ms  "
            f"sim CPU {100 * r['sim_cpu_core_share']:5.1f}% of one core  ({r['window_s']:.0f} s)"
        )
    print("reproduce: .venv/bin/python benchmarks/sim_capacity.py " + " ".join(sys.argv[1:]))
    setup = {
        "instances": args.count,
        "concurrency": args.concurrency,
        "itl_s": args.itl,
        "prompt_tokens": args.prompt_tokens,
        "max_tokens": args.max_tokens,
    }
    figures = {"setup": setup, "phases": results}
    print("wrote", write_results("sim_capacity", figures, args.results))
    return 0


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--count", type=int, default=8, help="simulator instances (default 8)")
    p.add_argument("--concurrency", type=int, default=32, help="in flight per instance (32)")
    p.add_argument("--itl", type=float, default=0.015, help="inter-token latency, s (0.015)")
    p.add_argument("--prompt-tokens", type=int, default=100, help="prompt length (100)")
    p.add_argument("--max-tokens", type=int, default=200, help="output tokens (200)")
    p.add_argument("--duration", type=float, default=15.0, help="non-streaming window, s (15)")
    p.add_argument("--stream-duration", type=float, default=10.0, help="streaming window (10)")
    p.add_argument("--results", type=Path, help="JSON results file (default: results/)")
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse())))
