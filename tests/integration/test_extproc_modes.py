"""BUFFERED mode, fail-open/fail-close with the EPP down, health and TLS: real Envoy, real gRPC.
The director is a FAKE that picks scripted upstreams."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
import pytest_asyncio
from extproc_support import ENDPOINT_HEADER, EchoUpstream, free_port
from grpc_health.v1 import health_pb2_grpc
from tests.fakes.director import FakeDirector

from endpoint_picker.envoy import ManagedEnvoy
from endpoint_picker.errors import ConfigError, ResourceExhausted
from endpoint_picker.extproc import EXT_PROC_SERVICE, ExtProcServer, health, tls
from endpoint_picker.extproc.messages import ProcessingRequest

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


async def post(
    port: int, payload: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    url = f"http://127.0.0.1:{port}/v1/completions"
    async with aiohttp.ClientSession() as s, s.post(url, json=payload, headers=headers) as r:
        return r.status, dict(r.headers), await r.read()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def buffered(
    echo_upstreams: list[EchoUpstream], envoy_factory: Any, start_extproc: Any
) -> tuple[ExtProcServer, ManagedEnvoy]:
    server = await start_extproc(FakeDirector([echo_upstreams[0].endpoint]), secure=False)
    pool = [echo_upstreams[0].endpoint, echo_upstreams[1].endpoint]
    envoy = await envoy_factory(
        epp_port=server.port,
        mode="buffered",
        failure_mode="FailOpen",
        pool_endpoints=pool,
        tls=False,
    )
    return server, envoy


@pytest.fixture
def director(
    buffered: tuple[ExtProcServer, ManagedEnvoy], echo_upstreams: list[EchoUpstream]
) -> FakeDirector:
    fake = FakeDirector([echo_upstreams[1].endpoint])
    buffered[0].director = fake
    return fake


async def test_buffered_routes_to_the_chosen_pool_member(
    buffered: Any, director: FakeDirector, echo_upstreams: list[EchoUpstream]
) -> None:
    spoofed = echo_upstreams[0].endpoint  # a pool member, but not the EPP's choice
    for _ in range(3):
        status, headers, body = await post(
            buffered[1].port, {"model": "m"}, {"x-gateway-destination-endpoint": spoofed}
        )
        assert status == 200, body
        assert headers[ENDPOINT_HEADER] == echo_upstreams[1].endpoint
    assert director.requests[-1][1] == b'{"model": "m"}'  # the whole body, in one message


async def test_buffered_body_rewrite_keeps_length_consistent(
    buffered: Any, director: FakeDirector
) -> None:
    director.rewrite_body = lambda b: b.replace(b'"m"', b'"a-much-longer-model"')
    status, _, body = await post(buffered[1].port, {"model": "m", "prompt": "x"})
    assert status == 200
    seen = json.loads(body)
    assert json.loads(seen["body"]) == {"model": "a-much-longer-model", "prompt": "x"}
    assert seen["headers"]["content-length"] == str(seen["body_len"])


async def test_buffered_immediate_response(buffered: Any, director: FakeDirector) -> None:
    director.error = ResourceExhausted("request rejected pre-queue: queue at capacity")
    status, _, body = await post(buffered[1].port, {"model": "m"})
    assert status == 429
    assert (
        body
        == b"inference error: ResourceExhausted - request rejected pre-queue: queue at capacity"
    )


async def test_buffered_mode_still_streams_responses(
    buffered: Any, director: FakeDirector, echo_upstreams: list[EchoUpstream]
) -> None:
    upstream = echo_upstreams[1]
    upstream.release_last.clear()
    try:
        url = f"http://127.0.0.1:{buffered[1].port}/v1/completions"
        async with (
            aiohttp.ClientSession() as s,
            s.post(url, json={"model": "m", "stream": True}) as r,
        ):
            first = await asyncio.wait_for(r.content.readuntil(b"\n\n"), 5)
            assert first.startswith(b"data: ")
            upstream.release_last.set()
            assert (await r.content.read()).endswith(b"data: [DONE]\n\n")
    finally:
        upstream.release_last.set()


async def test_epp_down_fail_close_answers_an_error(envoy_factory: Any) -> None:
    envoy = await envoy_factory(epp_port=free_port(), mode="duplex", failure_mode="FailClose")
    status, headers, _ = await post(envoy.port, {"model": "m"})
    assert status >= 500
    assert ENDPOINT_HEADER not in headers


async def test_epp_down_fail_open_serves_from_the_pool_only(
    envoy_factory: Any, echo_upstreams: list[EchoUpstream]
) -> None:
    pool = [echo_upstreams[0].endpoint, echo_upstreams[1].endpoint]
    envoy = await envoy_factory(
        epp_port=free_port(), mode="buffered", failure_mode="FailOpen", pool_endpoints=pool
    )
    outsider = echo_upstreams[2].endpoint  # a live server the client names, outside the pool
    served = set()
    for _ in range(4):
        status, headers, _ = await post(
            envoy.port, {"model": "m"}, {"x-gateway-destination-endpoint": outsider}
        )
        assert status == 200
        served.add(headers[ENDPOINT_HEADER])
    assert served <= set(pool) and served


async def health_check(port: int, service: str) -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = health_pb2_grpc.HealthStub(ch)  # the package's own client
        resp = await stub.Check(health.HealthCheckRequest(service=service), timeout=5)
        return int(resp.status)


async def test_health_service_reports_liveness_and_readiness(start_extproc: Any) -> None:
    ready = {"value": False}
    server = await start_extproc(
        FakeDirector(["127.0.0.1:1"]), secure=False, ready=lambda: ready["value"]
    )
    assert await health_check(server.health_port, "liveness") == health.SERVING
    for name in ("readiness", EXT_PROC_SERVICE, ""):
        assert await health_check(server.health_port, name) == health.NOT_SERVING
    ready["value"] = True
    for name in ("readiness", EXT_PROC_SERVICE, "", "inference-extension"):
        assert await health_check(server.health_port, name) == health.SERVING
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.health_port}") as ch:
        watch = health_pb2_grpc.HealthStub(ch).Watch
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in watch(health.HealthCheckRequest(service="readiness"), timeout=5):
                pass
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


def header_only_request() -> bytes:
    msg = ProcessingRequest()
    msg.request_headers.end_of_stream = True
    h = msg.request_headers.headers.headers.add()
    h.key, h.raw_value = ":path", b"/v1/models"
    return msg.SerializeToString()  # type: ignore[no-any-return]


async def test_tls_with_a_certificate_folder(start_extproc: Any, tmp_path: Path) -> None:
    key, cert = tls.self_signed()
    (tmp_path / "tls.key").write_bytes(key)
    (tmp_path / "tls.crt").write_bytes(cert)
    director = FakeDirector(["10.0.0.7:8000"])
    server = await start_extproc(director, secure=True, cert_path=tmp_path, health_port=None)
    creds = grpc.ssl_channel_credentials(root_certificates=cert)
    async with grpc.aio.secure_channel(f"localhost:{server.port}", creds) as ch:
        process = ch.stream_stream(f"/{EXT_PROC_SERVICE}/Process")
        call = process(timeout=5)
        await call.write(header_only_request())
        answer = await call.read()
        await call.done_writing()
    assert b"10.0.0.7:8000" in answer
    # the same port refuses plaintext
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        call = ch.stream_stream(f"/{EXT_PROC_SERVICE}/Process")(timeout=2)
        with pytest.raises(grpc.aio.AioRpcError):
            await call.write(header_only_request())
            await call.read()


async def test_bad_cert_folder_is_a_config_error(tmp_path: Path) -> None:
    server = ExtProcServer(
        FakeDirector(["127.0.0.1:1"]), port=0, health_port=None, cert_path=tmp_path
    )
    with pytest.raises(ConfigError, match=r"tls\.key"):
        await server.start()


async def test_port_in_use_is_a_config_error(start_extproc: Any) -> None:
    first = await start_extproc(FakeDirector(["127.0.0.1:1"]), secure=False, health_port=None)
    second = ExtProcServer(
        FakeDirector(["127.0.0.1:1"]), port=first.port, health_port=None, secure=False
    )
    with pytest.raises(ConfigError, match="cannot listen"):
        await second.start()


def _series(name: str, **labels: str) -> float:
    from endpoint_picker.metrics import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_grpc_stream_metrics_count_streams_by_code(start_extproc: Any) -> None:
    """``--enable-grpc-stream-metrics``: llm-d-router's three series, codes in Go's spelling."""
    server = await start_extproc(
        FakeDirector(["10.0.0.7:8000"]), secure=False, health_port=None, stream_metrics=True
    )
    ok_before = _series("llm_d_epp_extproc_streams_total", code="OK")
    failed_before = _series("llm_d_epp_extproc_streams_total", code="FailedPrecondition")
    count_before = _series("llm_d_epp_extproc_stream_duration_seconds_count")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        process = ch.stream_stream(f"/{EXT_PROC_SERVICE}/Process")
        call = process(timeout=5)
        await call.write(header_only_request())
        assert b"10.0.0.7:8000" in await call.read()
        await call.done_writing()
        assert await call.code() == grpc.StatusCode.OK
        bad = process(timeout=5)  # a body before any headers: the stream is failed
        body_first = ProcessingRequest()
        body_first.request_body.body = b"{}"
        await bad.write(body_first.SerializeToString())
        assert await bad.code() == grpc.StatusCode.FAILED_PRECONDITION
    for _ in range(500):  # the server records a stream's end just after the client sees it
        if _series("llm_d_epp_extproc_streams_inflight") == 0:
            break
        await asyncio.sleep(0.01)
    assert _series("llm_d_epp_extproc_streams_inflight") == 0
    assert _series("llm_d_epp_extproc_streams_total", code="OK") == ok_before + 1
    assert (
        _series("llm_d_epp_extproc_streams_total", code="FailedPrecondition") == failed_before + 1
    )
    assert _series("llm_d_epp_extproc_stream_duration_seconds_count") == count_before + 2
