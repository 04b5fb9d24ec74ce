"""Go flag syntax on top of argparse, so upstream's argument lists run unchanged.

Upstream parses its flags with ``pflag`` (plus Go's ``flag`` for the zap options), which accepts
``-f v``, ``--f v``, ``-f=v``, ``--f=v``, a bare ``--bool`` and ``--bool=false``. argparse knows
none of ``--bool=false``, ``-long-name`` or a value that starts with ``-``. Rather than a second
parser, :func:`normalize` rewrites such an argument list into the one spelling argparse reads
without doubt (``--name=value``, ``--name`` / ``--no-name``), using the parser's own actions to
tell boolean flags from flags that take a value. One table of flags, one parser: what ``epp run
--help`` shows is exactly what upstream's lists may use.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

# strconv.ParseBool, which pflag and Go's flag package use.
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


class FlagSyntaxError(ValueError):
    """An argument list that Go's flag syntax does not allow either (names the flag)."""


def parse_go_bool(flag: str, text: str) -> bool:
    """Go's ``strconv.ParseBool``; anything else is a FlagSyntaxError naming the flag."""
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise FlagSyntaxError(f"invalid boolean value {text!r} for --{flag} (use true or false)")


def _kinds(parser: argparse.ArgumentParser) -> tuple[dict[str, str], dict[str, str]]:
    """(flag name -> 'bool' | 'value' | 'other', flag name -> the option string to emit)."""
    kinds: dict[str, str] = {}
    spelled: dict[str, str] = {}
    for action in parser._actions:
        if isinstance(action, (argparse.BooleanOptionalAction, argparse._StoreTrueAction)):
            kind = "bool"
        elif action.nargs is None and action.option_strings:
            kind = "value"
        else:
            kind = "other"  # help, version, count: passed through as written
        # Emit the longest spelling (``--v`` rather than ``-v``): argparse reads it unambiguously.
        positive = [
            o for o in action.option_strings if not (kind == "bool" and o.startswith("--no-"))
        ]
        longest = max(positive, key=len, default="")
        for opt in action.option_strings:
            if opt.startswith("--no-") and kind == "bool":
                continue
            name = opt.lstrip("-")
            kinds[name] = kind
            spelled[name] = longest
    return kinds, spelled


def normalize(parser: argparse.ArgumentParser, argv: Sequence[str]) -> list[str]:
    """Rewrite Go-syntax flags in ``argv`` into argparse's spelling (see module doc).

    Unknown flags and positional arguments pass through untouched, so argparse still reports
    them in its own words. Raises FlagSyntaxError for a bad boolean or a missing value.
    """
    kinds, spelled = _kinds(parser)
    out: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            out.extend(args[i - 1 :])
            break
        if not arg.startswith("-") or arg == "-":
            out.append(arg)
            continue
        name, eq, value = arg.lstrip("-").partition("=")
        kind = kinds.get(name)
        if kind is None or kind == "other":
            out.append(arg)
            continue
        option = spelled[name]
        if kind == "bool":
            on = parse_go_bool(name, value) if eq else True
            if on:
                out.append(option)
            elif isinstance(_action(parser, option), argparse.BooleanOptionalAction):
                out.append("--no-" + option.lstrip("-"))
            # a store_true flag set to false is its default: nothing to emit
            continue
        if not eq:
            if i >= len(args):
                raise FlagSyntaxError(f"flag needs an argument: --{name}")
            value = args[i]
            i += 1
        out.append(f"{option}={value}")
    return out


def _action(parser: argparse.ArgumentParser, option: str) -> argparse.Action | None:
    for action in parser._actions:
        if option in action.option_strings:
            return action
    return None
