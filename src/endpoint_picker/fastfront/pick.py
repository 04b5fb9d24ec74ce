"""The pick endpoint: Envoy's ext_authz HTTP side-call, answered by the director.

A small ``asyncio.Protocol`` with ``httptools`` (the parser uvicorn uses) instead of a web
framework: this is the hottest path of the fast front, and per request it costs one parse, one
task and one pre-formatted write. Envoy sends the client's headers and whole body to
``/pick<client path>``; the answer is 200 with the destination header (and the ticket the
access log will carry back), or the director's error status and body, which ext_authz hands to
the client unchanged. Errors without an HTTP status (and crashes) abort the connection, so
Envoy's failure mode applies, as a failed ext_proc stream does.

Envoy does not pipeline on its HTTP/1.1 upstream connections; should a client do it, requests
wait in a backlog and are answered in order. Reading is never paused, so a connection lost
mid-pick (the client went away, Envoy gave up) is seen at once and cancels the pick: flow
control drops the request from its queue.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any, cast

import httptools

from endpoint_picker.director_api import DirectorLike
from endpoint_picker.envoy.fast import PICK_PATH_PREFIX, STATUS_STANDINS, TICKET_HEADER
from endpoint_picker.errors import InferenceError
from endpoint_picker.fastfront.complete import Completions
from endpoint_picker.pd_headers import SIDECAR_HEADERS
from endpoint_picker.requests.types import DESTINATION_HEADER, REQUEST_ID_HEADER

log = logging.getLogger(__name__)

_PREFIX = PICK_PATH_PREFIX.encode()
_PREFIX_LEN = len(_PREFIX)
_HEALTH_PATHS = (b"/healthz", b"/readyz")


def _status_line(status: int) -> bytes:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    return f"HTTP/1.1 {status} {reason}\r\n".encode()


def error_response(status: int, body: str, keep_alive: bool = True) -> bytes:
    """What ext_authz passes to the client: the ext_proc front's ImmediateResponse, as HTTP."""
    data = body.encode()
    close = b"" if keep_alive else b"connection: close\r\n"
    return (
        _status_line(status)
        + b"content-type: text/plain\r\ncontent-length: "
        + str(len(data)).encode()
        + b"\r\n"
        + close
        + b"\r\n"
        + data
    )


def ok_response(
    destination: str,
    ticket: str | None,
    request_id: str | None,
    keep_alive: bool = True,
    extra: Mapping[str, str] | None = None,
) -> bytes:
    """The pick's 200: the destination, ticket, request id and ``extra`` headers (the EPP's
    P/D sidecar headers, which Envoy copies onto the upstream request)."""
    parts = [
        "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n",
        DESTINATION_HEADER,
        ": ",
        destination,
        "\r\n",
    ]
    if ticket is not None:
        parts += [TICKET_HEADER, ": ", ticket, "\r\n"]
    if request_id is not None:
        parts += [REQUEST_ID_HEADER, ": ", request_id, "\r\n"]
    for name, value in (extra or {}).items():
        parts += [name, ": ", value, "\r\n"]
    if not keep_alive:
        parts.append("connection: close\r\n")
    parts.append("\r\n")
    return "".join(parts).encode("utf-8", "surrogateescape")


class PickProtocol(asyncio.Protocol):
    """One HTTP/1.1 connection from Envoy's ext_authz client."""

    def __init__(
        self,
        director: DirectorLike[Any],
        completions: Completions,
        ready: Callable[[], bool],
        connections: set[PickProtocol] | None = None,
    ) -> None:
        self.director = director
        self.connections = connections if connections is not None else set()
        self.completions = completions
        self.ready = ready
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.task: asyncio.Task[None] | None = None
        # The loop, looked up once per connection: get_running_loop() makes a getpid() system
        # call each time on CPython 3.11 (fork detection), once per pick otherwise.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._url = b""
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._backlog: deque[tuple[dict[str, str] | None, bytes, bool]] = deque()

    # -- asyncio.Protocol --------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = cast(asyncio.Transport, transport)
        self._loop = asyncio.get_running_loop()
        self.connections.add(self)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._reject(400, "upgrades are not supported")
        except httptools.HttpParserError as err:
            self._reject(400, f"malformed HTTP request: {err}")

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.connections.discard(self)
        if self.task is not None and not self.task.done():
            self.task.cancel()

    # -- httptools callbacks ---------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = {}
        self._body = []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("utf-8", "surrogateescape")
        prev = self._headers.get(key)
        self._headers[key] = text if prev is None else f"{prev},{text}"

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        keep_alive = self.parser.should_keep_alive()
        url = self._url
        if not url.startswith(_PREFIX):
            job: tuple[dict[str, str] | None, bytes, bool] = (None, url, keep_alive)
        else:
            headers = self._headers
            headers[":path"] = url[_PREFIX_LEN:].decode("utf-8", "surrogateescape") or "/"
            headers[":method"] = self.parser.get_method().decode("latin-1")
            host = headers.get("host")
            if host is not None:
                headers[":authority"] = host
            job = (headers, body, keep_alive)
        if (self.task is not None and not self.task.done()) or self._backlog:
            self._backlog.append(job)  # pipelined: answered in order
        else:
            self._run(job)

    def _run(self, job: tuple[dict[str, str] | None, bytes, bool]) -> None:
        headers, data, keep_alive = job
        if headers is None:
            self._write(self._local(data), keep_alive)
        else:
            loop = self._loop or asyncio.get_running_loop()
            self.task = loop.create_task(self._pick(headers, data, keep_alive))

    def _next(self) -> None:
        while self._backlog and self.transport is not None:
            self._run(self._backlog.popleft())
            if self.task is not None and not self.task.done():
                return

    # -- answers -----------------------------------------------------------------------------------
    def _local(self, url: bytes) -> bytes:
        path = url.split(b"?", 1)[0]
        if path in _HEALTH_PATHS:
            if self.ready():
                return b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
            return error_response(503, "not ready")
        return error_response(404, "not found")

    async def _pick(self, headers: dict[str, str], body: bytes, keep_alive: bool) -> None:
        try:
            await self._answer(headers, body, keep_alive)
        finally:
            if self._backlog:
                (self._loop or asyncio.get_running_loop()).call_soon(self._next)

    async def _answer(self, headers: dict[str, str], body: bytes, keep_alive: bool) -> None:
        try:
            ctx = await self.director.handle_request(headers, body, has_body=len(body) > 0)
        except InferenceError as err:
            status = err.http_status
            if status is None or (status >= 500 and status not in STATUS_STANDINS):
                self._abort()  # no HTTP mapping: fail the side-call, Envoy's failure mode applies
            else:
                wire = STATUS_STANDINS.get(status, status)
                self._write(error_response(wire, err.body, keep_alive), keep_alive)
            return
        except asyncio.CancelledError:
            return  # Envoy went away (client disconnect or timeout): the director counted it
        except Exception:
            log.exception("director failed on request %s", headers.get(REQUEST_ID_HEADER))
            self._abort()
            return
        # A header-only pick is finished at once: nothing to complete.
        ticket = None if ctx.finished else self.completions.add(ctx)
        rid = ctx.request.request_id
        if self.transport is None or self.transport.is_closing():
            if ticket is not None:
                self.completions.discard(ticket, ConnectionError("side-call closed before answer"))
            return
        destination = ctx.destination.split(",", 1)[0]
        request_id = rid if rid and rid != headers.get(REQUEST_ID_HEADER) else None
        sidecar = {k: v for k, v in ctx.headers_to_set.items() if k in SIDECAR_HEADERS}
        self._write(ok_response(destination, ticket, request_id, keep_alive, sidecar), keep_alive)

    def _write(self, data: bytes, keep_alive: bool) -> None:
        transport = self.transport
        if transport is None:
            return
        transport.write(data)
        if not keep_alive:
            transport.close()

    def _reject(self, status: int, reason: str) -> None:
        if self.transport is not None:
            self.transport.write(error_response(status, reason, keep_alive=False))
            self.transport.close()

    def abort(self) -> None:
        """Close the connection now (at shutdown); a pick in progress is cancelled."""
        self._abort()

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
