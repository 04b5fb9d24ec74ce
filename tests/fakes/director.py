"""A FAKE director for testing fronts (ext_proc stream and server, fast front pick and completion)
without flow control or scheduling: it routes to fixed destinations and records every call.

One fake for every front's tests, so it speaks exactly ``endpoint_picker.director_api``'s
``DirectorLike``: when that protocol changes, this is the one fake to change, and mypy says so.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from endpoint_picker.requests.types import InferenceRequest, Usage

DEFAULT_DESTINATION = "10.0.0.1:8000"
GENERATED_ID = "generated-id"  # the request id when neither the client nor the test sets one


@dataclass(eq=False)
class FakeContext:
    """A ``RoutingContext`` that also keeps what the response path brought."""

    request: InferenceRequest
    destination: str
    body: bytes
    headers_to_set: dict[str, str] = field(default_factory=dict)
    finished: bool = False
    chunks: list[tuple[bytes, bool]] = field(default_factory=list)
    response_headers: dict[str, str] = field(default_factory=dict)


class FakeDirector:
    """A FAKE director: picks ``destinations`` in turn, records every call, fails on request.

    Knobs: ``error`` (raised by handle_request), ``hold`` (an event handle_request waits for),
    ``rewrite_body`` / ``rewrite_response`` (bytes -> bytes, for the forwarded request body and
    each response chunk), ``response_headers_to_set``, ``request_id`` (forces the id the context
    carries, as a parser that generated one would).

    Records: ``calls`` (every call in order: ``("request", headers, body, has_body, hint)``,
    ``("response_only",)``, ``("response_headers", headers)``, ``("response_body", chunk,
    eos)``), ``requests`` (the request calls' arguments), ``recorded`` (``record_response``),
    ``finished`` (``(ctx, error)``; ``finished_event`` is set on each), ``cancelled`` (picks
    cancelled while held).
    """

    def __init__(self, destinations: Sequence[str] = (DEFAULT_DESTINATION,)) -> None:
        self.destinations = list(destinations)
        self._next = 0
        self.error: BaseException | None = None
        self.hold: asyncio.Event | None = None
        self.rewrite_body: Callable[[bytes], bytes] | None = None
        self.rewrite_response: Callable[[bytes], bytes] | None = None
        self.response_headers_to_set: dict[str, str] = {}
        self.request_id: str | None = None
        self.calls: list[tuple[Any, ...]] = []
        self.requests: list[tuple[dict[str, str], bytes, bool, list[str] | None]] = []
        self.recorded: list[tuple[FakeContext, int, float | None, Usage | None]] = []
        self.cancelled = 0
        self.finished: list[tuple[FakeContext, BaseException | None]] = []
        self.finished_event = asyncio.Event()

    async def handle_request(
        self,
        headers: dict[str, str],
        body: bytes,
        *,
        has_body: bool = True,
        subset_hint: list[str] | None = None,
    ) -> FakeContext:
        self.calls.append(("request", headers, body, has_body, subset_hint))
        self.requests.append((headers, body, has_body, subset_hint))
        if self.hold is not None:
            try:
                await self.hold.wait()
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        if self.error is not None:
            raise self.error
        dest = self.destinations[self._next % len(self.destinations)]
        self._next += 1
        rid = self.request_id or headers.get("x-request-id") or GENERATED_ID
        forward = self.rewrite_body(body) if self.rewrite_body else body
        request = InferenceRequest(request_id=rid, headers=headers)
        # As the real director: a header-only request has no books to close.
        return FakeContext(request, dest, forward, finished=not has_body)

    def response_only(self) -> FakeContext:
        self.calls.append(("response_only",))
        return FakeContext(InferenceRequest(request_id="", headers={}), "", b"")

    def handle_response_headers(self, ctx: FakeContext, headers: dict[str, str]) -> dict[str, str]:
        self.calls.append(("response_headers", headers))
        ctx.response_headers = headers
        return dict(self.response_headers_to_set)

    def handle_response_body(self, ctx: FakeContext, chunk: bytes, end_of_stream: bool) -> bytes:
        self.calls.append(("response_body", chunk, end_of_stream))
        ctx.chunks.append((chunk, end_of_stream))
        return self.rewrite_response(chunk) if self.rewrite_response else chunk

    def record_response(
        self,
        ctx: FakeContext,
        *,
        response_bytes: int,
        duration_s: float | None = None,
        usage: Usage | None = None,
    ) -> None:
        self.recorded.append((ctx, response_bytes, duration_s, usage))

    def finish(self, ctx: FakeContext, *, error: BaseException | None = None) -> None:
        self.finished.append((ctx, error))
        self.finished_event.set()
