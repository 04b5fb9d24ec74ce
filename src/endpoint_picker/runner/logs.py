"""Process logging: upstream's zap-style JSON lines (``--zap-encoder json``) or plain text.

Log collectors set up for upstream's EPP parse one JSON object per line with ``ts``, ``level``,
``logger`` and ``msg``, and any structured fields beside them (zap's production encoder). The
formatter writes exactly that: ``extra={...}`` fields of a record become keys of the object.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
from typing import Any

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


def _level_name(levelno: int) -> str:
    """zap's level names; finer than DEBUG is zap's V(n) debug too."""
    if levelno >= logging.CRITICAL:
        return "panic"
    if levelno >= logging.ERROR:
        return "error"
    if levelno >= logging.WARNING:
        return "warn"
    if levelno >= logging.INFO:
        return "info"
    return "debug"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``msg``, then extra fields."""

    def __init__(self, time_encoding: str = "iso8601") -> None:
        super().__init__()
        self.time_encoding = time_encoding

    def _ts(self, created: float) -> Any:
        enc = self.time_encoding
        if enc == "epoch":
            return created
        if enc == "millis":
            return created * 1000.0
        if enc == "nano":
            return int(created * 1e9)
        when = datetime.datetime.fromtimestamp(created, datetime.UTC)
        if enc == "rfc3339":
            return when.strftime("%Y-%m-%dT%H:%M:%SZ")
        if enc == "rfc3339nano":
            return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": self._ts(record.created),
            "level": _level_name(record.levelno),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in out:
                out[key] = value
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, separators=(",", ":"))


def configure(level: int, *, json_lines: bool, time_encoding: str = "iso8601") -> None:
    """Install one stderr handler on the root logger (replacing earlier ones)."""
    handler = logging.StreamHandler(sys.stderr)
    if json_lines:
        handler.setFormatter(JsonFormatter(time_encoding))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
