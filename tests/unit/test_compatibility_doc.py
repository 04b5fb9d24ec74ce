"""docs/compatibility.md stays true: every upstream flag ``epp run`` takes and every plugin type
the registry has are in its tables, and every flag the table names is one ``epp`` accepts."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from endpoint_picker import cli
from endpoint_picker.config.registry import PLUGIN_TYPES

DOC = (Path(__file__).resolve().parents[2] / "docs" / "compatibility.md").read_text()


def run_parser() -> argparse.ArgumentParser:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    run: argparse.ArgumentParser = sub.choices["run"]
    return run


def upstream_flags() -> set[str]:
    """Flags of the groups that hold upstream's flags (kubernetes, upstream, epp)."""
    flags: set[str] = set()
    for group in run_parser()._action_groups:
        if group.title in ("kubernetes", "upstream", "epp"):
            for action in group._group_actions:
                flags.update(o for o in action.option_strings if o.startswith("--"))
    return {f for f in flags if not f.startswith("--no-") and f != "--host"}


def test_every_upstream_flag_has_a_row() -> None:
    rows = set(re.findall(r"^\| `(--[a-z0-9-]+)`", DOC, flags=re.M))
    rows |= set(re.findall(r"`(--[a-z0-9-]+)`", DOC))
    missing = sorted(upstream_flags() - rows)
    assert missing == []


def test_every_flag_in_the_table_is_accepted() -> None:
    known = {o for a in run_parser()._actions for o in a.option_strings}
    table = re.findall(r"^\| `(--[a-z0-9-]+)`", DOC, flags=re.M)
    assert table and [f for f in table if f not in known] == []


def test_every_registered_plugin_is_listed_as_implemented() -> None:
    listed = dict(
        re.findall(r"^\| `([a-z0-9-]+)` \|.*\| (\*\*yes\*\*|not implemented) \|$", DOC, flags=re.M)
    )
    assert {name for name, here in listed.items() if here == "**yes**"} == set(PLUGIN_TYPES)


def test_the_config_registrys_not_implemented_list_agrees() -> None:
    from endpoint_picker.config import UPSTREAM_NOT_IMPLEMENTED

    rows = dict(
        re.findall(r"^\| `([a-z0-9-]+)` \|.*\| (\*\*yes\*\*|not implemented) \|$", DOC, flags=re.M)
    )
    assert {n for n in UPSTREAM_NOT_IMPLEMENTED if rows.get(n) != "not implemented"} == set()
