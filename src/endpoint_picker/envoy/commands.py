"""``epp envoy-config``: print an Envoy bootstrap for a listener, an EPP address and a pool."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def _endpoints(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [e.strip() for v in values for e in v.split(",") if e.strip()]


def _run(args: argparse.Namespace) -> int:
    import json

    import yaml

    from endpoint_picker.envoy.bootstrap import bootstrap, split_hostport
    from endpoint_picker.envoy.fast import fast_bootstrap
    from endpoint_picker.envoy.process import validate

    if args.front == "fast":
        pick_host, pick_port = split_hostport(args.pick_address)
        als_host, als_port = split_hostport(args.als_address)
        config = fast_bootstrap(
            args.listen_port,
            pick_host,
            pick_port,
            als_port,
            als_host=als_host,
            failure_mode=args.failure_mode,
            pool_endpoints=_endpoints(args.pool_endpoint),
            als_flush_interval_s=args.als_flush_interval,
            admin_port=args.admin_port,
            access_log_path=args.access_log,
            listen_host=args.listen_host,
        )
    else:
        epp_host, epp_port = split_hostport(args.epp_address)
        config = bootstrap(
            args.listen_port,
            epp_host,
            epp_port,
            mode=args.mode,
            failure_mode=args.failure_mode,
            pool_endpoints=_endpoints(args.pool_endpoint),
            tls=args.tls,
            admin_port=args.admin_port,
            access_log_path=args.access_log,
            listen_host=args.listen_host,
        )
    if args.validate:
        validate(config)
    if args.format == "json":
        text = json.dumps(config, indent=2) + "\n"
    else:
        text = yaml.safe_dump(config, sort_keys=False)
    sys.stdout.write(text)
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "envoy-config",
        help="print an Envoy bootstrap that routes through this EPP",
        description=(
            "Print an Envoy 1.40 bootstrap: a listener, a filter that strips client-supplied "
            "routing headers, the EPP's front (ext_proc, or with --front fast ext_authz to the "
            "pick endpoint plus the gRPC access log), and the upstream cluster. FailClose "
            "routes with ORIGINAL_DST on the EPP's header (or to the pool, if given); FailOpen "
            "needs --pool-endpoint (and --mode buffered for ext_proc) and falls back to round "
            "robin over the pool."
        ),
    )
    p.add_argument("--listen-port", type=int, default=8081, help="listener port (default 8081)")
    p.add_argument("--listen-host", default="127.0.0.1", help="listener address")
    p.add_argument(
        "--front",
        choices=("extproc", "fast"),
        default="extproc",
        help="ext_proc (GIE protocol) or fast (ext_authz pick + gRPC access log)",
    )
    p.add_argument("--epp-address", default="127.0.0.1:9002", help="the EPP's ext_proc host:port")
    p.add_argument(
        "--pick-address", default="127.0.0.1:9004", help="fast front: the EPP's pick host:port"
    )
    p.add_argument(
        "--als-address", default="127.0.0.1:9005", help="fast front: the EPP's access-log host:port"
    )
    p.add_argument(
        "--als-flush-interval",
        type=float,
        default=0.05,
        metavar="SECONDS",
        help="fast front: Envoy's access-log flush interval (default 0.05)",
    )
    p.add_argument(
        "--mode",
        choices=("duplex", "buffered"),
        default="duplex",
        help="request body mode: FULL_DUPLEX_STREAMED (upstream's) or BUFFERED (<= 1 MiB)",
    )
    p.add_argument(
        "--failure-mode",
        choices=("FailClose", "FailOpen"),
        default="FailClose",
        help="what Envoy does when the EPP is unreachable",
    )
    p.add_argument(
        "--pool-endpoint",
        action="append",
        metavar="IP:PORT[,IP:PORT...]",
        help="a model server of the pool (repeatable); required for FailOpen",
    )
    p.add_argument(
        "--no-tls",
        dest="tls",
        action="store_false",
        help="plaintext to the EPP (--secure-serving=false)",
    )
    p.add_argument("--admin-port", type=int, default=9901, help="admin port, 127.0.0.1 (9901)")
    p.add_argument("--access-log", default=None, metavar="PATH", help="write an access log here")
    p.add_argument("--format", choices=("yaml", "json"), default="yaml")
    p.add_argument(
        "--validate", action="store_true", help="check the result with `envoy --mode validate`"
    )
    p.set_defaults(func=_run)
