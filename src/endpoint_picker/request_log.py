"""One log line per request, with the fields an operator greps for.

Logger ``endpoint_picker.request``. A completed request is logged at DEBUG (``--v 4`` or
``--zap-log-level debug``; a line per request at INFO would cost the request path more than the
rest of its logging together); a rejected or failed one at INFO, or WARNING for server-side
errors. With ``--zap-encoder json`` the fields are keys of the JSON object (``request_id``,
``objective``, ``priority``, ``fairness_id``, ``model``, ``target_model``, ``endpoint``,
``outcome``, ``status``, ``wait_s``, ``ttft_s``, ``duration_s``).

A fault can fail every request (an endpoint gone, a pool saturated): error lines are limited to
``RATE`` a second, and the first line after a limited second says how many were dropped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("endpoint_picker.request")

RATE = 20  # error lines per second


class _Limiter:
    """At most ``rate`` lines per one-second window; counts what it drops."""

    def __init__(self, rate: int, now: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.now = now  # seconds; tests set a fixed clock
        self.window = 0
        self.used = 0
        self.dropped = 0

    def allow(self) -> int | None:
        """None: drop this line. Otherwise how many were dropped before it (to report)."""
        now = int(self.now())
        if now != self.window:
            self.window, self.used = now, 0
        if self.used >= self.rate:
            self.dropped += 1
            return None
        self.used += 1
        dropped, self.dropped = self.dropped, 0
        return dropped


_limiter = _Limiter(RATE)


def _fields(request: Any, endpoint: str, outcome: str, status: int) -> dict[str, Any]:
    if request is None:
        return {"endpoint": endpoint, "outcome": outcome, "status": status}
    return {
        "request_id": request.request_id,
        "objective": request.objective or "",
        "priority": request.priority,
        "fairness_id": request.fairness_id,
        "model": request.incoming_model,
        "target_model": request.target_model,
        "endpoint": endpoint,
        "outcome": outcome,
        "status": status,
    }


def _emit(level: int, msg: str, fields: dict[str, Any]) -> None:
    if level > logging.DEBUG:
        dropped = _limiter.allow()
        if dropped is None:
            return
        if dropped:
            fields["dropped_lines"] = dropped
    text = " ".join(f"{k}={v}" for k, v in fields.items())
    log.log(level, "%s %s", msg, text, extra=fields)


def finished(
    request: Any,
    endpoint: str,
    outcome: str,
    status: int,
    *,
    wait: float,
    ttft: float | None,
    duration: float,
) -> None:
    """A dispatched request ended (``outcome``: ``completed`` or an error code)."""
    level = logging.DEBUG if outcome == "completed" else logging.INFO
    if not log.isEnabledFor(level):
        return
    fields = _fields(request, endpoint, outcome, status)
    fields["wait_s"] = round(wait, 4)
    fields["ttft_s"] = round(ttft, 4) if ttft is not None else None
    fields["duration_s"] = round(duration, 4)
    _emit(level, "request finished", fields)


def rejected(request: Any, code: str, message: str, status: int, *, wait: float) -> None:
    """A request was answered by the EPP itself (400, 404, 429, 503, 500, ...)."""
    level = logging.WARNING if status >= 500 else logging.INFO
    if not log.isEnabledFor(level):
        return
    fields = _fields(request, "", code, status)
    fields["wait_s"] = round(wait, 4)
    fields["error"] = message
    _emit(level, "request rejected", fields)
