"""``epp run`` and ``epp demo``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from typing import Any

from endpoint_picker.errors import ConfigError
from endpoint_picker.units import parse_duration, parse_quantity


def _add_run_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_argument_group("pool", "Where the pool, its objectives and endpoints come from.")
    src.add_argument(
        "-f",
        "--manifest",
        action="append",
        default=[],
        metavar="FILE",
        help="InferencePool/InferenceObjective manifests (YAML/JSON); reloaded when they change. "
        "Without -f and without Kubernetes flags, an embedded default pool and objectives "
        "(critical=10, standard unset, sheddable=-10) are used.",
    )
    src.add_argument(
        "--endpoint",
        action="append",
        default=[],
        metavar="[NAME=]IP:PORT",
        help="A model server to route to (repeatable); for runs without Kubernetes.",
    )
    src.add_argument("--pool", dest="pool_name_file", default=None, help="Pool to use from -f.")
    src.add_argument(
        "--simulate",
        type=int,
        default=0,
        metavar="N",
        help="Also start N simulated vLLM servers (epp sim) and route to them.",
    )
    src.add_argument(
        "--simulate-pd",
        type=_pd_split,
        default=None,
        metavar="P:D",
        help="Also start P prefill-role and D decode-role simulated vLLM servers (the decode "
        "ones run llm-d's P/D sidecar), labelled llm-d.ai/role in the pool, and route with "
        "llm-d's P/D config (pd-epp-config.yaml) unless --config-file/--config-text is given.",
    )
    src.add_argument(
        "--simulate-dp",
        type=int,
        default=0,
        metavar="R",
        help="Also start one simulated pod with R data-parallel ranks on consecutive ports (pool "
        "endpoints sim-dp-rank-<i>; rank 0's port runs llm-d's data-parallel sidecar), and route "
        "with llm-d's dp-epp-config.yaml, primaryPort set to rank 0's port, unless "
        "--config-file/--config-text is given.",
    )
    src.add_argument(
        "--sim-profile",
        default="8b-h100",
        help="Simulator profile (--simulate, --simulate-pd, --simulate-dp).",
    )
    src.add_argument(
        "--sim-base-port",
        type=int,
        default=0,
        help="Simulators listen on consecutive ports from this one (default 0: free ports). With "
        "--simulate-dp 3 --sim-base-port 8000, llm-d's dp-epp-config.yaml (primaryPort 8000) "
        "runs unchanged.",
    )
    src.add_argument(
        "--sim-host",
        default="127.0.0.1",
        help="Address --simulate-dp's ranks bind (a loopback address such as 127.0.0.4 keeps "
        "fixed ports such as 8000 clear of 127.0.0.1).",
    )
    epp = p.add_argument_group("epp", "The EPP itself (upstream flag names and defaults).")
    epp.add_argument(
        "--host",
        default=None,
        help="Address the EPP's servers bind to (default 127.0.0.1; all interfaces in "
        "Kubernetes mode, as upstream).",
    )
    epp.add_argument("--grpc-port", type=int, default=9002, help="ext_proc gRPC port.")
    epp.add_argument("--grpc-health-port", type=int, default=9003, help="gRPC health port.")
    epp.add_argument("--metrics-port", type=int, default=9090, help="Prometheus /metrics port.")
    epp.add_argument("--config-file", default=None, help="EndpointPickerConfig YAML file.")
    epp.add_argument("--config-text", default=None, help="EndpointPickerConfig YAML text.")
    epp.add_argument(
        "--secure-serving",
        default=True,
        action=argparse.BooleanOptionalAction,
        help="TLS on the ext_proc port (self-signed unless --cert-path).",
    )
    epp.add_argument("--cert-path", default=None, help="Directory with tls.crt and tls.key.")
    epp.add_argument(
        "--max-request-body-size",
        type=_quantity,
        default=16 * 1024 * 1024,
        help="ext_proc front: larger request bodies are answered 413 (bytes or a quantity such "
        "as 16Mi; the fast front's Envoy limit is the same 16Mi).",
    )
    epp.add_argument(
        "--refresh-metrics-interval",
        type=_duration,
        default=0.05,
        help="Model-server scrape interval (e.g. 50ms).",
    )
    epp.add_argument(
        "--refresh-prometheus-metrics-interval",
        type=_duration,
        default=5.0,
        help="Pool gauge refresh interval (e.g. 5s).",
    )
    epp.add_argument(
        "--metrics-staleness-threshold",
        type=_duration,
        default=2.0,
        help="Metrics older than this do not count for the pool gauges (e.g. 2s).",
    )
    epp.add_argument(
        "--disable-endpoint-subset-filter",
        action="store_true",
        help="Ignore the gateway's x-gateway-destination-endpoint-subset hint.",
    )
    epp.add_argument(
        "--model-server-metrics-port",
        type=int,
        default=0,
        help="Metrics port of model servers when the pool has one target port (deprecated).",
    )
    env = p.add_argument_group("envoy", "The managed Envoy in front (standalone runs).")
    env.add_argument("--port", type=int, default=8081, help="Envoy's listener port for clients.")
    env.add_argument("--no-envoy", action="store_true", help="Run the EPP only.")
    env.add_argument(
        "--front",
        choices=("fast", "extproc"),
        default=None,
        help="How Envoy reaches the EPP: 'fast' (the default standalone; pick over ext_authz "
        "HTTP on --pick-port, complete over Envoy's gRPC access log on --als-port; needs an "
        "Envoy config the EPP writes) or 'extproc' (the GIE ext_proc protocol on --grpc-port, "
        "for any GIE gateway; the default in Kubernetes mode).",
    )
    env.add_argument(
        "--pick-port", type=int, default=9004, help="Fast front: ext_authz HTTP pick port."
    )
    env.add_argument(
        "--als-port", type=int, default=9005, help="Fast front: gRPC access-log service port."
    )
    env.add_argument(
        "--pick-host",
        default="127.0.0.1",
        help="Fast front: address the pick port binds to. Loopback by default, whatever --host "
        "says: the port is unauthenticated and only Envoy beside the EPP should reach it.",
    )
    env.add_argument(
        "--als-host",
        default="127.0.0.1",
        help="Fast front: address the access-log port binds to (loopback by default, as "
        "--pick-host).",
    )
    env.add_argument(
        "--als-flush-interval",
        type=_duration,
        default=0.05,
        help="Fast front: how often Envoy flushes access-log entries (e.g. 50ms); in-flight "
        "counts fall this much later than the response ends.",
    )
    env.add_argument(
        "--envoy-mode",
        choices=("duplex", "buffered"),
        default=None,
        help="ext_proc body mode: FULL_DUPLEX_STREAMED (default, as upstream) or BUFFERED "
        "(the default with FailOpen: Envoy can fail open in duplex mode only before the body).",
    )
    env.add_argument(
        "--failure-mode",
        choices=("FailClose", "FailOpen"),
        default="FailClose",
        help="What Envoy does when the EPP is down (FailOpen falls back within the pool only).",
    )
    env.add_argument("--envoy-admin-port", type=int, default=None, help="Envoy admin port.")
    from endpoint_picker.runner.upstream_flags import add_arguments as add_upstream
    from endpoint_picker.sources.k8s_args import add_arguments

    add_arguments(p)
    add_upstream(p, _duration)


def _duration(text: str) -> float:
    """Go-style durations (``50ms``, ``2s``, ``1m``) or plain seconds."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return parse_duration(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _pd_split(text: str) -> tuple[int, int]:
    """``P:D`` -> ``(P, D)``, both at least 1."""
    head, colon, tail = text.partition(":")
    try:
        prefill, decode = int(head), int(tail)
    except ValueError:
        prefill = decode = 0
    if not colon or prefill < 1 or decode < 1:
        raise argparse.ArgumentTypeError(f"must be P:D with P and D >= 1 (e.g. 2:2), got {text!r}")
    return prefill, decode


def _quantity(text: str) -> int:
    """A positive byte count: plain or a Kubernetes quantity (``16Mi``)."""
    try:
        value = parse_quantity(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def register(subparsers: Any) -> None:
    run = subparsers.add_parser(
        "run",
        help="Run the EPP (and, standalone, Envoy and simulated model servers).",
        description=(
            "Start the EPP: ext_proc on --grpc-port, gRPC health on --grpc-health-port, "
            "Prometheus metrics on --metrics-port. Standalone (default) it also starts Envoy on "
            "--port in front of the pool, and with --simulate N, N simulated vLLM servers. "
            "With --pool-name or --endpoint-selector it serves a pool from the Kubernetes API."
        ),
    )
    _add_run_arguments(run)
    run.set_defaults(func=run_command, upstream_mode=False)
    demo = subparsers.add_parser(
        "demo",
        help="Start Envoy + EPP + simulated servers, send a mixed workload, print what happened.",
        description=(
            "The whole system on this machine for about half a minute: 4 simulated vLLM "
            "servers, the EPP, Envoy; two tenants at three priorities with shared prefixes and "
            "a streaming request; then a summary per endpoint and per priority."
        ),
    )
    demo.add_argument("--requests", type=int, default=240, help="How many requests to send.")
    demo.add_argument("--concurrency", type=int, default=48, help="Requests in flight at once.")
    demo.add_argument("--simulate", type=int, default=4, help="Simulated servers.")
    demo.add_argument("--port", type=int, default=0, help="Envoy port (0 = any free port).")
    demo.add_argument(
        "--front",
        choices=("fast", "extproc"),
        default="fast",
        help="How Envoy reaches the EPP (as for epp run).",
    )
    demo.set_defaults(func=demo_command)


def is_kubernetes(args: argparse.Namespace) -> bool:
    """Kubernetes mode: upstream's ``--pool-name`` or ``--endpoint-selector`` was given."""
    return bool(getattr(args, "pool_name", "") or getattr(args, "endpoint_selector", ""))


def options_from_args(args: argparse.Namespace) -> Any:
    """The parsed flags as StackOptions (checked; bad values are a ConfigError)."""
    from endpoint_picker.runner.app import EppOptions
    from endpoint_picker.runner.stack import StackOptions
    from endpoint_picker.runner.upstream_flags import settings_from_args

    kube = args if is_kubernetes(args) else None
    given = [
        f
        for f, v in (
            ("--simulate", args.simulate),
            ("--simulate-pd", args.simulate_pd),
            ("--simulate-dp", args.simulate_dp),
        )
        if v
    ]
    if len(given) > 1:
        raise ConfigError(f"{' and '.join(given)} are mutually exclusive")
    if args.simulate_dp < 0:
        raise ConfigError(f"--simulate-dp must be at least 1, got {args.simulate_dp}")
    if args.upstream_mode and kube is None:
        # Upstream's own rule, in its words: its argument lists always name the pool.
        raise ConfigError("either pool-name or endpoint-selector must be set")
    upstream = settings_from_args(args, kubernetes=kube is not None)
    manifests = list(args.manifest)
    if not manifests and kube is None:
        from endpoint_picker.runner.defaults import default_manifest_path

        manifests = [default_manifest_path()]
    epp = EppOptions(
        manifests=manifests,
        endpoints=list(args.endpoint),
        pool_name=args.pool_name_file,
        config_file=args.config_file,
        config_text=args.config_text,
        host=args.host or ("0.0.0.0" if kube is not None else "127.0.0.1"),
        grpc_port=args.grpc_port,
        grpc_health_port=args.grpc_health_port,
        metrics_port=args.metrics_port,
        secure_serving=args.secure_serving,
        cert_path=args.cert_path,
        refresh_metrics_interval=args.refresh_metrics_interval,
        refresh_prometheus_metrics_interval=args.refresh_prometheus_metrics_interval,
        metrics_staleness_threshold=args.metrics_staleness_threshold,
        disable_endpoint_subset_filter=args.disable_endpoint_subset_filter,
        model_server_metrics_port=args.model_server_metrics_port,
        kubernetes_args=kube,
        pick_port=args.pick_port,
        als_port=args.als_port,
        upstream=upstream,
        pick_host=args.pick_host,
        als_host=args.als_host,
        max_request_body_bytes=args.max_request_body_size,
    )
    return StackOptions(
        epp=epp,
        listen_port=args.port,
        admin_port=args.envoy_admin_port,
        simulate=args.simulate,
        simulate_pd=args.simulate_pd,
        simulate_dp=args.simulate_dp,
        sim_profile=args.sim_profile,
        sim_base_port=args.sim_base_port,
        sim_host=args.sim_host,
        envoy=not args.no_envoy and kube is None,
        mode=args.envoy_mode or ("buffered" if args.failure_mode == "FailOpen" else "duplex"),
        failure_mode=args.failure_mode,
        front=args.front or ("extproc" if kube is not None else "fast"),
        als_flush_interval=args.als_flush_interval,
    )


def run_command(args: argparse.Namespace) -> int:
    from endpoint_picker.runner import logs

    options = options_from_args(args)
    up = options.epp.upstream
    logs.configure(up.log_level, json_lines=up.log_json, time_encoding=up.time_encoding)
    log = logging.getLogger("endpoint_picker")
    for note in up.notes:
        log.info(note)
    return _run_loop(_serve(options))


async def _serve(options: Any) -> int:
    from endpoint_picker.runner.stack import Stack

    log = logging.getLogger("endpoint_picker")
    stack = Stack(options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stack.start()
    o = options.epp
    if stack.epp.fastfront is not None:
        ff = stack.epp.fastfront
        log.info(
            "fast front: pick on %s:%d, access log on %s:%d, metrics on :%s",
            ff.host,
            ff.port,
            ff.als_host,
            ff.als_port,
            o.metrics_port,
        )
    else:
        log.info("ext_proc on %s:%d, metrics on :%s", o.host, stack.epp.grpc_port, o.metrics_port)
    for ep in stack.epp.datastore.endpoints():
        log.info("endpoint %s", ep)
    ms = stack.epp.metrics_server
    if ms is not None:
        host = "127.0.0.1" if ms.host in ("0.0.0.0", "::", "") else ms.host
        log.info("status page: http://%s:%d/", host, ms.port)
    if stack.envoy is not None:
        log.info("send requests to %s/v1/completions (Envoy pid %s)", stack.url, stack.envoy.pid)
    stopped = asyncio.create_task(stop.wait())
    failed = asyncio.create_task(stack.failed.wait())
    try:
        await asyncio.wait({stopped, failed}, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            await _drain(stack, stop, log)
    finally:
        stopped.cancel()
        failed.cancel()
        log.info("stopping")
        await stack.stop()
    if stack.failed.is_set():
        log.error("the managed Envoy could not be kept running: exiting with status 1")
        return 1
    return 0


async def _drain(stack: Any, stop: asyncio.Event, log: logging.Logger) -> None:
    """Upstream's ``--drain-timeout`` in Kubernetes mode: on SIGTERM go not-ready at once (the
    gateway stops sending), keep serving in-flight streams that long; a second signal ends it."""
    o = stack.epp.options
    if o.kubernetes_args is None or o.upstream.drain_timeout <= 0:
        return
    stack.epp.draining = True
    log.info("draining for %.0fs before stopping (--drain-timeout)", o.upstream.drain_timeout)
    stop.clear()
    try:
        await asyncio.wait_for(stop.wait(), o.upstream.drain_timeout)
    except TimeoutError:
        pass


def demo_command(args: argparse.Namespace) -> int:
    from endpoint_picker.runner.demo import run_demo

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return _run_loop(
        run_demo(args.simulate, args.requests, args.concurrency, args.port, args.front)
    )


def _run_loop(coro: Any) -> int:
    try:
        import uvloop

        return int(uvloop.run(coro))
    except ImportError:  # pragma: no cover
        return int(asyncio.run(coro))
    except KeyboardInterrupt:
        return 130
