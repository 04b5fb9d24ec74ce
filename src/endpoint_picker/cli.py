"""``epp``: the command line. Each command lives beside the code it drives.

A command module exposes ``register(subparsers)``, which adds its parser and sets ``func`` to a
callable taking the parsed namespace and returning an exit code. Registration imports nothing
heavy, so ``epp --help`` stays fast; the work imports happen inside ``func``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from endpoint_picker import __version__
from endpoint_picker.errors import ConfigError

# Order is the order of ``epp --help``.
COMMAND_MODULES = (
    "endpoint_picker.runner.commands",  # run, demo
    "endpoint_picker.envoy.commands",  # envoy-config
    "endpoint_picker.sim.commands",  # sim
    "endpoint_picker.config.commands",  # config
    "endpoint_picker.api.commands",  # crds, validate
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="epp",
        description=(
            "An LLM-aware Endpoint Picker for the Gateway API Inference Extension: decides when "
            "a request may go (flow control by InferenceObjective priority) and where (scheduling "
            "on live model-server metrics)."
        ),
    )
    parser.add_argument("--version", action="version", version=f"epp {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # The EPP starts Envoy and simulators as child processes after gRPC is up; gRPC's fork
    # handlers are not needed for that (exec follows at once) and only print warnings.
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args) or 0)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
