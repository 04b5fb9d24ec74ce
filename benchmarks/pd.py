"""Prefill/decode disaggregation against aggregated serving on the same number of servers.

Two arms behind the real stack (``epp sim`` processes, ``epp run`` with its managed Envoy, the
fast front), each with N simulated ``8b-h100`` servers using chunked prefill
(``--max-num-batched-tokens``: a step computes its decode tokens plus prompt chunks, so a long
prompt stalls the decodes beside it, as in vLLM):

- ``pd``: P prefill-role + D decode-role servers, labelled ``llm-d.ai/role`` on the command line
  (``--endpoint 'name=ip:port;llm-d.ai/role=prefill'``), llm-d's ``pd-epp-config.yaml``
  (``prefix-based-pd-decider``, 16 uncached tokens);
- ``aggregated``: P + D plain servers, the same scorers in one profile.

Two workloads, open loop (Poisson arrivals, every prompt unique so nothing is cached):
``long-prompt`` (long prompts, short outputs) and ``long-output`` (short prompts, long outputs).
Per arm and workload, from the servers' own model times (``x-sim-*`` headers, so a loaded
machine does not distort them; P/D's TTFT is the prefiller's TTFT plus the decoder's KV pull and
first step): TTFT p50/p90, ITL p50/p90 (each request's mean gap between tokens) and the p90 of
each request's longest gap (a decode stall); from this client's clock: end-to-end latency
p50/p90 (which includes the P/D hop) and throughput (output tokens/s, requests/s).

    .venv/bin/python benchmarks/pd.py            # ~5 min: 2P:2D vs 4 aggregated
    .venv/bin/python benchmarks/pd.py --quick    # ~2 min, smaller windows (pd-2p2d-quick.json)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from results_file import RESULTS, write_results

ROOT = Path(__file__).resolve().parent.parent
PD_CONFIG = ROOT / "src" / "endpoint_picker" / "runner" / "pd-config.yaml"
AGGREGATED_CONFIG = """\
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: approx-prefix-cache-producer
  parameters: {blockSizeTokens: 16, autoTune: false}
- type: prefix-cache-scorer
- type: queue-scorer
- type: max-score-picker
schedulingProfiles:
- name: default
  plugins:
  - {pluginRef: max-score-picker}
  - {pluginRef: prefix-cache-scorer, weight: 2}
  - {pluginRef: queue-scorer, weight: 1}
"""
# name: (prompt tokens, output tokens, requests/s)
WORKLOADS: dict[str, tuple[int, int, float]] = {
    "long-prompt": (3000, 24, 2.5),
    "long-output": (64, 256, 6.0),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Stack:
    """Child processes of one arm (each in its own process group) and the client-facing URL."""

    procs: list[asyncio.subprocess.Process] = field(default_factory=list)
    url: str = ""
    sim_ports: dict[str, list[int]] = field(default_factory=dict)  # role -> ports

    async def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGINT)
                try:
                    await asyncio.wait_for(proc.wait(), 10)
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    await proc.wait()


async def spawn(*args: str, log: Path) -> asyncio.subprocess.Process:
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "endpoint_picker.cli", *args,
            stdout=out, stderr=out, start_new_session=True,
        )  # fmt: skip


async def start_sims(
    stack: Stack, tmp: Path, role: str, count: int, args: argparse.Namespace
) -> list[int]:
    port_file = tmp / f"ports-{role or 'plain'}.json"
    knobs = ["--profile", "8b-h100", "--max-num-batched-tokens", str(args.batched_tokens)]
    if role:
        knobs += ["--role", role]
    proc = await spawn(
        "sim", "--count", str(count), "--base-port", "0", "--port-file", str(port_file), *knobs,
        log=tmp / "sim.log",
    )  # fmt: skip
    stack.procs.append(proc)
    deadline = time.monotonic() + 60
    while not port_file.exists():
        if proc.returncode is not None or time.monotonic() > deadline:
            raise RuntimeError(f"epp sim did not start: {(tmp / 'sim.log').read_text()[-2000:]}")
        await asyncio.sleep(0.1)
    ports: list[int] = json.loads(port_file.read_text())
    return ports


async def start_arm(arm: str, tmp: Path, args: argparse.Namespace) -> Stack:
    stack = Stack()
    try:
        endpoints: list[str] = []
        if arm == "pd":
            for role, count in (("prefill", args.prefill), ("decode", args.decode)):
                ports = await start_sims(stack, tmp, role, count, args)
                stack.sim_ports[role] = ports
                endpoints += [f"{role}-{i}=127.0.0.1:{p};llm-d.ai/role={role}"
                              for i, p in enumerate(ports)]  # fmt: skip
            config = PD_CONFIG
        else:
            ports = await start_sims(stack, tmp, "", args.prefill + args.decode, args)
            stack.sim_ports["aggregated"] = ports
            endpoints = [f"sim-{i}=127.0.0.1:{p}" for i, p in enumerate(ports)]
            config = tmp / "aggregated.yaml"
            config.write_text(AGGREGATED_CONFIG)
        port = free_port()
        flags = ["--port", str(port), "--front", "fast", "--config-file", str(config)]
        for name in ("--grpc-port", "--grpc-health-port", "--metrics-port", "--pick-port",
                     "--als-port"):  # fmt: skip
            flags += [name, str(free_port())]
        for ep in endpoints:
            flags += ["--endpoint", ep]
        stack.procs.append(await spawn("run", *flags, log=tmp / "epp.log"))
        stack.url = f"http://127.0.0.1:{port}/v1/completions"
        await wait_ready(stack, tmp)
        return stack
    except BaseException:
        await stack.stop()
        raise


async def wait_ready(stack: Stack, tmp: Path) -> None:
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession() as http:
        while True:
            with contextlib.suppress(aiohttp.ClientError):
                body = {"model": "sim-model", "prompt": "ready?", "max_tokens": 1}
                async with http.post(stack.url, json=body) as r:
                    if r.status == 200:
                        return
            if time.monotonic() > deadline or stack.procs[-1].returncode is not None:
                raise RuntimeError(f"epp run not ready: {(tmp / 'epp.log').read_text()[-2000:]}")
            await asyncio.sleep(0.2)


@dataclass
class Sample:
    ttft: float  # model time, both legs for P/D
    itl: float  # mean gap between its tokens, model time
    itl_max: float  # its longest gap
    e2e: float  # this client's clock
    tokens: int


async def one(http: aiohttp.ClientSession, url: str, prompt: str, max_tokens: int) -> Sample | None:
    body = {"model": "sim-model", "prompt": prompt, "max_tokens": max_tokens, "ignore_eos": True}
    sent = time.monotonic()
    async with http.post(url, json=body) as r:
        answer = await r.read()
        if r.status != 200:
            return None
        h = r.headers
    tokens = int(json.loads(answer)["usage"]["completion_tokens"])
    return Sample(
        float(h["x-sim-ttft-ms"]) / 1000,
        float(h["x-sim-itl-ms"]) / 1000,
        float(h["x-sim-itl-max-ms"]) / 1000,
        time.monotonic() - sent,
        tokens,
    )


async def counter_sum(http: aiohttp.ClientSession, ports: list[int], name: str) -> float:
    total = 0.0
    for port in ports:
        async with http.get(f"http://127.0.0.1:{port}/metrics") as r:
            for line in (await r.text()).splitlines():
                if line.startswith(name + "{"):
                    total += float(line.rsplit(" ", 1)[1])
    return total


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_workload(
    stack: Stack, workload: str, args: argparse.Namespace, seed: int
) -> dict[str, Any]:
    prompt_tokens, max_tokens, rate = WORKLOADS[workload]
    rate *= args.rate_scale
    rng = random.Random(seed)
    samples: list[Sample | None] = []
    conn = aiohttp.TCPConnector(limit=0)  # open loop: never queue on the client
    async with aiohttp.ClientSession(connector=conn) as http:
        decode_ports = stack.sim_ports.get("decode", [])
        pulled0 = await counter_sum(http, decode_ports, "sim:pd_remote_prefills_total")
        # One arrival schedule per workload, the same for every arm.
        offsets, t = [], 0.0
        while t < args.duration:
            offsets.append(t)
            t += rng.expovariate(rate)
        tasks: list[asyncio.Task[Sample | None]] = []
        start = time.monotonic()
        for n, offset in enumerate(offsets):
            await asyncio.sleep(max(0.0, start + offset - time.monotonic()))
            words = " ".join(f"r{seed}x{n}w{i}" for i in range(prompt_tokens))
            tasks.append(asyncio.create_task(one(http, stack.url, words, max_tokens)))
        results = await asyncio.gather(*tasks, return_exceptions=True)
        wall = time.monotonic() - start
        pulled = await counter_sum(http, decode_ports, "sim:pd_remote_prefills_total") - pulled0
    samples = [r if isinstance(r, Sample) else None for r in results]
    ok = [s for s in samples if s is not None]
    ttft = [s.ttft for s in ok]
    itl = [s.itl for s in ok]
    stall = [s.itl_max for s in ok]
    e2e = [s.e2e for s in ok]
    return {
        "prompt_tokens": prompt_tokens,
        "output_tokens": max_tokens,
        "offered_rps": round(rate, 3),
        "requests": len(samples),
        "errors": len(samples) - len(ok),
        "disaggregated": int(pulled),
        "ttft_p50_ms": round(1000 * pct(ttft, 0.5), 1),
        "ttft_p90_ms": round(1000 * pct(ttft, 0.9), 1),
        "itl_p50_ms": round(1000 * pct(itl, 0.5), 2),
        "itl_p90_ms": round(1000 * pct(itl, 0.9), 2),
        "itl_max_p90_ms": round(1000 * pct(stall, 0.9), 1),
        "e2e_p50_ms": round(1000 * pct(e2e, 0.5), 1),
        "e2e_p90_ms": round(1000 * pct(e2e, 0.9), 1),
        "output_tokens_per_s": round(sum(s.tokens for s in ok) / wall, 1),
        "requests_per_s": round(len(ok) / wall, 2),
    }


async def main(args: argparse.Namespace) -> int:
    cells: dict[str, dict[str, Any]] = {}
    for w_index, workload in enumerate(args.workloads):
        cells[workload] = {}
        for arm in args.arms:
            with tempfile.TemporaryDirectory(prefix=f"pd-{arm}-") as tmp:
                stack = await start_arm(arm, Path(tmp), args)
                try:
                    cells[workload][arm] = await run_workload(stack, workload, args, w_index)
                finally:
                    await stack.stop()
            c = cells[workload][arm]
            print(
                f"{workload:12s} {arm:10s} TTFT p50 {c['ttft_p50_ms']:7.1f} p90 "
                f"{c['ttft_p90_ms']:7.1f} ms | ITL p50 {c['itl_p50_ms']:6.2f} p90 "
                f"{c['itl_p90_ms']:6.2f} stall p90 {c['itl_max_p90_ms']:6.1f} ms | e2e p50 "
                f"{c['e2e_p50_ms']:7.1f} ms | "
                f"{c['output_tokens_per_s']:7.1f} tok/s {c['requests_per_s']:5.2f} req/s | "
                f"{c['requests']} req, {c['errors']} errors, {c['disaggregated']} disaggregated",
                flush=True,
            )
    setup = {
        "servers": args.prefill + args.decode,
        "pd": f"{args.prefill}P:{args.decode}D",
        "profile": "8b-h100",
        "max_num_batched_tokens": args.batched_tokens,
        "duration_s": args.duration,
        "front": "fast",
    }
    name = f"pd-{args.prefill}p{args.decode}d" + ("-quick" if args.quick else "")
    print(
        "wrote", write_results("pd", {"setup": setup, "workloads": cells}, RESULTS / f"{name}.json")
    )
    print("reproduce: .venv/bin/python benchmarks/pd.py " + " ".join(sys.argv[1:]))
    return 0


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--prefill", type=int, default=2, help="prefill servers of the pd arm (2)")
    p.add_argument("--decode", type=int, default=2, help="decode servers of the pd arm (2)")
    p.add_argument("--arms", nargs="+", default=["pd", "aggregated"], choices=["pd", "aggregated"])
    p.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    p.add_argument("--duration", type=float, default=40.0, help="arrival window per cell, s")
    p.add_argument("--rate-scale", type=float, default=1.0, help="multiply every arrival rate")
    p.add_argument("--batched-tokens", type=int, default=2048, help="max-num-batched-tokens")
    p.add_argument("--quick", action="store_true", help="8 s windows, half the rates")
    args = p.parse_args(argv)
    if args.quick:
        args.duration, args.rate_scale = 8.0, args.rate_scale / 2
    return args


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse())))
