"""The simulator's data-parallel mode over real HTTP: rank 0 acting as llm-d's sidecar.

One pod of two ranks (``start_dp_fleet``), plus, added to the pod's rank list, a rank that always
fails 503 and a rank address nobody listens on.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from endpoint_picker.sim.config import SimConfig
from endpoint_picker.sim.dp import FORWARDED_BY_HEADER, start_dp_fleet
from endpoint_picker.sim.fleet import SimFleet
from endpoint_picker.sim.server import SimServer

pytestmark = pytest.mark.asyncio(loop_scope="module")

RANK = "x-data-parallel-host-port"


def dead_address() -> str:
    """A loopback port nobody listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def pod() -> AsyncIterator[dict[str, Any]]:
    fleet: SimFleet = await start_dp_fleet(2, "tiny-test")
    broken = SimServer(
        SimConfig.from_profile("tiny-test", fail_rate=1.0, fail_statuses=(503,)), "127.0.0.1", 0
    )
    await broken.start()
    dead = dead_address()
    primary = fleet.servers[0]
    assert primary.dp is not None
    primary.dp.ranks += [broken.endpoint, dead]
    yield {"fleet": fleet, "broken": broken, "dead": dead}
    await broken.stop()
    await fleet.stop()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def generate(
    client: aiohttp.ClientSession, server: SimServer, rank: str | None, **body: Any
) -> tuple[int, dict[str, str], str]:
    payload = {"model": "sim-model", "prompt": "hello there", "max_tokens": 3, **body}
    headers = {RANK: rank} if rank is not None else {}
    async with client.post(server.url + "/v1/completions", json=payload, headers=headers) as r:
        return r.status, {k.lower(): v for k, v in r.headers.items()}, await r.text()


async def test_ranks_are_on_consecutive_ports(pod: dict[str, Any]) -> None:
    fleet = pod["fleet"]
    assert fleet.ports[1] == fleet.ports[0] + 1
    assert fleet.servers[1].dp is None  # only the primary port forwards


async def test_no_header_or_own_address_is_served_by_the_primary(
    pod: dict[str, Any], client: aiohttp.ClientSession
) -> None:
    primary = pod["fleet"].servers[0]
    for rank in (None, primary.endpoint):
        status, headers, body = await generate(client, primary, rank)
        assert status == 200, body
        assert headers["x-sim-endpoint"] == primary.endpoint
        assert FORWARDED_BY_HEADER not in headers


async def test_another_rank_serves_what_the_header_names(
    pod: dict[str, Any], client: aiohttp.ClientSession
) -> None:
    primary, rank1 = pod["fleet"].servers
    status, headers, body = await generate(client, primary, rank1.endpoint, ignore_eos=True)
    assert status == 200, body
    assert headers["x-sim-endpoint"] == rank1.endpoint
    assert headers[FORWARDED_BY_HEADER] == primary.endpoint
    assert "x-sim-ttft-ms" in headers  # the rank's own timing headers come back too
    assert json.loads(body)["usage"]["completion_tokens"] == 3


async def test_a_stream_passes_through(pod: dict[str, Any], client: aiohttp.ClientSession) -> None:
    primary, rank1 = pod["fleet"].servers
    status, headers, body = await generate(
        client, primary, rank1.endpoint, stream=True, ignore_eos=True, max_tokens=5
    )
    assert status == 200, body
    assert headers["x-sim-endpoint"] == rank1.endpoint
    assert headers["content-type"].startswith("text/event-stream")
    events = [line for line in body.splitlines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    assert len(events) >= 2


async def test_a_ranks_error_is_passed_through(
    pod: dict[str, Any], client: aiohttp.ClientSession
) -> None:
    primary, broken = pod["fleet"].servers[0], pod["broken"]
    status, headers, body = await generate(client, primary, broken.endpoint)
    assert status == 503
    assert headers["x-sim-endpoint"] == broken.endpoint
    assert "simulated failure" in body


async def test_an_unreachable_rank_is_502(
    pod: dict[str, Any], client: aiohttp.ClientSession
) -> None:
    primary = pod["fleet"].servers[0]
    status, headers, body = await generate(client, primary, pod["dead"])
    assert status == 502, body
    assert headers["x-sim-endpoint"] == primary.endpoint
    assert pod["dead"] in body


async def test_an_address_outside_the_pod_is_400(
    pod: dict[str, Any], client: aiohttp.ClientSession
) -> None:
    primary = pod["fleet"].servers[0]
    status, _, body = await generate(client, primary, "127.0.0.1:9")
    assert status == 400, body
    assert "not a rank of this pod" in body


async def test_other_ranks_serve_what_they_get(
    pod: dict[str, Any], client: aiohttp.ClientSession
) -> None:
    primary, rank1 = pod["fleet"].servers
    status, headers, body = await generate(client, rank1, primary.endpoint)
    assert status == 200, body
    assert headers["x-sim-endpoint"] == rank1.endpoint
    assert FORWARDED_BY_HEADER not in headers
