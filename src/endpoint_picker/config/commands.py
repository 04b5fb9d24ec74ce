"""``epp config``: show the effective EndpointPickerConfig after upstream's defaulting."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "config",
        help="validate an EndpointPickerConfig and show it after defaulting",
        description=(
            "Load an EndpointPickerConfig (or the built-in default), apply upstream's "
            "defaulting and validation, and print the effective config as YAML. Invalid "
            "configs print the file, field path and reason, and exit 1."
        ),
    )
    parser.add_argument("--show", action="store_true", help="print the effective config")
    parser.add_argument(
        "--config-file", default=None, help="EndpointPickerConfig YAML (default: built-in)"
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import yaml

    from endpoint_picker.config import load_config
    from endpoint_picker.errors import ConfigError

    try:
        cfg = load_config(args.config_file)
    except ConfigError as err:
        print(f"error: invalid config: {err}", file=sys.stderr)
        return 1
    if args.show:
        sys.stdout.write(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    else:
        print(f"{cfg.source}: valid")
    return 0
