"""What a front needs from the director: plain Python values, no protobuf, no HTTP objects.

A front is a translator. It turns its protocol's messages (Envoy's ext_proc stream, the fast
front's ext_authz side-call and access log, an in-process transport) into these calls and the
answers back into its own messages; every decision (admission, scheduling, accounting) is behind
this line. The interface lives on the director's side, not in one front, so no front imports
another, and a front never writes the director's private fields: what it measured itself goes
through :meth:`DirectorLike.record_response`. ``endpoint_picker.director.Director`` satisfies
this protocol.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

from endpoint_picker.requests.types import InferenceRequest, Usage


class RoutingContext(Protocol):
    """One request's routing answer, as a front reads it."""

    request: InferenceRequest
    destination: str  # comma-joined "ip:port" list, primary first
    body: bytes  # the request body to forward (may differ from what came in)
    headers_to_set: dict[str, str]  # extra request headers beyond the destination
    finished: bool  # True once its books are closed (at once for a header-only request)


C = TypeVar("C", bound=RoutingContext)


class DirectorLike(Protocol[C]):
    """The director's request/response surface (see ``endpoint_picker.director``)."""

    async def handle_request(
        self,
        headers: dict[str, str],
        body: bytes,
        *,
        has_body: bool = True,
        subset_hint: list[str] | None = None,
    ) -> C:
        """Admit and schedule; raises ``InferenceError`` to answer the client directly."""
        ...

    def response_only(self) -> C:
        """A context for a stream that begins with the response (no request was routed):
        the front then passes the response through the calls below as for any other."""
        ...

    def handle_response_headers(self, ctx: C, headers: dict[str, str]) -> dict[str, str]:
        """Extra response headers to set (may be empty)."""
        ...

    def handle_response_body(self, ctx: C, chunk: bytes, end_of_stream: bool) -> bytes:
        """The chunk to send on (a model-name rewrite may change it)."""
        ...

    def record_response(
        self,
        ctx: C,
        *,
        response_bytes: int,
        duration_s: float | None = None,
        usage: Usage | None = None,
    ) -> None:
        """For a front that never sees the response body (the fast front): what its proxy
        measured (bytes sent, its own duration) and a usage estimate. Call before ``finish``."""
        ...

    def finish(self, ctx: C, *, error: BaseException | None = None) -> None:
        """Called exactly once per context, also on stream errors and disconnects."""
        ...
