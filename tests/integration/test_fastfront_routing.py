"""The fast front end to end (real Envoy, EPP, simulators), beyond what the e2e tests check for
both fronts: the EPP's ticket cannot be spoofed, the response path over the access log brings
in-flight counts back to zero after a burst, usage is estimated (and says so) while response
bytes are exact, and a header-only pick leaves nothing to complete."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from e2e_support import (
    DESTINATION_HEADER,
    MODEL,
    TEST_SELECTION_HEADER,
    completion,
    post,
    running_stack,
    sample,
    total_inflight,
    wait_until,
)

from endpoint_picker.envoy.fast import TICKET_HEADER
from endpoint_picker.fastfront import FastFront
from endpoint_picker.runner.stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

LABELS = {"model_name": MODEL, "target_model_name": MODEL}
FLUSH_S = 0.1  # the access-log flush interval these stacks use


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    directory = tmp_path_factory.mktemp("ff-routing")
    async with running_stack("fast", directory, simulate=3, als_flush_interval=FLUSH_S) as s:
        yield s


@pytest.fixture(scope="module")
def front() -> str:
    """This module's stacks (and the shared ``picked``) run the fast front only."""
    return "fast"


def _front(stack: Stack) -> FastFront:
    front = stack.epp.fastfront
    assert isinstance(front, FastFront)
    return front


async def test_the_pick_decides_and_spoofed_headers_are_ignored(
    picked: Stack, session: aiohttp.ClientSession
) -> None:
    target, other = picked.pool_endpoints[:2]
    front = _front(picked)
    completed = front.completions.completed
    for spoof in (other, "127.0.0.1:1", f"{other},{target}"):
        headers = {TEST_SELECTION_HEADER: target, DESTINATION_HEADER: spoof, TICKET_HEADER: "x-1"}
        reply = await post(session, picked, completion(), headers)
        assert reply.status == 200, reply.body
        assert reply.served_by == target
    # Every entry carried the EPP's ticket, never the client's: all three were completed.
    await wait_until(lambda: front.completions.completed == completed + 3)
    assert front.completions.unknown == 0


async def test_in_flight_returns_to_zero_within_the_flush_interval_after_a_burst(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    front = _front(stack)
    director = stack.epp.director
    assert director is not None
    done = director.outcomes.get("completed", 0)
    running_requests = "inference_objective_running_requests"
    burst = [post(session, stack, completion(f"burst {i}", 3)) for i in range(48)]
    replies = await asyncio.gather(*burst)
    answered = time.monotonic()
    ok = sum(r.status == 200 for r in replies)
    # Admission may shed some of a burst on a loaded machine (429); none may fail otherwise.
    assert ok > 0 and {r.status for r in replies} <= {200, 429}, [r.status for r in replies]
    # The responses are out, but their access-log entries may still sit in Envoy's buffer: the
    # in-flight counts fall to zero once it is flushed, within the flush interval (plus the
    # scheduling slack of a busy 2-core machine; far below the sweeper's timeout).
    await wait_until(lambda: total_inflight(stack) == 0, timeout=FLUSH_S + 5, what="in-flight 0")
    elapsed = time.monotonic() - answered
    assert elapsed < FLUSH_S + 5.0, elapsed  # generous: 2 shared cores; the sweeper needs 330 s
    assert front.pending == 0
    assert sample(running_requests, {"model_name": MODEL}) == 0
    assert director.outcomes.get("completed", 0) == done + ok
    assert front.completions.swept == 0


async def test_usage_is_estimated_and_labelled(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    front = _front(stack)
    await wait_until(lambda: front.pending == 0, what="earlier requests completed")
    before = sample("endpoint_picker_usage_estimated_total", LABELS)
    tokens = sample("inference_objective_output_tokens_count", LABELS)
    sizes = sample("inference_objective_response_sizes_sum", LABELS)
    reply = await post(session, stack, completion("estimate me", 4))
    assert reply.status == 200
    await wait_until(
        lambda: sample("endpoint_picker_usage_estimated_total", LABELS) == before + 1,
        what="an estimated usage",
    )
    assert sample("inference_objective_output_tokens_count", LABELS) == tokens + 1
    # Response bytes are exact (Envoy counts them): the body the client read.
    assert sample("inference_objective_response_sizes_sum", LABELS) == sizes + len(reply.body)


async def test_header_only_requests_leave_nothing_to_complete(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    front = _front(stack)
    await wait_until(lambda: front.pending == 0, what="earlier requests completed")
    async with session.get(stack.url + "/v1/models") as r:
        assert r.status == 200
        assert r.headers["x-sim-endpoint"] in stack.pool_endpoints
    assert front.pending == 0  # nothing to complete for a header-only pick: no ticket
