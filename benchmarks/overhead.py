"""What the EPP costs a request: Envoy alone vs Envoy + the EPP behind each front, one run.

Simulated model servers run in a separate process (near-zero latency, so the proxy path is what
is measured); in front of them, in this process:

- ``envoy-alone``: the generated bootstrap with the ext_proc filter removed, round robin over
  the pool (the fail-open pool cluster of ``endpoint_picker.envoy.bootstrap``);
- ``extproc``: ``epp run --front extproc`` (``Stack``): default config, flow control on,
  FULL_DUPLEX_STREAMED ext_proc (upstream's mode) unless ``--mode buffered``;
- ``fast``: ``epp run --front fast`` (``Stack``): the same EPP behind the fast front (pick over
  ext_authz HTTP/1.1, complete over Envoy's gRPC access log, ``--flush`` interval).

Each front has its own EPP (``Stack``); all are started before the first point, so the points
are measured interleaved (per concurrency: Envoy alone, then each front). Load comes from ``wrk``
(a POST body through a Lua script) at c=1 and c=32, or, without wrk, from an aiohttp client in a
separate process. Printed: req/s, p50 and p99 per target, the ratio of req/s to Envoy alone and
the p50 added to it. Run (about 70 s with both fronts):

    .venv/bin/python benchmarks/overhead.py [--fronts extproc,fast] [--duration 8]
        [--mode duplex|buffered] [--no-flow-control] [--results out.json]

Results go to ``benchmarks/results/overhead.json`` (README and docs/fast-front.md quote it
through ``benchmarks/render_figures.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from results_file import write_results

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")  # no fork() notices from grpc per wrk start

BODY = {"model": "sim-model", "prompt": "Say hi to the benchmark.", "max_tokens": 1}
SIM_KNOBS = [
    "--prefill-overhead", "0", "--prefill-time-per-token", "0", "--inter-token-latency", "0",
    "--max-num-seqs", "256", "--max-waiting-queue-length", "100000",
]  # fmt: skip
REPRODUCE = ".venv/bin/python benchmarks/overhead.py"
FRONTS = ("extproc", "fast")
NO_FLOW_CONTROL = """
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
flowControl: {enabled: false}
"""


@dataclass
class Result:
    target: str
    connections: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


# -- load generators ---------------------------------------------------------------------------
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(out: str) -> tuple[float, float, float, int]:
    """(req/s, p50 ms, p99 ms, non-2xx + socket errors) from ``wrk --latency`` output."""
    if "Requests/sec:" not in out:
        raise RuntimeError(f"wrk gave no figures: {out.strip()[-400:]!r}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    errors = 0
    if m := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out):
        errors += int(m.group(1))
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        errors += sum(int(g) for g in m.groups())
    return rps, p50, p99, errors


async def run_wrk(url: str, connections: int, duration: float, script: Path) -> str:
    proc = await asyncio.create_subprocess_exec(
        "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency",
        "-s", str(script), url,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate()
    return out.decode()


async def run_python_client(url: str, connections: int, duration: float) -> str:
    """The fallback generator, in its own process so it does not share the EPP's loop."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--client", url, "--connections", str(connections),
        "--duration", str(duration), stdout=subprocess.PIPE,
    )  # fmt: skip
    out, _ = await proc.communicate()
    return out.decode()


async def _client(url: str, connections: int, duration: float) -> dict[str, float]:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    data = json.dumps(BODY).encode()
    headers = {"content-type": "application/json"}
    end = time.perf_counter() + duration

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        while (t0 := time.perf_counter()) < end:
            async with session.post(url, data=data, headers=headers) as r:
                await r.read()
                errors += r.status >= 400
            latencies.append(time.perf_counter() - t0)

    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        start = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(connections)))
        elapsed = time.perf_counter() - start
    q = statistics.quantiles(latencies, n=100)
    return {"rps": len(latencies) / elapsed, "p50": q[49] * 1e3, "p99": q[98] * 1e3, "err": errors}


# -- the system under test ---------------------------------------------------------------------
async def start_sims(count: int, workdir: Path) -> tuple[asyncio.subprocess.Process, list[str]]:
    port_file = workdir / "sim-ports.json"
    epp = Path(sys.executable).with_name("epp")
    proc = await asyncio.create_subprocess_exec(
        str(epp), "sim", "--count", str(count), "--base-port", "0", "--profile", "tiny-test",
        *SIM_KNOBS, "--port-file", str(port_file), stdout=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not port_file.exists():
        if proc.returncode is not None or time.monotonic() > deadline:
            raise RuntimeError("the simulators did not start")
        await asyncio.sleep(0.05)
    ports = json.loads(port_file.read_text())
    return proc, [f"127.0.0.1:{p}" for p in ports]


def envoy_alone_config(pool: list[str]) -> dict[str, Any]:
    """The generated bootstrap without ext_proc: round robin over the same pool."""
    from endpoint_picker.envoy import bootstrap

    config = bootstrap(0, "127.0.0.1", 1, mode="buffered", failure_mode="FailOpen",
                       pool_endpoints=pool)  # fmt: skip
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    filters = hcm["typed_config"]["http_filters"]
    hcm["typed_config"]["http_filters"] = [
        f for f in filters if f["name"] != "envoy.filters.http.ext_proc"
    ]
    return config


def _stack(front: str, pool: list[str], args: argparse.Namespace) -> Any:
    """``epp run``'s composition for one front: the EPP (default config unless
    ``--no-flow-control``) and its Envoy, every port chosen by the kernel."""
    from endpoint_picker.runner.app import EppOptions
    from endpoint_picker.runner.defaults import default_manifest_path
    from endpoint_picker.runner.stack import Stack, StackOptions

    epp = EppOptions(
        manifests=[default_manifest_path()],
        endpoints=list(pool),
        grpc_port=0,
        grpc_health_port=0,
        metrics_port=0,
        pick_port=0,
        als_port=0,
        config_text=NO_FLOW_CONTROL if args.no_flow_control else None,
    )
    options = StackOptions(
        epp=epp, listen_port=0, mode=args.mode, front=front, als_flush_interval=args.flush
    )
    return Stack(options)


async def _drained(stacks: Any, flush: float) -> None:
    """Wait (up to 2 s past the flush interval) for the fast front's last access-log entries."""
    deadline = time.monotonic() + flush + 2.0
    while time.monotonic() < deadline:
        if not any(s.epp.fastfront and len(s.epp.fastfront.completions) for s in stacks):
            return
        await asyncio.sleep(flush)


def _summary(front: str, stack: Any) -> str:
    director = stack.epp.director
    line = f"  {front} EPP outcomes: {dict(sorted(director.outcomes.items()))}"
    if stack.epp.fastfront is not None:
        c = stack.epp.fastfront.completions
        line += f"; completed {c.completed}, unknown {c.unknown}, pending {len(c)}, swept {c.swept}"
    return line


async def measure(args: argparse.Namespace) -> list[Result]:
    from endpoint_picker.envoy import ManagedEnvoy

    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="epp-overhead-") as tmp:
        workdir = Path(tmp)
        script = workdir / "post.lua"
        script.write_text(
            'wrk.method = "POST"\n'
            f"wrk.body = {json.dumps(json.dumps(BODY))}\n"
            'wrk.headers["Content-Type"] = "application/json"\n'
        )
        sims, pool = await start_sims(args.sims, workdir)
        alone = ManagedEnvoy(envoy_alone_config(pool))
        stacks = {front: _stack(front, pool, args) for front in args.fronts}
        started: list[Any] = []
        try:
            await alone.start()
            for stack in stacks.values():
                await stack.start()
                started.append(stack)
            gc.freeze()  # start-up objects out of the collector's way, as a long run would have
            urls = {"envoy-alone": f"http://127.0.0.1:{alone.port}/v1/completions"}
            urls.update({front: f"{s.url}/v1/completions" for front, s in stacks.items()})
            for connections in args.connections:
                for name, url in urls.items():
                    await _load(url, connections, args.warmup, script)  # warm up, discarded
                    out = await _load(url, connections, args.duration, script)
                    rps, p50, p99, errors = _parse(out)
                    results.append(Result(name, connections, rps, p50, p99, errors))
                    print(f"  {name:12} c={connections:<3} {rps:8.0f} req/s  p50 {p50:6.2f} ms"
                          f"  p99 {p99:6.2f} ms  errors {errors}", flush=True)  # fmt: skip
            await _drained(stacks.values(), args.flush)
            for front, stack in stacks.items():
                print(_summary(front, stack))
        finally:
            for stack in reversed(started):
                await stack.stop()
            await alone.stop()
            sims.send_signal(signal.SIGTERM)
            await sims.wait()
    return results


async def _load(url: str, connections: int, duration: float, script: Path) -> str:
    if shutil.which("wrk"):
        return await run_wrk(url, connections, duration, script)
    return await run_python_client(url, connections, duration)


def _parse(out: str) -> tuple[float, float, float, int]:
    if out.lstrip().startswith("{"):
        d = json.loads(out)
        return d["rps"], d["p50"], d["p99"], int(d["err"])
    return parse_wrk(out)


def report(results: list[Result], args: argparse.Namespace) -> None:
    print()
    print("| c | target | req/s | ratio to Envoy alone | p50 | added p50 | p99 | errors |")
    print("|---|---|---|---|---|---|---|---|")
    for c in args.connections:
        alone = next(r for r in results if r.connections == c and r.target == "envoy-alone")
        for r in (r for r in results if r.connections == c):
            added = "" if r is alone else f"+{r.p50_ms - alone.p50_ms:.2f} ms"
            print(f"| {c} | {r.target} | {r.rps:.0f} | {r.rps / alone.rps:.2f} | {r.p50_ms:.2f} ms "
                  f"| {added} | {r.p99_ms:.2f} ms | {r.errors} |")  # fmt: skip
    generator = "wrk -t1" if shutil.which("wrk") else "aiohttp client (wrk not found)"
    flow = "off" if args.no_flow_control else "on (default config)"
    print(f"\nload: {generator}, {args.duration:g} s per point after {args.warmup:g} s warm-up; "
          f"ext_proc mode {args.mode}; access-log flush {args.flush:g} s; {args.sims} simulators, "
          f"zero latency; flow control {flow}; {os.cpu_count()} CPUs")  # fmt: skip
    flag = " --no-flow-control" if args.no_flow_control else ""
    print(f"reproduce: {REPRODUCE} --fronts {','.join(args.fronts)} --duration {args.duration:g} "
          f"--mode {args.mode} --flush {args.flush:g}{flag}")  # fmt: skip


def _fronts(text: str) -> list[str]:
    fronts = [f.strip() for f in text.split(",") if f.strip()]
    unknown = sorted(set(fronts) - set(FRONTS))
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown front(s) {', '.join(unknown)}; choose from {','.join(FRONTS)}"
        )
    return list(dict.fromkeys(fronts))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--duration",
        type=float,
        default=8.0,
        help="seconds per measured point (wrk: whole seconds)",
    )
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per point")
    p.add_argument("--connections", type=int, nargs="+", default=[1, 32])
    p.add_argument("--fronts", type=_fronts, default=list(FRONTS), help="comma list: extproc,fast")
    p.add_argument("--mode", choices=("duplex", "buffered"), default="duplex",
                   help="ext_proc processing mode")  # fmt: skip
    p.add_argument("--flush", type=float, default=0.05, help="access-log flush interval (s)")
    p.add_argument("--no-flow-control", action="store_true",
                   help="legacy admission instead of flow control")  # fmt: skip
    p.add_argument("--sims", type=int, default=2, help="simulated model servers")
    p.add_argument("--results", type=Path, help="JSON results file (default: results/)")
    p.add_argument("--client", help=argparse.SUPPRESS)  # internal: the fallback load generator
    args = p.parse_args()
    if args.client:
        stats = asyncio.run(_client(args.client, args.connections[0], args.duration))
        print(json.dumps(stats))
        return 0
    try:
        import uvloop

        results = uvloop.run(measure(args))
    except ImportError:  # pragma: no cover
        results = asyncio.run(measure(args))
    report(results, args)
    setup = {
        "generator": "wrk -t1" if shutil.which("wrk") else "aiohttp client",
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "extproc_mode": args.mode,
        "als_flush_s": args.flush,
        "simulators": args.sims,
        "flow_control": not args.no_flow_control,
    }
    points = [r.__dict__ for r in results]
    print("wrote", write_results("overhead", {"setup": setup, "points": points}, args.results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
