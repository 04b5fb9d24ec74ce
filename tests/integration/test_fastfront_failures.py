"""The fast front when the EPP is away: fail-close answers 500, fail-open stays in the pool, and
a client's destination header can never steer routing, with or without the EPP."""

from __future__ import annotations

import aiohttp
import pytest
from e2e_support import (
    DESTINATION_HEADER,
    completion,
    post,
    running_stack,
)
from extproc_support import EchoUpstream

from endpoint_picker.envoy.fast import TICKET_HEADER
from endpoint_picker.runner.stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]


async def _stop_epp(stack: Stack, session: aiohttp.ClientSession) -> None:
    assert (await post(session, stack, completion())).status == 200  # the EPP serves first
    await stack.epp.stop()
    assert stack.epp.fastfront is not None
    assert stack.epp.fastfront.pending == 0  # stopping finished every open request


async def test_epp_down_with_fail_close_is_500_and_spoofing_goes_nowhere(
    tmp_path_factory: pytest.TempPathFactory,
    session: aiohttp.ClientSession,
    outsider: EchoUpstream,
) -> None:
    directory = tmp_path_factory.mktemp("ff-failclose")
    async with running_stack("fast", directory, failure_mode="FailClose") as stack:
        await _stop_epp(stack, session)
        for spoof in ({DESTINATION_HEADER: outsider.endpoint}, {}):
            reply = await post(
                session, stack, completion("epp gone"), {**spoof, TICKET_HEADER: "a"}
            )
            assert reply.status == 500
            assert reply.served_by is None
    assert outsider.seen == []


async def test_epp_down_with_fail_open_is_served_by_the_pool_only(
    tmp_path_factory: pytest.TempPathFactory,
    session: aiohttp.ClientSession,
    outsider: EchoUpstream,
) -> None:
    directory = tmp_path_factory.mktemp("ff-failopen")
    async with running_stack("fast", directory, simulate=2, failure_mode="FailOpen") as stack:
        pool = stack.pool_endpoints
        # The EPP up: the pool cluster's override_host reads only the EPP's header.
        up = await post(session, stack, completion("up"), {DESTINATION_HEADER: outsider.endpoint})
        assert up.status == 200 and up.served_by in pool
        await _stop_epp(stack, session)
        served = set()
        for i in range(4):
            headers = {DESTINATION_HEADER: outsider.endpoint}
            reply = await post(session, stack, completion(f"epp gone {i}"), headers)
            assert reply.status == 200, reply.body
            served.add(reply.served_by)
        # Round robin over the pool while the EPP is away: both members serve, nobody else.
        assert served == set(pool)
    assert outsider.seen == []
