"""``FastFront``: the pick endpoint, the access-log service and the sweeper, started together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from endpoint_picker.clock import SYSTEM_CLOCK, Clock
from endpoint_picker.director_api import DirectorLike
from endpoint_picker.errors import ConfigError
from endpoint_picker.fastfront.als import AccessLogServer
from endpoint_picker.fastfront.complete import Completions
from endpoint_picker.fastfront.pick import PickProtocol

log = logging.getLogger(__name__)


class FrontStopped(Exception):
    """Given to ``finish`` for requests still open when the front stops."""


class FastFront:
    """Envoy's ext_authz pick endpoint on ``host:port`` and its ALS on ``als_host:als_port``.

    Both ports are unauthenticated: whoever reaches the pick port gets tickets and holds load
    in flight, and whoever reaches the ALS port can finish requests. They bind loopback by
    default (``als_host`` defaults to ``host``); the sidecar deploy keeps them there.

    Port 0 picks a free port (read ``.port``/``.als_port`` after ``start``). ``sweep_after_s``
    must exceed the longest request (Envoy's route timeout) plus the access-log flush interval:
    a context is finished without its entry only after that.
    """

    def __init__(
        self,
        director: DirectorLike[Any],
        host: str = "127.0.0.1",
        port: int = 9004,
        als_port: int = 9005,
        *,
        als_host: str | None = None,
        clock: Clock = SYSTEM_CLOCK,
        sweep_after_s: float = 330.0,
        sweep_every_s: float = 5.0,
        ready: Callable[[], bool] | None = None,
    ) -> None:
        self.director = director
        self.host = host
        self.port = port
        self.als_host = als_host if als_host is not None else host
        self.als_port = als_port
        self.sweep_every_s = sweep_every_s
        self.completions = Completions(director, clock=clock, sweep_after_s=sweep_after_s)
        self._ready = ready
        self._server: asyncio.Server | None = None
        self._als: AccessLogServer | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._connections: set[PickProtocol] = set()

    def ready(self) -> bool:
        return self._server is not None and (self._ready is None or self._ready())

    @property
    def pending(self) -> int:
        """Picked requests whose access-log entry has not arrived yet."""
        return len(self.completions)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        als = AccessLogServer(self.completions, host=self.als_host, port=self.als_port)
        await als.start()
        try:
            server = await loop.create_server(
                lambda: PickProtocol(
                    self.director, self.completions, self.ready, self._connections
                ),
                self.host,
                self.port,
                reuse_address=True,
                backlog=1024,
            )
        except OSError as err:
            await als.stop()
            raise ConfigError(f"cannot listen on {self.host}:{self.port} (in use?): {err}") from err
        self._als, self._server = als, server
        self.port = int(server.sockets[0].getsockname()[1])
        self.als_port = als.port
        self._sweeper = loop.create_task(self._sweep_loop(), name="fastfront-sweeper")
        log.info(
            "fast front: pick on %s:%d, access log on %s:%d",
            self.host,
            self.port,
            self.als_host,
            als.port,
        )

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_every_s)
            try:
                self.completions.sweep()
            except Exception:
                log.exception("sweeping failed")

    async def stop(self) -> None:
        """Stop serving; contexts still waiting for their entry are finished with an error."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        if self._server is not None:
            self._server.close()
            self._server = None
        for conn in list(self._connections):  # Python 3.11's close() leaves them open
            conn.abort()
        if self._als is not None:
            await self._als.stop()
            self._als = None
        self.completions.finish_all(FrontStopped("the fast front stopped"))

    async def __aenter__(self) -> FastFront:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
