"""``epp sim``: serve N simulated vLLM instances from one process until SIGINT/SIGTERM.

Every ``SimConfig`` field is a flag of the same name (``max_num_seqs`` -> ``--max-num-seqs``);
flags given override the chosen ``--profile``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from endpoint_picker.sim.config import PROFILES, SimConfig

_TYPES: dict[str, Any] = {"int": int, "float": float, "str": str}
_HELP = {
    "lora": "LoRA adapter names served besides the base model",
    "jitter": "std-dev of every duration as a fraction of its mean (0..0.3), seeded",
    "fail_rate": "fraction of generation requests answered with an injected error",
    "fail_statuses": "HTTP statuses injected errors are drawn from",
    "slow_metrics": "seconds /metrics waits before answering",
    "stale_metrics": "seconds a rendered /metrics body is served again unchanged",
    "time_factor_under_load": "latency multiplier at max-num-seqs running (1.0 at one)",
    "kv_events_port": "publish vLLM KV events on a ZMQ PUB bound here (instance i: port+i; 0 off)",
    "kv_events_endpoint": "or connect the KV-event PUB to this central subscriber (tcp://h:p)",
    "kv_events_replay_port": "ZMQ ROUTER for KV-event replay requests (instance i: port+i)",
    "kv_events_topic": "KV-event topic; {endpoint} and {model} are filled in",
    "kv_events_engine": "KV-event dialect: vllm or sglang",
    "hash_seed": "the engine's block-hash seed (as vLLM's PYTHONHASHSEED)",
    "role": "llm-d role: prefill, decode, both or '' (decode and both run the P/D sidecar)",
    "kv_bytes_per_token": "P/D: KV-cache bytes per token, for the modelled KV pull",
    "kv_transfer_bandwidth": "P/D: prefiller -> decoder link, bytes/s",
    "kv_transfer_latency": "P/D: fixed cost of one KV pull, seconds",
    "max_num_batched_tokens": "chunked prefill: tokens per engine step (0: prefill beside decode)",
}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "sim",
        help="run vLLM-compatible model-server simulators (no GPU needed)",
        description=(
            "Serve COUNT simulated vLLM instances from one event loop: OpenAI completions, chat "
            "and embeddings, queueing, continuous batching, a prefix-cached KV cache, LoRA "
            "adapters and vLLM's Prometheus metrics. Prints 'sim <i> listening on <url>' per "
            "instance, then runs until SIGINT/SIGTERM."
        ),
    )
    parser.add_argument("--count", type=int, default=1, help="instances to start (default 1)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--base-port",
        type=int,
        default=8000,
        help="port of instance 0; instance i gets base+i; 0 = ephemeral ports",
    )
    parser.add_argument(
        "--profile",
        default="tiny-test",
        choices=sorted(PROFILES),
        help="latency/capacity preset (default tiny-test)",
    )
    parser.add_argument("--port-file", help="write the bound ports here as a JSON list")
    knobs = parser.add_argument_group("knobs (override the profile)")
    for f in dataclasses.fields(SimConfig):
        if f.name == "profile":
            continue
        flag = "--" + f.name.replace("_", "-")
        text = _HELP.get(f.name, f"default from the profile ({f.default!r} in 'default')")
        kind = str(f.type)
        if kind == "bool":
            knobs.add_argument(
                flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=text
            )
        elif kind.startswith("tuple["):
            item = int if "int" in kind else str
            knobs.add_argument(
                flag, dest=f.name, nargs="+", type=item, default=None, metavar="X", help=text
            )
        else:
            knobs.add_argument(flag, dest=f.name, type=_TYPES[kind], default=None, help=text)
    parser.set_defaults(func=run)


def overrides_from(args: argparse.Namespace) -> dict[str, Any]:
    """The knobs given on the command line."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(SimConfig):
        value = getattr(args, f.name, None)
        if f.name != "profile" and value is not None:
            out[f.name] = tuple(value) if isinstance(value, list) else value
    return out


def run(args: argparse.Namespace) -> int:
    import asyncio

    from endpoint_picker.errors import ConfigError

    if args.count < 1:
        raise ConfigError(f"--count must be >= 1, got {args.count}")
    if args.base_port and not 0 < args.base_port + args.count - 1 < 65536:
        raise ConfigError(f"ports {args.base_port}..{args.base_port + args.count - 1} are invalid")
    overrides = overrides_from(args)
    SimConfig.from_profile(args.profile, **overrides)  # fail on bad knobs before binding
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    try:
        return int(runner(_serve(args, overrides)))
    except OSError as err:
        print(f"error: cannot start simulators: {err}", file=sys.stderr)
        return 1


async def _serve(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    import asyncio
    import signal

    from endpoint_picker.sim.fleet import start_fleet

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)  # before the ready lines: a harness may signal next
    fleet = await start_fleet(args.count, args.profile, args.host, args.base_port, **overrides)
    try:
        if args.port_file:  # before the ready lines, so a reader of them finds the file
            _write_port_file(args.port_file, fleet.ports)
        for i, server in enumerate(fleet.servers):
            print(f"sim {i} listening on {server.url}", flush=True)
        await stop.wait()
    finally:
        await fleet.stop()
    return 0


def _write_port_file(path: str, ports: list[int]) -> None:
    """Write atomically, so a harness polling for the file never reads half of it."""
    import json
    import os

    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        json.dump(ports, fh)
    os.replace(tmp, path)
