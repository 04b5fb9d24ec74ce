"""One ext_proc ``Process`` stream, which is one HTTP request: Envoy's messages in, answers out.

The order follows upstream's handler (``pkg/epp/handlers/server.go``): request headers are held
until the whole body is in (FULL_DUPLEX_STREAMED) so the director can read it; then the routing
answer goes out, headers first and the body back in <= 62,000-byte ``streamed_response`` chunks.
In BUFFERED mode Envoy waits for the header answer before it sends the body, so the headers are
answered with "continue" and the routing mutation rides on the body answer (Envoy still holds
the headers). Response chunks are handed to the director and sent on one by one, never
collected, so server-sent events flow as they are produced; a non-streaming answer (JSON) is
held in FULL_DUPLEX_STREAMED mode and answered once at its end, as upstream does, so a model-name
rewrite sees the whole body. Response headers are answered as upstream's: the marker
``x-went-into-resp-headers: true`` and the backend's headers re-set. A stream that begins with
the response (Envoy processing only the response phase) is answered the same way, through a
director context with no request (``response_only``): nothing was routed, but the usage is still
counted and reported, as upstream's. What response-body plugins report
(``request-attribute-reporter``) rides on body answers as dynamic metadata; with
``--emit-endpoint-scores`` the routing answer's ``envoy.lb`` metadata carries every candidate's
score.

Request bodies are bounded (``max_body_bytes``, 16 MiB by default as the fast front's
``max_request_bytes``): in FULL_DUPLEX_STREAMED mode Envoy streams a body of any size, and
collecting it whole let one chunked upload grow the EPP by its size. Past the bound the client
gets 413 and the rest is not read.

The stream's I/O is two callables (``read`` returning a message or ``EOF``, ``write`` taking
bytes) so the state machine runs the same under grpc.aio and in unit tests.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2

from endpoint_picker.director_api import DirectorLike, RoutingContext
from endpoint_picker.errors import InferenceError
from endpoint_picker.extproc import messages as m
from endpoint_picker.metrics import FRONT_REJECTED
from endpoint_picker.requests.types import DESTINATION_SERVED_HEADER, REQUEST_ID_HEADER

log = logging.getLogger(__name__)

_Mode = processing_mode_pb2.ProcessingMode.BodySendMode
NONE = _Mode.Value("NONE")
STREAMED = _Mode.Value("STREAMED")
BUFFERED = _Mode.Value("BUFFERED")
DUPLEX = _Mode.Value("FULL_DUPLEX_STREAMED")
_SUPPORTED_REQUEST_MODES = frozenset({NONE, BUFFERED, DUPLEX})
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024

Read = Callable[[], Awaitable[Any]]
Write = Callable[[bytes], Awaitable[None]]


class StreamFailed(Exception):
    """End the stream with a gRPC error, so Envoy's failure mode (open/close) applies."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


class ResponseIncomplete(Exception):
    """Given to ``finish`` when the stream ended before the response's end was seen."""


async def handle_stream(
    director: DirectorLike[Any],
    read: Read,
    write: Write,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> None:
    """Run one stream to its end. Raises ``StreamFailed`` to fail it."""
    eof = grpc.aio.EOF
    msg = await read()
    if msg is eof:
        return
    if msg.WhichOneof("request") == "response_headers":
        mode = msg.protocol_config.response_body_mode if msg.HasField("protocol_config") else DUPLEX
        first: list[Any] = [msg]

        async def read_from_first() -> Any:
            return first.pop() if first else await read()

        await _respond(director, director.response_only(), read_from_first, write, mode, [])
        return
    if msg.WhichOneof("request") != "request_headers":
        raise StreamFailed(
            grpc.StatusCode.FAILED_PRECONDITION,
            "the first ext_proc message must be request headers (request_header_mode: SEND)",
        )
    if msg.HasField("protocol_config"):
        request_mode = msg.protocol_config.request_body_mode
        response_mode = msg.protocol_config.response_body_mode
    else:  # an Envoy too old to say: assume upstream's configuration
        request_mode = response_mode = DUPLEX
    if request_mode not in _SUPPORTED_REQUEST_MODES:
        raise StreamFailed(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"request_body_mode {_Mode.Name(request_mode)} is not supported: "
            "use FULL_DUPLEX_STREAMED (default) or BUFFERED",
        )
    hdrs = msg.request_headers
    headers = m.header_map(hdrs.headers)
    hint = m.subset_hint(msg)

    if hdrs.end_of_stream or request_mode == NONE:
        ctx = await _route(director, write, headers, b"", False, hint)
        if ctx is None:
            return
        await _respond(director, ctx, read, write, response_mode, _answer_headers(ctx, headers))
        return

    if request_mode == BUFFERED:
        await write(m.REQUEST_HEADERS_CONTINUE)
    chunks: list[bytes] = []
    size = 0
    trailers = False
    while True:
        msg = await read()
        if msg is eof:
            return  # the client went away before its body was complete
        kind = msg.WhichOneof("request")
        if kind == "request_body":
            part = msg.request_body
            size += len(part.body)
            if size > max_body_bytes:
                FRONT_REJECTED.labels("extproc", "body_too_large").inc()
                log.info("request body over %d bytes: 413", max_body_bytes)
                await write(
                    m.immediate(413, f"request body too large (over {max_body_bytes} bytes)")
                )
                return
            chunks.append(part.body)
            if part.end_of_stream:
                break
        elif kind == "request_trailers":
            trailers = True
            break
        else:
            raise StreamFailed(grpc.StatusCode.INTERNAL, f"unexpected {kind} in the request body")
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    ctx = await _route(director, write, headers, body, True, hint)
    if ctx is None:
        return
    if request_mode == BUFFERED:
        changed = ctx.body is not body and ctx.body != body
        hs = m.routing_headers(
            ctx.destination, _extra(ctx, headers), len(ctx.body) if changed else None
        )
        answers = [
            m.route_on_body(ctx.destination, hs, ctx.body if changed else None, _scores(ctx))
        ]
    else:
        answers = _answer_headers(ctx, headers, len(ctx.body))
        answers.extend(m.streamed_chunks(m.REQUEST_BODY_FIELD, ctx.body, not trailers))
    if trailers:
        answers.append(m.REQUEST_TRAILERS_CONTINUE)
    await _respond(director, ctx, read, write, response_mode, answers)


def _extra(ctx: RoutingContext, headers: dict[str, str]) -> dict[str, str]:
    """The request headers to set besides the destination, as upstream's ``generateHeaders``:
    the client's headers re-set (pseudo-headers and ``host`` left to Envoy; system-owned ones
    are dropped by ``routing_headers``), the director's extras over them, and the request id
    when the director made one up."""
    out = {k: v for k, v in headers.items() if not k.startswith(":") and k != "host"}
    out.update(ctx.headers_to_set)
    rid = ctx.request.request_id
    if rid and headers.get(REQUEST_ID_HEADER) != rid:
        out[REQUEST_ID_HEADER] = rid
    return out


def _answer_headers(
    ctx: RoutingContext, headers: dict[str, str], content_length: int | None = None
) -> list[bytes]:
    hs = m.routing_headers(ctx.destination, _extra(ctx, headers), content_length)
    return [m.route_on_headers(ctx.destination, hs, _scores(ctx))]


def _scores(ctx: RoutingContext) -> dict[str, float] | None:
    """The per-endpoint scores the director kept (``--emit-endpoint-scores``), if any."""
    return getattr(ctx, "endpoint_scores", None)


async def _route(
    director: DirectorLike[Any],
    write: Write,
    headers: dict[str, str],
    body: bytes,
    has_body: bool,
    hint: list[str] | None,
) -> RoutingContext | None:
    """Ask the director; on a client-facing error answer Envoy directly and return None."""
    try:
        ctx: RoutingContext = await director.handle_request(
            headers, body, has_body=has_body, subset_hint=hint
        )
    except InferenceError as err:
        status = err.http_status
        if status is None:
            raise StreamFailed(grpc.StatusCode.UNKNOWN, err.body) from err
        await write(m.immediate(status, err.body))
        return None
    except Exception as err:
        log.exception("director failed on request headers=%s", headers.get(REQUEST_ID_HEADER))
        raise StreamFailed(grpc.StatusCode.INTERNAL, f"director failed: {err!r}") from err
    return ctx


async def _respond(
    director: DirectorLike[Any],
    ctx: RoutingContext,
    read: Read,
    write: Write,
    response_mode: int,
    answers: list[bytes],
) -> None:
    """Send the routing answers, then pass the response through; always ``finish`` once.

    Returns as soon as the response's last message is answered; the server then waits for
    Envoy to close the stream (``server.until_closed`` says why)."""
    eof = grpc.aio.EOF
    complete = False
    error: BaseException | None = None
    held: list[bytes] = []  # a non-streaming body, answered at its end (DUPLEX)
    try:
        for answer in answers:
            await write(answer)
        while True:
            msg = await read()
            if msg is eof:
                break
            kind = msg.WhichOneof("request")
            if kind == "response_body":
                part = msg.response_body
                chunk = part.body
                eos = part.end_of_stream
                # Contexts that cannot say whether they stream are passed through chunk by chunk.
                hold = response_mode == DUPLEX and not getattr(ctx, "streaming", True)
                if hold:
                    held.append(chunk)
                    if not eos:
                        continue  # FULL_DUPLEX_STREAMED needs no answer per chunk
                    chunk = b"".join(held)
                    held.clear()
                out = director.handle_response_body(ctx, chunk, eos)
                # Complete once the director saw the end: the client may already have read
                # the whole body (content-length) and gone before Envoy gets this answer.
                complete = complete or eos
                if response_mode == DUPLEX:
                    outs = m.streamed_chunks(m.RESPONSE_BODY_FIELD, out, eos)
                elif out is chunk or out == chunk:
                    outs = [m.RESPONSE_BODY_CONTINUE]
                else:
                    outs = [m.replaced_response_body(out)]
                await _write_body(ctx, write, outs)
                if eos:
                    break  # the response's last message: nothing more to answer
            elif kind == "response_headers":
                rh = msg.response_headers
                resp_headers = m.header_map(rh.headers)
                served = m.served_endpoint(msg)
                if served is not None:
                    resp_headers[DESTINATION_SERVED_HEADER] = served
                extra = director.handle_response_headers(ctx, resp_headers)
                complete = rh.end_of_stream or response_mode == NONE
                await write(m.response_headers(m.header_map(rh.headers), extra))
                if complete:
                    break
            elif kind == "response_trailers":
                if held:  # gRPC ends with trailers, not an end-of-stream body: flush, no EOS
                    out = director.handle_response_body(ctx, b"".join(held), True)
                    held.clear()
                    await _write_body(
                        ctx, write, m.streamed_chunks(m.RESPONSE_BODY_FIELD, out, False)
                    )
                complete = True
                await write(m.RESPONSE_TRAILERS_CONTINUE)
                break
            elif kind == "request_trailers":
                await write(m.REQUEST_TRAILERS_CONTINUE)
        if not complete:
            error = ResponseIncomplete("the ext_proc stream ended before the response did")
    except BaseException as exc:
        if not complete:
            error = exc
        raise
    finally:
        director.finish(ctx, error=error)


async def _write_body(ctx: RoutingContext, write: Write, answers: list[bytes]) -> None:
    """Send body answers; what response-body plugins reported (``request-attribute-reporter``)
    rides on the last one as dynamic metadata, as upstream's ``generateResponseBodyResponses``."""
    metadata = getattr(ctx, "response_metadata", None)
    if metadata:
        answers[-1] = m.with_metadata(answers[-1], metadata)
    for answer in answers:
        await write(answer)
