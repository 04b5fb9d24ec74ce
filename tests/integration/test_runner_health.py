"""Kubernetes probes the same gRPC health port and names whichever front the EPP runs."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2_grpc

from endpoint_picker.extproc import health
from endpoint_picker.runner.app import Epp, EppOptions
from endpoint_picker.runner.defaults import default_manifest_path

pytestmark = pytest.mark.integration


async def _check(port: int, service: str) -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        return int((await stub.Check(health.HealthCheckRequest(service=service), timeout=5)).status)


@pytest.mark.parametrize("front", ["extproc", "fast"])
async def test_health_port_answers_for_both_fronts(front: str) -> None:
    epp = Epp(
        EppOptions(
            manifests=[default_manifest_path()],
            front=front,
            grpc_port=0,
            grpc_health_port=0,
            metrics_port=None,
            pick_port=0,
            als_port=0,
        )
    )
    await epp.start()
    try:
        port = epp.extproc.health_port if front == "extproc" else epp.health.port
        assert port > 0
        for name in ("liveness", "readiness", health.EXT_PROC_SERVICE):
            assert await _check(port, name) == health.SERVING
        # With the shipped defaults the learned-capacity detector checks room at dispatch and
        # hears of every dispatch (its server view), whichever the front.
        assert epp.director is not None
        scheduler = epp.director.scheduler
        assert getattr(scheduler, "room_check", None) is not None
        assert getattr(scheduler, "on_dispatch", None) is not None
    finally:
        await epp.stop()
    with pytest.raises(grpc.aio.AioRpcError):
        await _check(port, "liveness")  # stopped with the EPP
