"""What the ext_proc front needs from the director: plain Python values, no protobuf.

The front is a translator. It turns Envoy's messages into these calls and the answers back into
Envoy's messages; every decision (admission, scheduling, accounting) is behind this line, so the
same director can serve other fronts (an in-process transport, a cheaper side-call) unchanged.
``endpoint_picker.director.Director`` satisfies this protocol.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

from endpoint_picker.requests.types import InferenceRequest


class RoutingContext(Protocol):
    """One request's routing answer, as the front reads it."""

    request: InferenceRequest
    destination: str  # comma-joined "ip:port" list, primary first
    body: bytes  # the request body to forward (may differ from what came in)
    headers_to_set: dict[str, str]  # extra request headers beyond the destination


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

    def handle_response_headers(self, ctx: C, headers: dict[str, str]) -> dict[str, str]:
        """Extra response headers to set (may be empty)."""
        ...

    def handle_response_body(self, ctx: C, chunk: bytes, end_of_stream: bool) -> bytes:
        """The chunk to send on (a model-name rewrite may change it)."""
        ...

    def finish(self, ctx: C, *, error: BaseException | None = None) -> None:
        """Called exactly once per context, also on stream errors and disconnects."""
        ...
