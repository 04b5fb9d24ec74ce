"""Envoy's gRPC access-log service (``StreamAccessLogs``): the fast front's response path.

Each Envoy worker keeps one stream open and sends batches of HTTP entries, flushed every
``buffer_flush_interval`` or when its buffer fills. Per entry we read only what finishing a
request needs (ticket, status, upstream address, bytes, duration) and hand it to
``Completions``; protobuf parsing is per batch, so the cost per request is a few field reads.

When the last open stream closes, the Envoy that held the pending requests is gone (killed,
restarted): their entries will never come, so they are finished at once (``EnvoyGone``,
counted in ``endpoint_picker_fastfront_released_total``) instead of holding in-flight load
until the sweeper, which made the next critical request a 503. An Envoy that drains (hot
restart, graceful stop) flushes its entries before it closes its streams, so nothing it
served is lost; a request a *new* Envoy picked before its first flush is finished early,
which costs accuracy for a moment, never a leak.
"""

from __future__ import annotations

import logging
from typing import Any

import grpc
from envoy.service.accesslog.v3 import als_pb2

from endpoint_picker.envoy.fast import TICKET_HEADER
from endpoint_picker.errors import ConfigError
from endpoint_picker.fastfront import metrics as fm
from endpoint_picker.fastfront.complete import Completions, Entry

log = logging.getLogger(__name__)

SERVICE = "envoy.service.accesslog.v3.AccessLogService"
_EMPTY: bytes = als_pb2.StreamAccessLogsResponse().SerializeToString()


def entry_of(log_entry: Any) -> Entry | None:
    """An ``HTTPAccessLogEntry`` as an ``Entry``; None when it names no request of ours (no
    ticket and no request id)."""
    ticket = log_entry.request.request_headers.get(TICKET_HEADER, "")
    request_id = log_entry.request.request_id
    if not ticket and not request_id:
        return None
    common = log_entry.common_properties
    sock = common.upstream_remote_address.socket_address
    served = f"{sock.address}:{sock.port_value}" if sock.address else None
    duration = common.duration if common.HasField("duration") else None
    if duration is None and common.HasField("time_to_last_downstream_tx_byte"):
        duration = common.time_to_last_downstream_tx_byte
    resp = log_entry.response
    return Entry(
        ticket=ticket,
        status=resp.response_code.value,
        served=served,
        response_bytes=resp.response_body_bytes,
        duration_s=duration.seconds + duration.nanos / 1e9 if duration is not None else None,
        flags=_flags(common.response_flags),
        request_id=request_id,
    )


def _flags(flags: Any) -> str:
    return ",".join(f.name for f, v in flags.ListFields() if v) if flags.ByteSize() else ""


class EnvoyGone(Exception):
    """Given to ``finish`` for pending requests when every access-log stream has closed."""


class AccessLogServer:
    """A grpc.aio server for ``StreamAccessLogs`` on ``host:port`` (port 0: any free port)."""

    def __init__(self, completions: Completions, *, host: str = "127.0.0.1", port: int = 0):
        self.completions = completions
        self.host = host
        self.port = port
        self.streams = 0
        self._server: grpc.aio.Server | None = None
        self._stopping = False

    async def _stream(self, request_iterator: Any, context: Any) -> bytes:
        self.streams += 1
        complete = self.completions.complete
        try:
            async for msg in request_iterator:
                for log_entry in msg.http_logs.log_entry:
                    entry = entry_of(log_entry)
                    if entry is None:
                        fm.ENTRIES_UNTAGGED.inc()
                        continue
                    try:
                        complete(entry)
                    except Exception:  # one bad entry must not end the stream for the others
                        log.exception("finishing request %s failed", entry.ticket)
        finally:
            self.streams -= 1
            if self.streams == 0 and not self._stopping:
                self._release()
        return _EMPTY

    def _release(self) -> None:
        held = len(self.completions)
        if not held:
            return
        log.warning(
            "every access-log stream closed (Envoy stopped or restarted): finishing the %d "
            "requests it held",
            held,
        )
        fm.RELEASED.inc(held)
        self.completions.finish_all(EnvoyGone("the access-log stream closed"))

    async def start(self) -> None:
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    SERVICE,
                    {
                        "StreamAccessLogs": grpc.stream_unary_rpc_method_handler(
                            self._stream,
                            request_deserializer=als_pb2.StreamAccessLogsMessage.FromString,
                        )
                    },
                ),
            )
        )
        address = f"{self.host}:{self.port}"
        try:
            bound = server.add_insecure_port(address)
        except RuntimeError as err:
            raise ConfigError(f"cannot listen on {address} (in use?): {err}") from err
        if bound == 0:
            raise ConfigError(f"cannot listen on {address} (in use?)")
        self.port = int(bound)
        await server.start()
        self._server = server

    async def stop(self, grace: float | None = 0.5) -> None:
        self._stopping = True
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None
