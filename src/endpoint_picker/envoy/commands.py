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
    from endpoint_picker.envoy.process import validate

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
            "routing headers, ext_proc to the EPP, and the upstream cluster. FailClose routes "
            "with ORIGINAL_DST on the EPP's header (or to the pool, if given); FailOpen needs "
            "--mode buffered and --pool-endpoint and falls back to round robin over the pool."
        ),
    )
    p.add_argument("--listen-port", type=int, default=8081, help="listener port (default 8081)")
    p.add_argument("--listen-host", default="127.0.0.1", help="listener address")
    p.add_argument("--epp-address", default="127.0.0.1:9002", help="the EPP's ext_proc host:port")
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
