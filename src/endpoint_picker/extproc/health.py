"""The gRPC Health Checking Protocol (``grpc.health.v1.Health``) without grpcio-health-checking.

Its two messages are built here from a hand-written descriptor, and the service is a generic
handler, so the EPP needs no extra package for what Kubernetes probes and Envoy health checks call.
Semantics follow upstream's health server with leader election off: ``liveness`` is SERVING
while the process runs; every other name (``readiness``, ``""``, the ext_proc service name,
``inference-extension``) is SERVING when ``ready()`` says so. ``Watch`` is unimplemented.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    message_factory,
)

from endpoint_picker.errors import ConfigError

SERVICE = "grpc.health.v1.Health"
EXT_PROC_SERVICE = "envoy.service.ext_proc.v3.ExternalProcessor"
UNKNOWN, SERVING, NOT_SERVING, SERVICE_UNKNOWN = 0, 1, 2, 3


def _messages() -> tuple[type[Any], type[Any]]:
    fdp = descriptor_pb2.FileDescriptorProto(
        name="endpoint_picker/grpc_health_v1.proto", package="grpc.health.v1", syntax="proto3"
    )
    req = fdp.message_type.add(name="HealthCheckRequest")
    req.field.add(name="service", number=1, type=9, label=1)  # string
    resp = fdp.message_type.add(name="HealthCheckResponse")
    enum = resp.enum_type.add(name="ServingStatus")
    for name, number in (
        ("UNKNOWN", UNKNOWN),
        ("SERVING", SERVING),
        ("NOT_SERVING", NOT_SERVING),
        ("SERVICE_UNKNOWN", SERVICE_UNKNOWN),
    ):
        enum.value.add(name=name, number=number)
    resp.field.add(
        name="status",
        number=1,
        type=14,  # enum
        label=1,
        type_name=".grpc.health.v1.HealthCheckResponse.ServingStatus",
    )
    pool = descriptor_pool.DescriptorPool()
    fd = pool.Add(fdp)
    return (
        message_factory.GetMessageClass(fd.message_types_by_name["HealthCheckRequest"]),
        message_factory.GetMessageClass(fd.message_types_by_name["HealthCheckResponse"]),
    )


HealthCheckRequest, HealthCheckResponse = _messages()


def status_for(service: str, ready: Callable[[], bool]) -> int:
    """The serving status reported for ``service``."""
    if service == "liveness":
        return SERVING
    return SERVING if ready() else NOT_SERVING


def handler(ready: Callable[[], bool]) -> grpc.GenericRpcHandler:
    """A generic handler serving ``grpc.health.v1.Health/Check`` for grpc.aio servers."""

    async def check(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        return HealthCheckResponse(status=status_for(request.service, ready))

    async def watch(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Watch is not implemented")

    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Check": grpc.unary_unary_rpc_method_handler(
                check,
                request_deserializer=HealthCheckRequest.FromString,
                response_serializer=HealthCheckResponse.SerializeToString,
            ),
            "Watch": grpc.unary_stream_rpc_method_handler(
                watch,
                request_deserializer=HealthCheckRequest.FromString,
                response_serializer=HealthCheckResponse.SerializeToString,
            ),
        },
    )


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
        server.add_generic_rpc_handlers((handler(self.ready),))
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
