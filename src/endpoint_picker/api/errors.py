"""Turning pydantic's validation errors into Kubernetes-style ``field.path: reason`` lines.

The reasons read like the API server's (``must match <pattern>``, ``must be at most 253
characters``), so a message from ``epp validate`` points at the same fix ``kubectl apply`` would.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from endpoint_picker.validation import field_path

_TYPES = {
    "int_type": "an integer",
    "int_from_float": "an integer",
    "string_type": "a string",
    "bool_type": "a boolean",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
    "list_type": "a list",
    "datetime_type": "an RFC 3339 date-time",
    "datetime_parsing": "an RFC 3339 date-time",
}


def _got(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def reason(error: ErrorDetails) -> str:
    """One error's reason in Kubernetes wording."""
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "string_pattern_mismatch":
        return f"must match {ctx['pattern']} (got {_got(error['input'])})"
    if kind == "string_too_long":
        return f"must be at most {ctx['max_length']} characters (got {len(error['input'])})"
    if kind == "string_too_short":
        return f"must be at least {ctx['min_length']} characters"
    if kind in ("too_long", "too_short"):
        noun = "entries" if isinstance(error["input"], dict) else "items"
        bound = "at most" if kind == "too_long" else "at least"
        limit = ctx["max_length"] if kind == "too_long" else ctx["min_length"]
        got = ctx.get("actual_length") or len(error["input"])
        return f"must have {bound} {limit} {noun} (got {got})"
    if kind == "greater_than_equal":
        return f"must be greater than or equal to {ctx['ge']} (got {_got(error['input'])})"
    if kind == "less_than_equal":
        return f"must be less than or equal to {ctx['le']} (got {_got(error['input'])})"
    if kind == "literal_error":
        return f"must be one of {ctx['expected']} (got {_got(error['input'])})"
    if kind in _TYPES:
        return f"must be {_TYPES[kind]} (got {_got(error['input'])})"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    return error["msg"]


def describe(exc: ValidationError) -> list[tuple[str, str]]:
    """Every error of a validation as a (field path, reason) pair, in input order."""
    return [(field_path(e["loc"]), reason(e)) for e in exc.errors(include_url=False)]
