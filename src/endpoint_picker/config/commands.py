"""``epp config``: validate an EndpointPickerConfig and show it after defaulting."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "config",
        help="validate an EndpointPickerConfig and show it after defaulting",
        description=(
            "Load an EndpointPickerConfig (or the built-in default) exactly as `epp run` does: "
            "validate every plugin's parameters, apply upstream's defaulting, build every "
            "plugin once. --show prints the effective config as YAML, every plugin with its "
            "effective parameters. An invalid config prints every error found (file, field "
            "path, reason and fix), the same text `epp run` prints, and exits 1."
        ),
    )
    parser.add_argument("--show", action="store_true", help="print the effective config")
    parser.add_argument(
        "--plugins",
        action="store_true",
        help="list every plugin type with its parameters and defaults (Markdown), and "
        "upstream's types that are not implemented here",
    )
    parser.add_argument(
        "--config-file", default=None, help="EndpointPickerConfig YAML (default: built-in)"
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import yaml

    from endpoint_picker.config import build, load_config
    from endpoint_picker.config.registry import plugin_tables

    if args.plugins:
        sys.stdout.write(plugin_tables())
        return 0
    cfg = load_config(args.config_file)  # a ConfigError is printed by `epp`, as for `epp run`
    build(cfg)  # what `epp run` does next: a factory that refuses its parameters shows here
    if args.show:
        sys.stdout.write(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    else:
        print(f"{cfg.source}: valid")
    return 0
