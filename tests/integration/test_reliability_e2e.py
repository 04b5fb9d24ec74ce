"""Issue 18 end to end, on both fronts (simulator, EPP, a real Envoy): hostile input neither
steers routing nor breaks ``/metrics`` (items 1, 13), and a dead Envoy is noticed (item 12)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from e2e_support import (
    MODEL,
    completion,
    post,
    running_stack,
    wait_until,
)

from endpoint_picker.runner import stack as stack_module
from endpoint_picker.runner.stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def stack(front: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    async with running_stack(front, tmp_path_factory.mktemp("reliability"), simulate=1) as s:
        yield s


async def test_a_client_model_rewrite_header_is_not_applied(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    reply = await post(session, stack, completion(), {"x-gateway-model-name-rewrite": "nope"})
    assert reply.status == 200, reply.body  # "nope" would be a 404 from the simulator
    assert reply.json()["model"] == MODEL


async def test_metrics_survive_a_lone_surrogate_model_name(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    reply = await post(session, stack, b'{"model": "\\udcff", "prompt": "x", "max_tokens": 1}')
    assert reply.status == 404  # the simulator knows no such model
    port = stack.epp.metrics_server.port if stack.epp.metrics_server else 0
    async with session.get(f"http://127.0.0.1:{port}/metrics") as resp:
        assert resp.status == 200
        assert "inference_objective_request_total" in await resp.text()


async def test_a_dead_envoy_is_started_again(
    front: str, tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    async with running_stack(front, tmp_path, simulate=1) as stack:
        first = stack.envoy.pid
        os.kill(first, signal.SIGKILL)  # our own child, by its PID
        await wait_until(lambda: stack.envoy_restarts == 1, what="Envoy restarted")
        assert stack.envoy.pid != first and not stack.failed.is_set()
        reply = await post(session, stack, completion())
        assert reply.status == 200, reply.body


async def test_an_envoy_that_keeps_dying_fails_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stack_module, "ENVOY_RESTARTS", 0)
    async with running_stack("extproc", tmp_path, simulate=1) as stack:
        os.kill(stack.envoy.pid, signal.SIGKILL)
        await asyncio.wait_for(stack.failed.wait(), 30)
        assert stack.envoy_restarts == 0


async def _retries(stack: Stack, session: aiohttp.ClientSession) -> int:
    async with session.get(
        f"{stack.envoy.admin_url}/stats?filter=cluster.pool.upstream_rq_retry$"
    ) as r:
        text = await r.text()
    return sum(int(line.rsplit(":", 1)[1]) for line in text.splitlines() if ":" in line)


async def test_a_refused_connection_is_retried_on_another_endpoint(
    front: str, tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """Item 10: a server that has just died, whose metrics still look fresh, is still picked;
    Envoy retries the refused connection on the live endpoint, so the client gets 200, and the
    EPP's in-flight counts follow the endpoint that served."""
    async with running_stack(front, tmp_path, simulate=2) as stack:
        dead_server, live_server = stack.epp.datastore.endpoints()
        victim = next(s for s in stack.fleet.servers if s.endpoint == dead_server.hostport)
        await victim.stop()  # its port now refuses connections
        replies = []
        for _ in range(10):  # each round: the dead endpoint looks freshly scraped
            if await _retries(stack, session) >= 3:
                break
            dead_server.metrics.update_time = stack.epp.clock.now()
            replies += await asyncio.gather(*(post(session, stack, completion()) for _ in range(4)))
        assert await _retries(stack, session) >= 1, "the EPP never picked the dead endpoint"
        assert [r.status for r in replies] == [200] * len(replies)
        assert {r.served_by for r in replies} == {live_server.hostport}
        await wait_until(
            lambda: dead_server.inflight_requests == 0 and live_server.inflight_requests == 0,
            what="in-flight counts back to 0",
        )


async def _raw(port: int, request: bytes) -> bytes:
    """Send ``request`` as raw bytes (a client that breaks HTTP/1.1) and read the reply."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(65536), 10)
    finally:
        writer.close()


_BODY = b'{"model": "m", "prompt": "x", "max_tokens": 1}'
CODEC_ERRORS = {
    "70 KiB header": (
        b"GET /v1/models HTTP/1.1\r\nhost: x\r\nx-big: %s\r\n\r\n" % (b"a" * 70 * 1024),
        431,
    ),
    "200 headers": (
        b"GET /v1/models HTTP/1.1\r\nhost: x\r\n"
        + b"".join(b"x-h%d: v\r\n" % i for i in range(200))
        + b"\r\n",
        431,
    ),
    "content-length and chunked": (
        b"POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n"
        b"transfer-encoding: chunked\r\n\r\n%s" % (len(_BODY), _BODY),
        400,
    ),
}


@pytest.mark.parametrize("case", list(CODEC_ERRORS))
async def test_envoys_own_codec_error_reply_reaches_the_client(stack: Stack, case: str) -> None:
    """Item 14: Envoy's local reply to a request it cannot parse gets to the client on both
    fronts (on the ext_proc front the filter is enabled by the route, and such a reply has none)."""
    request, status = CODEC_ERRORS[case]
    reply = await _raw(stack.envoy.port, request)
    assert reply.startswith(b"HTTP/1.1 %d " % status), reply[:100]
