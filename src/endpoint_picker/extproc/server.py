"""The ext_proc gRPC server and its separate, plaintext health server.

``ExtProcServer`` owns two grpc.aio servers on the running event loop: the ext_proc port
(``envoy.service.ext_proc.v3.ExternalProcessor/Process``, TLS by default as upstream) and the
health port (``grpc.health.v1``). Handlers are registered generically with the request
deserializer only; answers are pre-serialized bytes (see ``messages``), which saves a protobuf
object and a serializer call per message on the hottest path of the EPP.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import grpc

from endpoint_picker.director_api import DirectorLike
from endpoint_picker.extproc import health, tls
from endpoint_picker.extproc import stream_metrics as stream_metrics_module
from endpoint_picker.extproc.messages import ProcessingRequest
from endpoint_picker.extproc.stream import DEFAULT_MAX_BODY_BYTES, StreamFailed, handle_stream

log = logging.getLogger(__name__)

EXT_PROC_SERVICE = health.EXT_PROC_SERVICE

T = TypeVar("T")

_OPTIONS = [
    # grpcio turns SO_REUSEPORT on by default: a second EPP on the same port would start and
    # silently take half of the streams. One port, one EPP.
    ("grpc.so_reuseport", 0),
    # BUFFERED bodies arrive in one message; Envoy caps them at its buffer limit (1 MiB default).
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
]


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved, so an orphaned call's error is not logged as unhandled


async def shielded(call: Awaitable[T]) -> T:
    """``call`` (a read or write on the stream) in a task of its own that the stream's cancel
    cannot reach.

    Envoy ends most ext_proc streams by resetting them, and grpc-python then cancels the
    handler. When that cancel reaches the task awaiting a read's or a write's batch,
    grpc-python drops the batch without freeing its native op array (grpc/grpc#43360, open in
    grpcio 1.85): about 100 bytes a stream, which the 30-minute soak showed as steady RSS
    growth. Shielded, the call's own task outlives the cancel, its batch completes, and the
    array is freed.
    """
    task = asyncio.ensure_future(call)
    task.add_done_callback(_retrieve)
    return await asyncio.shield(task)


async def shielded_read(context: grpc.aio.ServicerContext[Any, Any]) -> Any:
    """``context.read()``, :func:`shielded`."""
    return await shielded(context.read())


async def until_closed(context: grpc.aio.ServicerContext[Any, Any]) -> None:
    """Wait for Envoy to end the stream (half-close or reset) once the exchange is done.

    Returning first makes grpc-python send the status at once, on a call Envoy may already
    have reset at the same moment; that batch fails, and grpc-python leaks it as well (the
    same issue). Waiting, the handler ends by Envoy's reset (cancelled: no status is sent) or
    by its half-close (the status goes to an open call).
    """
    while await shielded_read(context) is not grpc.aio.EOF:
        pass  # nothing follows the response's end; anything that does needs no answer


class ExtProcServer:
    """Envoy's external processor, translating streams into calls on ``director``.

    ``port``/``health_port`` 0 pick free ports (read back from ``.port``/``.health_port`` after
    ``start``); ``health_port=None`` runs no health server. ``ready`` answers the ``readiness``
    probe (default: always ready once started). Request bodies over ``max_body_bytes`` are
    answered 413.
    """

    def __init__(
        self,
        director: DirectorLike[Any],
        *,
        host: str = "127.0.0.1",
        port: int = 9002,
        health_port: int | None = 9003,
        secure: bool = True,
        cert_path: str | Path | None = None,
        ready: Callable[[], bool] | None = None,
        cert_reload: bool = False,
        max_recv: int | None = None,
        max_send: int | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        stream_metrics: bool = False,
    ) -> None:
        self.director = director
        # --enable-grpc-stream-metrics: llm-d-router's ext_proc stream series (stream_metrics.py)
        self._stream_metrics = stream_metrics_module.enable() if stream_metrics else None
        self.max_body_bytes = max_body_bytes
        self.cert_reload = cert_reload
        self._options = _OPTIONS + [
            (key, size)
            for key, size in (
                ("grpc.max_receive_message_length", max_recv),
                ("grpc.max_send_message_length", max_send),
            )
            if size is not None
        ]
        self.host = host
        self.port = port
        self.health_port = health_port
        self.secure = secure
        self.cert_path = cert_path
        self._ready = ready
        self._server: grpc.aio.Server | None = None
        self._health: health.HealthServer | None = None
        self._started = False

    def ready(self) -> bool:
        """True once serving and while the readiness callable (if any) agrees."""
        return self._started and (self._ready is None or self._ready())

    async def _process(
        self, request_iterator: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        metrics = self._stream_metrics
        if metrics is not None:
            started = metrics.started()

            def done(ctx: Any) -> None:
                # At the RPC's end: an aborted stream has its code, a cancelled one Canceled, the
                # rest OK. (grpc-python ends a read on a client's cancel like a half-close, so a
                # stream Envoy drops mid-way usually counts OK here where Go says Canceled.)
                code = grpc.StatusCode.CANCELLED if ctx.cancelled() else ctx.code()
                metrics.finished(code or grpc.StatusCode.OK, started)

            context.add_done_callback(done)
        await self._handle(context)

    async def _handle(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        try:
            ended = False

            async def read() -> Any:
                nonlocal ended
                message = await shielded_read(context)
                ended = message is grpc.aio.EOF
                return message

            await handle_stream(
                self.director,
                read,
                lambda message: shielded(context.write(message)),
                max_body_bytes=self.max_body_bytes,
            )
            if not ended:
                await until_closed(context)
        except StreamFailed as err:
            await context.abort(err.code, err.details)
        except grpc.aio.AbortError:
            raise
        except Exception as err:
            log.exception("ext_proc stream failed")
            await context.abort(grpc.StatusCode.INTERNAL, f"ext_proc stream failed: {err!r}")

    def _bind(self, server: grpc.aio.Server, port: int, creds: Any) -> int:
        return health.bind(server, f"{self.host}:{port}", creds)

    async def start(self) -> None:
        """Bind both ports and start serving."""
        creds = None
        if self.secure and self.cert_reload and self.cert_path:
            creds = tls.reloading_credentials(self.cert_path)
        elif self.secure:
            key, cert = tls.load(self.cert_path) if self.cert_path else tls.self_signed()
            creds = grpc.ssl_server_credentials([(key, cert)])
        # Later options win in gRPC's channel args: the flags' sizes override the defaults.
        server = grpc.aio.server(options=self._options)
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    EXT_PROC_SERVICE,
                    {
                        "Process": grpc.stream_stream_rpc_method_handler(
                            self._process, request_deserializer=ProcessingRequest.FromString
                        )
                    },
                ),
            )
        )
        self.port = self._bind(server, self.port, creds)
        health_server = None
        if self.health_port is not None:
            health_server = health.HealthServer(self.host, self.health_port, self.ready)
            health_server.bind()
            self.health_port = health_server.port
        await server.start()
        if health_server is not None:
            await health_server.start()
        self._server, self._health = server, health_server
        self._started = True
        log.info(
            "ext_proc listening on %s:%d (%s), health on %s",
            self.host,
            self.port,
            "TLS" if self.secure else "plaintext",
            self.health_port,
        )

    async def stop(self, grace: float | None = 1.0) -> None:
        """Stop serving; streams still open after ``grace`` seconds are cancelled."""
        self._started = False
        if self._server is not None:
            await self._server.stop(grace)
        if self._health is not None:
            await self._health.stop(grace)
        self._server = self._health = None
