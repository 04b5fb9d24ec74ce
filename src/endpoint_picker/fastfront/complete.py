"""The response path without a per-request stream: tickets in, access-log entries out.

Every picked request gets a ticket (a header Envoy copies onto the request and logs); the
request's context waits here until its access-log entry arrives, then the director finishes it
with what Envoy saw: status, served endpoint, response bytes, duration. Entries for tickets we
do not hold (another EPP, a restart, a client's guess: clients cannot set the header, Envoy
strips it) are ignored and counted. A sweeper finishes contexts whose entry never comes (Envoy
restarted, the log stream dropped), after ``sweep_after_s``, so in-flight load never leaks.

Envoy logs no response body here, so token usage is *estimated* (prompt characters / 4, and
response bytes / 4 capped by ``max_tokens``) and counted in ``USAGE_ESTIMATED``.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import Any

from endpoint_picker import metrics as m
from endpoint_picker.clock import SYSTEM_CLOCK, Clock
from endpoint_picker.director_api import DirectorLike, RoutingContext
from endpoint_picker.fastfront import metrics as fm
from endpoint_picker.requests.types import CHARS_PER_TOKEN, DESTINATION_SERVED_HEADER, Usage

log = logging.getLogger(__name__)


class NoResponse(Exception):
    """Given to ``finish`` when Envoy logged the request without a response (status 0)."""


class NeverLogged(Exception):
    """Given to ``finish`` by the sweeper: no access-log entry came for the request in time."""


@dataclass(frozen=True, slots=True)
class Entry:
    """What one access-log entry says about one request (transport-free, for the registry)."""

    ticket: str  # "" when the request never got one (the client left during the side-call)
    status: int  # 0: no response was sent (reset, client gone)
    served: str | None  # upstream "ip:port" Envoy connected to
    response_bytes: int
    duration_s: float | None  # downstream start to last byte sent, as Envoy measured it
    flags: str = ""
    request_id: str = ""  # x-request-id, to match an entry that carries no ticket


def estimate_usage(ctx: RoutingContext, response_bytes: int) -> Usage:
    req = ctx.request
    prompt = -(-len(req.prompt_text) // CHARS_PER_TOKEN)
    completion = response_bytes // CHARS_PER_TOKEN
    if req.max_tokens is not None:
        completion = min(completion, req.max_tokens)
    return Usage(prompt_tokens=prompt, completion_tokens=completion, estimated=True)


class Completions:
    """Picked requests waiting for their access-log entry, by ticket."""

    def __init__(
        self,
        director: DirectorLike[Any],
        *,
        clock: Clock = SYSTEM_CLOCK,
        sweep_after_s: float = 330.0,
    ) -> None:
        self.director = director
        self.clock = clock
        self.sweep_after_s = sweep_after_s
        # Insertion order is deadline order (one timeout for all), so the sweeper stops early.
        self._pending: dict[str, tuple[RoutingContext, float]] = {}
        # A client that leaves while the side-call's answer is on its way: Envoy drops the
        # answer, so the request is logged without the ticket. Its x-request-id (Envoy's, sent
        # to the pick) still names it.
        self._tickets: dict[str, str] = {}
        self.completed = 0
        self.unknown = 0
        self.swept = 0
        self._estimates: dict[tuple[str, str], Any] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, ctx: RoutingContext) -> str:
        """Hold ``ctx`` until its entry arrives; returns the ticket Envoy must log."""
        # Unguessable (96 random bits): a ticket is all an access-log entry needs to finish a
        # request, so a sequential one could be forged by whoever reaches the ALS port.
        ticket = secrets.token_hex(12)
        self._pending[ticket] = (ctx, self.clock.now() + self.sweep_after_s)
        request_id = ctx.request.request_id
        if request_id:
            self._tickets[request_id] = ticket
        fm.PENDING.inc()
        return ticket

    def _pop(self, ticket: str) -> tuple[RoutingContext, float] | None:
        held = self._pending.pop(ticket, None)
        if held is not None:
            request_id = held[0].request.request_id
            if self._tickets.get(request_id) == ticket:
                del self._tickets[request_id]
        return held

    def discard(self, ticket: str, error: BaseException) -> None:
        """The pick answer never reached Envoy: finish now, no entry will come."""
        held = self._pop(ticket)
        if held is not None:
            fm.PENDING.dec()
            self.director.finish(held[0], error=error)

    def complete(self, entry: Entry) -> bool:
        """Finish the request ``entry`` is about; False (and counted) when unknown."""
        ticket = entry.ticket or self._tickets.get(entry.request_id, "")
        held = self._pop(ticket) if ticket else None
        if held is None:
            self.unknown += 1
            fm.ENTRIES_UNKNOWN.inc()
            return False
        fm.PENDING.dec()
        ctx = held[0]
        error: BaseException | None = None
        try:
            if entry.status:
                headers = {":status": str(entry.status)}
                if entry.served:
                    headers[DESTINATION_SERVED_HEADER] = entry.served
                self.director.handle_response_headers(ctx, headers)
            else:
                error = NoResponse(f"no response sent (flags {entry.flags or '-'})")
            if not ctx.finished:
                # Envoy's own duration (client's first byte to last byte sent), without the
                # access-log flush delay; this front cannot see the body, so usage is a guess.
                self.director.record_response(
                    ctx,
                    response_bytes=entry.response_bytes,
                    duration_s=entry.duration_s,
                    usage=estimate_usage(ctx, entry.response_bytes),
                )
                self._estimated(ctx.request).inc()
        finally:
            self.director.finish(ctx, error=error)
        self.completed += 1
        fm.ENTRIES_COMPLETED.inc()
        return True

    def _estimated(self, req: Any) -> Any:
        """``USAGE_ESTIMATED``'s child for the request's models, looked up once per pair."""
        key = (req.incoming_model, req.target_model)
        child = self._estimates.get(key)
        if child is None:
            if len(self._estimates) >= 10_000:  # label sets follow the models clients name
                self._estimates.clear()
            child = self._estimates[key] = m.USAGE_ESTIMATED.labels(*key)
        return child

    def sweep(self) -> int:
        """Finish contexts whose deadline passed; returns how many."""
        now = self.clock.now()
        expired: list[tuple[str, RoutingContext]] = []
        for ticket, (ctx, deadline) in self._pending.items():
            if deadline > now:
                break
            expired.append((ticket, ctx))
        for ticket, ctx in expired:
            self._pop(ticket)
            fm.PENDING.dec()
            fm.SWEPT.inc()
            self.director.finish(ctx, error=NeverLogged("no access-log entry in time"))
        if expired:
            log.warning("finished %d requests whose access-log entry never came", len(expired))
        self.swept += len(expired)
        return len(expired)

    def finish_all(self, error: BaseException) -> None:
        """At shutdown: close every open context's books."""
        pending, self._pending = self._pending, {}
        self._tickets.clear()
        for ctx, _ in pending.values():
            fm.PENDING.dec()
            self.director.finish(ctx, error=error)
