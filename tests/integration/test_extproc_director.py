"""The real director (the EPP as ``epp run`` composes it) behind a real Envoy, routing to
simulated model servers: the ext_proc layer with no fakes at all."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from extproc_support import ENDPOINT_HEADER

from endpoint_picker.envoy import ManagedEnvoy

app = pytest.importorskip("endpoint_picker.runner.app")

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def epp(sim_fleet: Any) -> AsyncIterator[Any]:
    options = app.EppOptions(
        endpoints=list(sim_fleet.endpoints),
        grpc_port=0,
        grpc_health_port=0,
        metrics_port=None,
    )
    server = app.Epp(options)
    await server.start()
    yield server
    await server.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def envoy(epp: Any, envoy_factory: Any) -> ManagedEnvoy:
    envoy: ManagedEnvoy = await envoy_factory(epp_port=epp.grpc_port, mode="duplex", tls=True)
    return envoy


async def test_requests_reach_a_pool_member_the_director_chose(
    envoy: ManagedEnvoy, sim_fleet: Any, epp: Any
) -> None:
    url = f"http://127.0.0.1:{envoy.port}/v1/completions"
    served = []
    async with aiohttp.ClientSession() as s:
        for i in range(4):
            payload = {"model": "sim-model", "prompt": f"hello {i}", "max_tokens": 3}
            async with s.post(
                url, json=payload, headers={"x-gateway-destination-endpoint": "127.0.0.1:1"}
            ) as r:
                body = await r.read()
                assert r.status == 200, body
                served.append(r.headers[ENDPOINT_HEADER])
                assert json.loads(body)["usage"]["completion_tokens"] > 0
    assert set(served) <= set(sim_fleet.endpoints)
    assert epp.director.outcomes.get("completed", 0) >= 4


@pytest.mark.parametrize(
    ("body", "status", "prefix"),
    [
        (b"{not json", 400, b"inference error: BadRequest - "),
        (b'{"prompt": "no model"}', 400, b"inference error: BadRequest - "),
    ],
)
async def test_parser_errors_reach_the_client(
    envoy: ManagedEnvoy, body: bytes, status: int, prefix: bytes
) -> None:
    url = f"http://127.0.0.1:{envoy.port}/v1/completions"
    async with aiohttp.ClientSession() as s, s.post(url, data=body) as r:
        assert r.status == status
        assert (await r.read()).startswith(prefix)


async def test_streamed_usage_is_counted(envoy: ManagedEnvoy, epp: Any) -> None:
    url = f"http://127.0.0.1:{envoy.port}/v1/completions"
    payload = {
        "model": "sim-model",
        "prompt": "count me",
        "max_tokens": 4,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    before = epp.director.outcomes.get("completed", 0)
    async with aiohttp.ClientSession() as s, s.post(url, json=payload) as r:
        assert r.status == 200
        text = (await r.read()).decode()
    assert text.rstrip().endswith("data: [DONE]")
    assert epp.director.outcomes.get("completed", 0) == before + 1
