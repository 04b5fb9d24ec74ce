"""The gRPC Health Checking Protocol (``grpc.health.v1.Health``), from grpcio-health-checking.

The package brings the messages and the service registration; the servicer is subclassed only
because readiness is a live answer (``ready()``), not a status someone must remember to set.
Semantics follow upstream's health server with leader election off: ``liveness`` is SERVING
while the process runs; every other name (``readiness``, ``""``, the ext_proc service name,
``inference-extension``) is SERVING when ``ready()`` says so. ``Watch`` is unimplemented, as
upstream's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from endpoint_picker.errors import ConfigError

SERVICE = "grpc.health.v1.Health"
EXT_PROC_SERVICE = "envoy.service.ext_proc.v3.ExternalProcessor"
HealthCheckRequest = health_pb2.HealthCheckRequest
HealthCheckResponse = health_pb2.HealthCheckResponse
UNKNOWN = HealthCheckResponse.UNKNOWN
SERVING = HealthCheckResponse.SERVING
NOT_SERVING = HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = HealthCheckResponse.SERVICE_UNKNOWN


def status_for(service: str, ready: Callable[[], bool]) -> int:
    """The serving status reported for ``service``."""
    if service == "liveness":
        return int(SERVING)
    return int(SERVING if ready() else NOT_SERVING)


class ReadinessServicer(health_aio.HealthServicer):  # type: ignore[misc]
    """``Check`` answers from ``ready()`` at call time; ``Watch`` is unimplemented."""

    def __init__(self, ready: Callable[[], bool]) -> None:
        super().__init__()
        self.ready = ready

    async def Check(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        return HealthCheckResponse(status=status_for(request.service, self.ready))

    async def Watch(
        self, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Watch is not implemented")
        yield  # pragma: no cover - abort raises; the yield makes this a streaming handler


def add_to_server(server: grpc.aio.Server, ready: Callable[[], bool]) -> None:
    """Serve ``grpc.health.v1.Health`` on ``server``, answering readiness from ``ready``."""
    health_pb2_grpc.add_HealthServicer_to_server(ReadinessServicer(ready), server)


def bind(server: grpc.aio.Server, address: str, creds: grpc.ServerCredentials | None) -> int:
    """Add a listening port; ``ConfigError`` naming the address when it cannot be bound."""
    try:
        bound = (
            server.add_insecure_port(address)
            if creds is None
            else server.add_secure_port(address, creds)
        )
    except RuntimeError as err:
        raise ConfigError(f"cannot listen on {address} (in use?): {err}") from err
    if bound == 0:
        raise ConfigError(f"cannot listen on {address} (in use?)")
    return int(bound)


class HealthServer:
    """The plaintext health port on its own (``--grpc-health-port``), whatever the front.

    The ext_proc front starts one beside its server; the fast front has no gRPC server, so the
    runner starts one for it, and Kubernetes probes the same port and names in both cases.
    """

    def __init__(self, host: str, port: int, ready: Callable[[], bool]) -> None:
        self.host = host
        self.port = port
        self.ready = ready
        self._server: grpc.aio.Server | None = None

    def bind(self) -> None:
        """Create the server and bind its port (``port`` 0 picks one; read ``.port`` after)."""
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        add_to_server(server, self.ready)
        self.port = bind(server, f"{self.host}:{self.port}", None)
        self._server = server

    async def start(self) -> None:
        if self._server is None:
            self.bind()
        assert self._server is not None
        await self._server.start()

    async def stop(self, grace: float | None = 1.0) -> None:
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None
