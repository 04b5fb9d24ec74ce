"""Soak (issue 18): ``epp run`` on one front under steady load while faults are injected, then
checks that nothing leaked.

Three ``epp sim`` processes and ``epp run --endpoint ...`` with its managed Envoy, all on
127.0.0.1. Twelve clients send requests without pause, spread over three priorities
(``critical``, ``standard``, ``sheddable``), 30% of them streaming. Every ``--fault-every``
seconds one fault, in turn: a simulator killed (SIGKILL) and restarted half a period later,
Envoy killed (``epp run`` starts it again), the manifest rewritten (a priority changed).

Requirements checked at the end (exit status 1 if one fails):
- every request answered: a status (a streamed body may be cut when its server is killed), or a
  refused connection while Envoy was down; none hangs;
- the gauges back to 0 when idle (running requests, flow-control queue, fast-front pending);
- RSS of ``epp run`` (EPP + its Python) grows by less than 5 MB after the warm-up (the first
  quarter of the run, at most 5 minutes; RSS is sampled every 30 s and the series reported);
- ``/metrics`` under 1 MB.

Run: ``.venv/bin/python benchmarks/soak.py --write`` (30 minutes, both fronts side by side, each
with its own simulators, EPP and Envoy; ``--write`` records ``benchmarks/results/soak.json``,
rendered into docs/reliability.md), or ``--quick`` (3 minutes, a fault every 30 s), which the
integration test runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import signal
import socket
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from results_file import write_results

MODEL = "soak-model"
OBJECTIVES = {"critical": 10, "standard": 0, "sheddable": -10}
GAUGES = (
    "inference_objective_running_requests",
    "inference_extension_flow_control_queue_size",
    "endpoint_picker_fastfront_pending_requests",
)

IDLE_WAIT_S = 30.0  # see Soak.run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def manifest(critical: int) -> str:
    docs = [
        "apiVersion: inference.networking.k8s.io/v1\nkind: InferencePool\n"
        "metadata: {name: soak}\nspec:\n  selector: {matchLabels: {app: sim}}\n"
        "  targetPorts: [{number: 8000}]\n"
    ]
    for name, prio in {**OBJECTIVES, "critical": critical}.items():
        docs.append(
            "apiVersion: inference.networking.x-k8s.io/v1alpha2\nkind: InferenceObjective\n"
            f"metadata: {{name: {name}}}\nspec: {{priority: {prio}, poolRef: {{name: soak}}}}\n"
        )
    return "---\n".join(docs)


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@dataclass
class Tally:
    answered: dict[int, int] = field(default_factory=dict)
    refused: int = 0
    cut: int = 0
    hung: int = 0

    @property
    def total(self) -> int:
        return sum(self.answered.values()) + self.refused + self.cut + self.hung


class Soak:
    def __init__(self, front: str, duration: float, fault_every: float, workdir: Path) -> None:
        self.front, self.duration, self.fault_every = front, duration, fault_every
        self.workdir = workdir
        self.manifest = workdir / "manifest.yaml"
        self.sims: list[tuple[int, asyncio.subprocess.Process]] = []
        self.epp: asyncio.subprocess.Process | None = None
        self.port = free_port()
        self.metrics_port = free_port()
        self.tally = Tally()
        self.stop = asyncio.Event()
        self.summary: dict[str, Any] = {}
        self.fault_log: dict[str, int] = {}  # fault kind -> times injected

    async def _sim(self, port: int) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "endpoint_picker.cli", "sim", "--profile", "tiny-test",
            "--model", MODEL, "--base-port", str(port),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip

    async def start(self) -> None:
        write_atomically(self.manifest, manifest(10))
        for _ in range(3):
            port = free_port()
            self.sims.append((port, await self._sim(port)))
        endpoints = [f"sim-{i}=127.0.0.1:{p}" for i, (p, _) in enumerate(self.sims)]
        with (self.workdir / "epp.log").open("wb") as log:
            self.epp = await self._epp(endpoints, log)
        await self._wait_up()

    async def _epp(self, endpoints: list[str], log: Any) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "endpoint_picker.cli", "run", "-f", str(self.manifest),
            *(a for e in endpoints for a in ("--endpoint", e)), "--front", self.front,
            "--port", str(self.port), "--metrics-port", str(self.metrics_port),
            "--grpc-port", str(free_port()), "--grpc-health-port", str(free_port()),
            "--pick-port", str(free_port()), "--als-port", str(free_port()),
            stdout=asyncio.subprocess.DEVNULL, stderr=log,
        )  # fmt: skip

    async def _wait_up(self) -> None:
        async with aiohttp.ClientSession() as session:
            for _ in range(600):
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.post(self.url, json=self.body(False)) as r:
                        if r.status == 200:
                            return
                await asyncio.sleep(0.1)
        raise RuntimeError(f"the stack did not come up: see {self.workdir / 'epp.log'}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/completions"

    @staticmethod
    def body(stream: bool) -> dict[str, object]:
        prompt = "soak " * random.randint(1, 40)
        return {"model": MODEL, "prompt": prompt, "max_tokens": 8, "stream": stream}

    async def client(self, session: aiohttp.ClientSession) -> None:
        while not self.stop.is_set():
            objective = random.choice(list(OBJECTIVES))
            headers = {"x-gateway-inference-objective": objective}
            try:
                async with session.post(
                    self.url, json=self.body(random.random() < 0.3), headers=headers,
                    timeout=aiohttp.ClientTimeout(total=60),
                ) as r:  # fmt: skip
                    await r.read()
                    self.tally.answered[r.status] = self.tally.answered.get(r.status, 0) + 1
            except aiohttp.ClientPayloadError:
                self.tally.cut += 1  # a status came, then its server was killed mid-body
            except aiohttp.ClientError:
                self.tally.refused += 1  # Envoy down (being restarted), or it closed on us
                await asyncio.sleep(0.2)
            except TimeoutError:
                self.tally.hung += 1

    def envoy_pid(self) -> int | None:
        text = (self.workdir / "epp.log").read_text(errors="replace")
        pids = re.findall(r"Envoy pid (\d+)|Envoy is back \(pid (\d+)\)", text)
        found = [int(a or b) for a, b in pids]
        return found[-1] if found else None

    async def faults(self) -> None:
        step = 0
        while not self.stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), self.fault_every)
            if self.stop.is_set():
                return
            kind = step % 3
            step += 1
            if kind == 0:
                port, proc = self.sims[0]
                proc.send_signal(signal.SIGKILL)
                await proc.wait()
                await asyncio.sleep(self.fault_every / 2)
                self.sims[0] = (port, await self._sim(port))
                self._fault("simulator killed and restarted")
                print(f"  fault: simulator on :{port} killed and restarted", flush=True)
            elif kind == 1:
                pid = self.envoy_pid()
                if pid is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)  # epp run's managed Envoy
                self._fault("Envoy killed")
                print(f"  fault: Envoy (pid {pid}) killed", flush=True)
            else:
                write_atomically(self.manifest, manifest(random.choice([10, 20, 30])))
                self._fault("manifest rewritten")
                print("  fault: manifest rewritten", flush=True)

    def _fault(self, kind: str) -> None:
        self.fault_log[kind] = self.fault_log.get(kind, 0) + 1

    async def metrics(self, session: aiohttp.ClientSession) -> tuple[int, dict[str, float]]:
        async with session.get(f"http://127.0.0.1:{self.metrics_port}/metrics") as r:
            text = await r.text()
        sums = dict.fromkeys(GAUGES, 0.0)
        for line in text.splitlines():
            name = line.split("{", 1)[0].split(" ", 1)[0]
            if name in sums:
                sums[name] += float(line.rsplit(" ", 1)[1])
        return len(text.encode()), sums

    async def run(self) -> bool:
        await self.start()
        assert self.epp is not None
        loop = asyncio.get_running_loop()
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            clients = [asyncio.create_task(self.client(session)) for _ in range(12)]
            faults = asyncio.create_task(self.faults())
            # RSS every 30 s; "after warm-up" is from a quarter of the run (at most 5 minutes) on.
            warm = min(300.0, self.duration / 4)
            series: list[tuple[float, int]] = []
            t0 = loop.time()
            while (elapsed := loop.time() - t0) < self.duration:
                series.append((elapsed, rss_kib(self.epp.pid)))
                await asyncio.sleep(min(30.0, self.duration - elapsed))
            self.stop.set()
            rss_warm = next((kib for t, kib in series if t >= warm), series[-1][1])
            await asyncio.gather(*clients, faults)
            # Idle: the gauges settle as the last access-log entries and completions arrive.
            # Polled, up to IDLE_WAIT_S: a gauge still above 0 then is a leak, not a late entry.
            settle = loop.time()
            size, gauges = await self.metrics(session)
            while any(gauges.values()) and loop.time() - settle < IDLE_WAIT_S:
                await asyncio.sleep(1.0)
                size, gauges = await self.metrics(session)
            idle_after = loop.time() - settle
            rss_end = rss_kib(self.epp.pid)
        t = self.tally
        growth = (rss_end - rss_warm) / 1024
        self.summary = {"front": self.front, "requests": t.total, "answered": t.answered,
                        "refused_while_envoy_down": t.refused, "cut_by_a_killed_server": t.cut,
                        "hung": t.hung, "faults": self.fault_log,
                        "idle_gauges": gauges, "idle_after_s": round(idle_after, 1),
                        "metrics_bytes": size,
                        "rss_warm_mib": round(rss_warm / 1024, 1),
                        "rss_growth_mib": round(growth, 2),
                        "rss_mib_every_30s": [round(k / 1024, 1) for _, k in series]}  # fmt: skip
        print(json.dumps(self.summary), flush=True)
        ok = t.hung == 0 and all(v == 0 for v in gauges.values())
        return ok and size < 1_000_000 and growth < 5.0

    async def close(self) -> None:
        procs = [p for _, p in self.sims] + ([self.epp] if self.epp else [])
        for proc in procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 10)
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def soak(front: str, duration: float, fault_every: float) -> tuple[bool, dict[str, Any]]:
    """One front's soak: (requirements met, its summary)."""
    with tempfile.TemporaryDirectory(prefix="epp-soak-") as tmp:
        run = Soak(front, duration, fault_every, Path(tmp))
        try:
            return await run.run(), run.summary
        finally:
            await run.close()


async def soak_fronts(
    fronts: list[str], duration: float, fault_every: float
) -> list[tuple[bool, dict[str, Any]]]:
    """The fronts' soaks side by side (each its own simulators, EPP and Envoy)."""
    return list(await asyncio.gather(*(soak(f, duration, fault_every) for f in fronts)))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--front", choices=("fast", "extproc", "both"), default="both")
    p.add_argument("--duration", type=float, default=1800.0, help="seconds per front")
    p.add_argument("--fault-every", type=float, default=120.0, help="seconds between faults")
    p.add_argument("--quick", action="store_true", help="3 minutes per front, a fault per 30 s")
    p.add_argument(
        "--write", action="store_true", help="write benchmarks/results/soak.json (docs' figures)"
    )
    args = p.parse_args()
    if args.quick:
        args.duration, args.fault_every = 180.0, 30.0
    fronts = ["extproc", "fast"] if args.front == "both" else [args.front]
    runs = asyncio.run(soak_fronts(fronts, args.duration, args.fault_every))
    ok = all(passed for passed, _ in runs)
    if args.write:
        path = write_results(
            "soak",
            {
                "duration_s": args.duration,
                "fault_every_s": args.fault_every,
                "passed": ok,
                "fronts": {summary["front"]: summary for _, summary in runs if summary},
            },
        )
        print(f"wrote {path}")
    print("soak:", "pass" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
