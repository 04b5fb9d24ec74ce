"""Helpers for integration tests of the Envoy front: an echo upstream and a free port.

Any integration test can ``from extproc_support import ...`` (pytest puts this folder on
sys.path for its conftest); the fixtures that start them live in ``conftest.py``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
from typing import Any

from aiohttp import web

ENDPOINT_HEADER = "x-sim-endpoint"  # the simulator's name for "who served this"


class EchoUpstream:
    """An HTTP server that answers with what it received (JSON), or streams SSE on demand.

    A JSON body with ``"stream": true`` gets ``"chunks"`` SSE events; before the last one it
    waits for ``release_last`` (an event a test sets), so a test can prove it received the
    earlier events while the upstream was still mid-response.
    """

    def __init__(self) -> None:
        self.endpoint = ""
        self.seen: list[dict[str, Any]] = []
        self.release_last = asyncio.Event()
        self.release_last.set()
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.endpoint = f"127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        record = {
            "endpoint": self.endpoint,
            "method": request.method,
            "path": request.path,
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "destination_values": request.headers.getall("x-gateway-destination-endpoint", []),
            "body_len": len(body),
            "body_sha256": hashlib.sha256(body).hexdigest(),
            "body": body.decode(errors="replace") if len(body) < 4096 else "",
        }
        self.seen.append(record)
        try:
            payload = json.loads(body) if body else {}
        except ValueError:
            payload = {}
        headers = {ENDPOINT_HEADER: self.endpoint}
        if isinstance(payload, dict) and payload.get("stream"):
            resp = web.StreamResponse(headers={**headers, "content-type": "text/event-stream"})
            await resp.prepare(request)
            chunks = int(payload.get("chunks", 3))
            for i in range(chunks):
                if i == chunks - 1:
                    await self.release_last.wait()
                await resp.write(f"data: {json.dumps({'i': i, 'model': 'm'})}\n\n".encode())
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
            return resp
        return web.json_response(record, headers=headers)


def free_port() -> int:
    """A port nothing listens on (for 'the EPP is down' configurations)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
