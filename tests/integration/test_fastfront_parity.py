"""The same requests through both fronts (ext_proc and fast) must get the same answers: error
statuses and bodies, flow-control outcomes (priority order, queue capacity 429, TTL 503), and
sheddable requests shed (429) while the pool is saturated.

The pool is one simulator held by a *blocker* (a long request, released by disconnecting its
client), so every outcome is decided by the EPP and nothing depends on the machine's speed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from e2e_support import (
    FAIRNESS_HEADER,
    OBJECTIVE_HEADER,
    Reply,
    completion,
    post,
    queued,
    total_inflight,
    wait_until,
)
from fastfront_support import FRONTS, running

from endpoint_picker.runner.stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

GATED = """
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- {name: detector, type: concurrency-detector, parameters: {maxConcurrency: 1}}
- {type: queue-scorer}
schedulingProfiles:
- name: default
  plugins: [{pluginRef: queue-scorer}]
saturationDetector: {pluginRef: detector}
flowControl:
  maxRequests: 4
  defaultRequestTTL: 1500ms
"""
LEGACY = GATED.split("flowControl:")[0] + "flowControl: {enabled: false}\n"
SIM = {"inter_token_latency": 0.02}  # the blocker (400 tokens) would run 8 s

BAD_BODIES = [b"{not json", b'{"prompt": "no model here"}', b"[1, 2, 3]", b'{"model": 7}']


@pytest.fixture(scope="module", params=FRONTS)
def front(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def gated(front: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    directory = tmp_path_factory.mktemp(f"ff-gated-{front}")
    async with running(front, directory, config=GATED, sim_overrides=SIM) as s:
        yield s


# Answers recorded per front, compared once both fronts ran (module order: extproc, then fast).
SEEN: dict[str, dict[str, tuple[int, bytes]]] = {}


def _record(front: str, key: str, reply: Reply) -> None:
    SEEN.setdefault(front, {})[key] = (reply.status, reply.body)


async def _block(stack: Stack, session: aiohttp.ClientSession) -> asyncio.Task[Reply]:
    await wait_until(lambda: total_inflight(stack) == 0 and queued(stack) == 0, what="idle")
    blocker = asyncio.create_task(post(session, stack, completion("block", 400)))
    await wait_until(lambda: total_inflight(stack) == 1, what="the blocker in flight")
    return blocker


async def _release(blocker: asyncio.Task[Reply]) -> None:
    assert not blocker.done(), "the blocker ended by itself: the pool was never held"
    blocker.cancel()
    await asyncio.gather(blocker, return_exceptions=True)


async def test_bad_requests(front: str, gated: Stack, session: aiohttp.ClientSession) -> None:
    for body in BAD_BODIES:
        reply = await post(session, gated, body)
        assert reply.status == 400, reply.body
        assert reply.body.startswith(b"inference error: BadRequest - ")
        assert reply.served_by is None
        _record(front, f"bad {body!r}", reply)


async def test_priority_order_capacity_and_ttl(
    front: str, gated: Stack, session: aiohttp.ClientSession
) -> None:
    blocker = await _block(gated, session)
    tasks: list[tuple[str, asyncio.Task[Reply]]] = []
    for objective in ("low", "high"):  # both lows queue before either high
        for i in range(2):
            headers = {OBJECTIVE_HEADER: objective, FAIRNESS_HEADER: "parity"}
            task = asyncio.create_task(
                post(session, gated, completion(f"{objective} {i}"), headers)
            )
            tasks.append((objective, task))
        await wait_until(lambda: queued(gated) == len(tasks), what=f"{objective} queued")
    shed = await post(session, gated, completion("one too many"), {FAIRNESS_HEADER: "parity"})
    assert shed.status == 429
    _record(front, "capacity", shed)
    await _release(blocker)
    replies = [(objective, await task) for objective, task in tasks]
    assert all(r.status == 200 for _, r in replies), [r.body for _, r in replies]
    order = sorted(replies, key=lambda x: int(x[1].json()["id"].rsplit("-", 1)[1]))
    assert [objective for objective, _ in order] == ["high", "high", "low", "low"]
    # TTL: a request that waits longer than defaultRequestTTL behind a blocker gets 503.
    blocker = await _block(gated, session)
    late = await post(session, gated, completion("too late"), {FAIRNESS_HEADER: "ttl"})
    assert late.status == 503
    _record(front, "ttl", late)
    await _release(blocker)
    await wait_until(lambda: total_inflight(gated) == 0, what="in-flight back to 0")


async def test_a_client_that_leaves_while_queued_frees_its_slot(
    gated: Stack, session: aiohttp.ClientSession
) -> None:
    director = gated.epp.director
    assert director is not None
    cancelled = director.outcomes.get("cancelled", 0)
    blocker = await _block(gated, session)
    leaver = asyncio.create_task(post(session, gated, completion("leaving")))
    await wait_until(lambda: queued(gated) == 1, what="the leaver queued")
    leaver.cancel()
    await asyncio.gather(leaver, return_exceptions=True)
    await wait_until(lambda: queued(gated) == 0, what="the queue emptied")
    await wait_until(lambda: director.outcomes.get("cancelled", 0) == cancelled + 1)
    assert total_inflight(gated) == 1  # only the blocker: the leaver never got a slot
    await _release(blocker)
    await wait_until(lambda: total_inflight(gated) == 0, what="in-flight back to 0")
    assert (await post(session, gated, completion("after"))).status == 200


async def test_legacy_shedding_and_empty_pool(
    front: str, tmp_path_factory: pytest.TempPathFactory, session: aiohttp.ClientSession
) -> None:
    directory = tmp_path_factory.mktemp(f"ff-legacy-{front}")
    async with running(front, directory, config=LEGACY, sim_overrides=SIM) as stack:
        blocker = await _block(stack, session)
        shed = await post(session, stack, completion("shed me"), {OBJECTIVE_HEADER: "low"})
        assert shed.status == 429
        _record(front, "shed", shed)
        kept = await post(session, stack, completion("keep me"), {OBJECTIVE_HEADER: "high"})
        assert kept.status == 200
        await _release(blocker)
        await wait_until(lambda: total_inflight(stack) == 0, what="in-flight back to 0")
    directory = tmp_path_factory.mktemp(f"ff-empty-{front}")
    async with running(front, directory, simulate=0, config=LEGACY) as stack:
        empty = await post(session, stack, completion())
        assert empty.status == 503
        _record(front, "empty pool", empty)


async def test_both_fronts_answered_alike() -> None:
    """Runs last in the module: every recorded answer is the same for both fronts."""
    if set(SEEN) != set(FRONTS):
        pytest.skip("needs both fronts' runs in this session")
    assert SEEN["fast"] == SEEN["extproc"]
    assert len(SEEN["fast"]) == len(BAD_BODIES) + 4
