"""Kubernetes quantities (``10Gi``) and Go durations (``1m30s``), as upstream's config accepts them.

One parser of each for the whole project (flow-control and plugin parameters, CLI flags). They
raise ``ValueError`` with a readable reason, which callers wrap into a ``ConfigError`` carrying
the field path (or an argparse error).
"""

from __future__ import annotations

import math
import re
from decimal import ROUND_CEILING, Decimal, InvalidOperation

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1)}
_DECIMAL |= {"k": Decimal(10**3), "M": Decimal(10**6), "G": Decimal(10**9), "T": Decimal(10**12)}
_DECIMAL |= {"P": Decimal(10**15), "E": Decimal(10**18)}
_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))([eE][+-]?\d+|Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?$")

_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_quantity(value: object) -> int:
    """A Kubernetes quantity as an integer (rounded up, like ``Quantity.Value()``); >= 0."""
    if isinstance(value, bool):
        raise ValueError(f"expected a quantity, got {value!r}")
    if isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"expected a finite quantity, got {value!r}")
        number = Decimal(repr(value))
    elif isinstance(value, str):
        m = _QUANTITY.match(value.strip())
        if m is None:
            raise ValueError(f"invalid quantity {value!r} (examples: 1000, 500M, 10Gi)")
        digits, suffix = m.group(1), m.group(2) or ""
        try:
            number = Decimal(digits)
            if suffix in _BINARY:
                number *= _BINARY[suffix]
            elif suffix[:1] in ("e", "E"):
                number = number.scaleb(int(suffix[1:]))
            else:
                number *= _DECIMAL[suffix]
        except (InvalidOperation, KeyError) as exc:  # pragma: no cover - regex guards this
            raise ValueError(f"invalid quantity {value!r}") from exc
    else:
        raise ValueError(f"expected a quantity (integer or string like 10Gi), got {value!r}")
    if number < 0:
        raise ValueError(f"must not be negative, got {value!r}")
    return int(number.to_integral_value(rounding=ROUND_CEILING))


def parse_duration(value: object) -> float:
    """A Go duration string (``60s``, ``1m30s``, ``200ms``) or a number of seconds, as seconds."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        sign = -1.0 if text.startswith("-") else 1.0
        text = text.lstrip("+-")
        if text == "0":
            return 0.0
        pos, seconds = 0, 0.0
        for m in _DURATION_PART.finditer(text):
            if m.start() != pos:
                break
            seconds += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
            pos = m.end()
        if pos != len(text) or not text:
            raise ValueError(f"invalid duration {value!r} (examples: 60s, 1m30s, 200ms)")
        seconds *= sign
    else:
        raise ValueError(f"expected a duration string like '60s', got {value!r}")
    if not math.isfinite(seconds):
        raise ValueError(f"expected a finite duration, got {value!r}")
    return seconds
