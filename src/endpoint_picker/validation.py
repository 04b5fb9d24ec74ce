"""Turning pydantic validation errors into ``field.path: reason`` lines, for configs and manifests.

One place for the location-to-path rule, so ``epp config`` and ``epp validate`` point at
fields the same way (``plugins[3].parameters.threshold``, ``spec.targetPorts[1].number``).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def field_path(loc: Iterable[int | str]) -> str:
    """``('spec', 'targetPorts', 1, 'number')`` -> ``spec.targetPorts[1].number``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":
            out += "(key)"
        elif "." in part or "/" in part:
            out += f"[{part!r}]"  # a map key such as a label name
        else:
            out += f".{part}" if out else part
    return out


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """`` did you mean 'x'?`` for the closest known word, or ``""`` when none is close."""
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""
