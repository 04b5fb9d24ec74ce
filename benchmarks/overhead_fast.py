"""Envoy alone vs the ext_proc front vs the fast front: same simulators, same load, one run.

Three Envoys in front of the same near-zero-latency simulators (a separate process):

- ``envoy-alone``: the generated bootstrap without the EPP, round robin over the pool;
- ``extproc``: ``epp run``'s composition (``Stack``: default config, flow control on),
  FULL_DUPLEX_STREAMED ext_proc (upstream's mode) unless ``--mode buffered``;
- ``fast``: the same EPP and director behind the fast front (``FastFront``: pick over
  ext_authz HTTP/1.1, complete over Envoy's gRPC access log) and ``fast_bootstrap``.

Load: ``wrk -t1`` at c=1 and c=32 (or an aiohttp client in its own process without wrk), as
``benchmarks/overhead.py`` does, whose helpers this reuses. Printed: req/s, p50, p99 per target
and the ratios to Envoy alone. Run (about 70 s):

    .venv/bin/python benchmarks/overhead_fast.py [--duration 8] [--mode duplex|buffered]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import overhead as base  # benchmarks/overhead.py: load generators, simulators

REPRODUCE = ".venv/bin/python benchmarks/overhead_fast.py"
NO_FLOW_CONTROL = """
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
flowControl: {enabled: false}
"""
TARGETS = ("envoy-alone", "extproc", "fast")


async def measure(args: argparse.Namespace) -> list[base.Result]:
    from endpoint_picker.envoy import ManagedEnvoy
    from endpoint_picker.envoy.fast import fast_bootstrap
    from endpoint_picker.fastfront import FastFront
    from endpoint_picker.runner.app import EppOptions
    from endpoint_picker.runner.defaults import default_manifest_path
    from endpoint_picker.runner.stack import Stack, StackOptions

    results: list[base.Result] = []
    with tempfile.TemporaryDirectory(prefix="epp-overhead-fast-") as tmp:
        workdir = Path(tmp)
        script = workdir / "post.lua"
        script.write_text(
            'wrk.method = "POST"\n'
            f"wrk.body = {json.dumps(json.dumps(base.BODY))}\n"
            'wrk.headers["Content-Type"] = "application/json"\n'
        )
        sims, pool = await base.start_sims(args.sims, workdir)
        alone = ManagedEnvoy(base.envoy_alone_config(pool))
        epp = EppOptions(
            manifests=[default_manifest_path()],
            endpoints=pool,
            grpc_port=0,
            grpc_health_port=0,
            metrics_port=0,
            config_text=NO_FLOW_CONTROL if args.no_flow_control else None,
        )
        stack = Stack(StackOptions(epp=epp, listen_port=0, mode=args.mode))
        front: FastFront | None = None
        fast_envoy: ManagedEnvoy | None = None
        try:
            await alone.start()
            await stack.start()
            assert stack.epp.director is not None
            front = FastFront(stack.epp.director, "127.0.0.1", 0, 0)
            await front.start()
            config = fast_bootstrap(
                0, "127.0.0.1", front.port, front.als_port, als_flush_interval_s=args.flush
            )
            fast_envoy = ManagedEnvoy(config)
            await fast_envoy.start()
            gc.freeze()  # start-up objects out of the collector's way, as a long run would have
            urls = {
                "envoy-alone": f"http://127.0.0.1:{alone.port}/v1/completions",
                "extproc": f"{stack.url}/v1/completions",
                "fast": f"http://127.0.0.1:{fast_envoy.port}/v1/completions",
            }
            for connections in args.connections:
                for name, url in urls.items():
                    await base._load(url, connections, args.warmup, script)  # discarded
                    out = await base._load(url, connections, args.duration, script)
                    rps, p50, p99, errors = base._parse(out)
                    results.append(base.Result(name, connections, rps, p50, p99, errors))
                    print(
                        f"  {name:12} c={connections:<3} {rps:8.0f} req/s  p50 {p50:6.2f} ms"
                        f"  p99 {p99:6.2f} ms  errors {errors}",
                        flush=True,
                    )
            await asyncio.sleep(args.flush * 4)  # the last access-log entries
            director = stack.epp.director
            print(f"  EPP outcomes: {dict(sorted(director.outcomes.items()))}")
            c = front.completions
            print(
                f"  fast front: completed {c.completed}, unknown {c.unknown}, "
                f"pending {len(c)}, swept {c.swept}"
            )
        finally:
            if fast_envoy is not None:
                await fast_envoy.stop()
            if front is not None:
                await front.stop()
            await stack.stop()
            await alone.stop()
            sims.send_signal(signal.SIGTERM)
            await sims.wait()
    return results


def report(results: list[base.Result], args: argparse.Namespace) -> None:
    print()
    print(
        "| c | target | req/s | ratio to Envoy alone | p50 | added p50 | p99 | errors |\n"
        "|---|---|---|---|---|---|---|---|"
    )
    for c in args.connections:
        alone = next(r for r in results if r.connections == c and r.target == "envoy-alone")
        for name in TARGETS:
            r = next(r for r in results if r.connections == c and r.target == name)
            print(
                f"| {c} | {name} | {r.rps:.0f} | {r.rps / alone.rps:.2f} | {r.p50_ms:.2f} ms "
                f"| +{r.p50_ms - alone.p50_ms:.2f} ms | {r.p99_ms:.2f} ms | {r.errors} |"
            )
    generator = "wrk -t1" if shutil.which("wrk") else "aiohttp client (wrk not found)"
    print(
        f"\nload: {generator}, {args.duration:g} s per point after {args.warmup:g} s warm-up; "
        f"ext_proc mode {args.mode}; access-log flush {args.flush:g} s; {args.sims} simulators, "
        f"zero latency; flow control {'off' if args.no_flow_control else 'on (default config)'}; "
        f"{os.cpu_count()} CPUs"
    )
    flag = " --no-flow-control" if args.no_flow_control else ""
    print(
        f"reproduce: {REPRODUCE} --duration {args.duration:g} --mode {args.mode} "
        f"--flush {args.flush:g}{flag}"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=8.0, help="seconds per measured point")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per point")
    p.add_argument("--connections", type=int, nargs="+", default=[1, 32])
    p.add_argument("--mode", choices=("duplex", "buffered"), default="duplex")
    p.add_argument("--flush", type=float, default=0.05, help="access-log flush interval (s)")
    p.add_argument("--sims", type=int, default=2, help="simulated model servers")
    p.add_argument(
        "--no-flow-control", action="store_true", help="legacy admission instead of flow control"
    )
    args = p.parse_args()
    try:
        import uvloop

        results = uvloop.run(measure(args))
    except ImportError:  # pragma: no cover
        results = asyncio.run(measure(args))
    report(results, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
