"""End to end when things go wrong: legacy shedding (429), an empty pool (503), and the EPP
going away behind a fail-close or a fail-open gateway."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from e2e_support import (
    DESTINATION_HEADER,
    OBJECTIVE_HEADER,
    SLOW_SIM,
    Reply,
    completion,
    gated_config,
    post,
    running_stack,
    total_inflight,
    wait_until,
)
from extproc_support import EchoUpstream

from endpoint_picker.runner.stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

LEGACY = gated_config("{enabled: false}")


async def test_sheddable_requests_get_429_while_the_pool_is_saturated(
    front: str, tmp_path_factory: pytest.TempPathFactory, session: aiohttp.ClientSession
) -> None:
    directory = tmp_path_factory.mktemp("e2e-legacy")
    async with running_stack(front, directory, config=LEGACY, sim_overrides=SLOW_SIM) as stack:
        # Not saturated: a sheddable request is served.
        assert (await post(session, stack, completion(), {OBJECTIVE_HEADER: "low"})).status == 200
        blocker = asyncio.create_task(post(session, stack, completion("block", 400)))
        await wait_until(lambda: total_inflight(stack) == 1, what="the blocker in flight")
        shed = await post(session, stack, completion("shed me"), {OBJECTIVE_HEADER: "low"})
        assert shed.status == 429
        assert shed.body == (
            b"inference error: ResourceExhausted - system saturated, sheddable request dropped"
        )
        assert shed.served_by is None
        # Legacy admission never queues: priority >= 0 passes even while saturated.
        for objective in ("high", "unknown-objective"):
            reply = await post(session, stack, completion(), {OBJECTIVE_HEADER: objective})
            assert reply.status == 200, reply.body
        assert not blocker.done()
        blocker.cancel()
        await asyncio.gather(blocker, return_exceptions=True)
        await wait_until(lambda: total_inflight(stack) == 0, what="in-flight back to 0")
        director = stack.epp.director
        assert director is not None
        assert director.outcomes.get("ResourceExhausted") == 1


async def test_an_empty_pool_answers_503(
    front: str, tmp_path_factory: pytest.TempPathFactory, session: aiohttp.ClientSession
) -> None:
    directory = tmp_path_factory.mktemp("e2e-empty")
    async with running_stack(front, directory, simulate=0, config=LEGACY) as stack:
        assert stack.pool_endpoints == []
        reply = await post(session, stack, completion())
        assert reply.status == 503
        assert reply.body == (
            b"inference error: ServiceUnavailable - "
            b"failed to find endpoint candidates for serving the request"
        )


async def _fail(stack: Stack, session: aiohttp.ClientSession, echo: EchoUpstream) -> Reply:
    """Stop the EPP (Envoy stays), then send a request that names a host outside the pool."""
    assert (await post(session, stack, completion())).status == 200  # the EPP serves first
    await stack.epp.stop()
    return await post(session, stack, completion("epp gone"), {DESTINATION_HEADER: echo.endpoint})


async def test_epp_down_with_fail_close_is_an_error(
    front: str,
    tmp_path_factory: pytest.TempPathFactory,
    session: aiohttp.ClientSession,
    outsider: EchoUpstream,
) -> None:
    directory = tmp_path_factory.mktemp("e2e-failclose")
    async with running_stack(front, directory, failure_mode="FailClose") as stack:
        reply = await _fail(stack, session, outsider)
    assert reply.status >= 500
    assert reply.served_by is None
    assert outsider.seen == []


async def test_epp_down_with_fail_open_is_served_by_the_pool_only(
    front: str,
    tmp_path_factory: pytest.TempPathFactory,
    session: aiohttp.ClientSession,
    outsider: EchoUpstream,
) -> None:
    directory = tmp_path_factory.mktemp("e2e-failopen")
    async with running_stack(
        front, directory, simulate=2, mode="buffered", failure_mode="FailOpen"
    ) as stack:
        pool = stack.pool_endpoints
        reply = await _fail(stack, session, outsider)
        assert reply.status == 200, reply.body
        assert reply.served_by in pool
        # Round robin over the pool while the EPP is away: both members serve, nobody else.
        served = {(await post(session, stack, completion())).served_by for _ in range(4)}
        assert served == set(pool)
    assert outsider.seen == []
