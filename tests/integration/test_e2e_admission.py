"""End to end under overload, flow control on: priority order, queue capacity, TTL, and a client
that leaves while queued.

The pool is one simulator and the saturation detector is ``concurrency-detector`` with
``maxConcurrency: 1``, so a single long request (the *blocker*) saturates it and everything else
queues in the EPP. The blocker is released by disconnecting its client, never by waiting on a
clock, so nothing here depends on how fast the machine is.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from e2e_support import (
    FAIRNESS_HEADER,
    MODEL,
    OBJECTIVE_HEADER,
    POOL,
    SLOW_SIM,
    Reply,
    block,
    completion,
    gated_config,
    post,
    queued,
    release,
    running_stack,
    sample,
    total_inflight,
    wait_until,
)

from endpoint_picker.flowcontrol import Outcome
from endpoint_picker.runner.stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

GATED = gated_config("{maxRequests: 8}")
WITH_TTL = gated_config("{defaultRequestTTL: 300ms}")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def gated(front: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    directory = tmp_path_factory.mktemp("e2e-gated")
    async with running_stack(front, directory, config=GATED, sim_overrides=SLOW_SIM) as s:
        yield s


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def with_ttl(front: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    directory = tmp_path_factory.mktemp("e2e-ttl")
    async with running_stack(front, directory, config=WITH_TTL, sim_overrides=SLOW_SIM) as s:
        yield s


def _sim_sequence(reply: Reply) -> int:
    """The simulator numbers requests in arrival order: ``cmpl-sim-<n>``."""
    return int(reply.json()["id"].rsplit("-", 1)[1])


async def test_priority_order_holds_under_overload(
    gated: Stack, session: aiohttp.ClientSession
) -> None:
    blocker = await block(gated, session)
    tasks: list[tuple[str, asyncio.Task[Reply]]] = []
    for objective in ("low", "high"):  # every low request is queued before any high one
        for i in range(3):
            headers = {OBJECTIVE_HEADER: objective, FAIRNESS_HEADER: "priority-test"}
            task = asyncio.create_task(
                post(session, gated, completion(f"{objective} {i}"), headers)
            )
            tasks.append((objective, task))
        await wait_until(lambda: queued(gated) == len(tasks), what=f"{objective} queued")
    await release(blocker)
    replies = [(objective, await task) for objective, task in tasks]
    assert all(r.status == 200 for _, r in replies), [r.body for _, r in replies]
    arrival = [objective for objective, r in sorted(replies, key=lambda x: _sim_sequence(x[1]))]
    assert arrival == ["high"] * 3 + ["low"] * 3


async def test_queue_at_capacity_is_shed_with_429(
    gated: Stack, session: aiohttp.ClientSession
) -> None:
    blocker = await block(gated, session)
    headers = {FAIRNESS_HEADER: "capacity-test"}
    waiting = [
        asyncio.create_task(post(session, gated, completion(f"q{i}"), headers)) for i in range(8)
    ]
    await wait_until(lambda: queued(gated) == 8, what="8 queued (maxRequests)")
    shed = await post(session, gated, completion("one too many"), headers)
    assert shed.status == 429
    assert shed.body == (
        b"inference error: ResourceExhausted - request rejected pre-queue: queue at capacity"
    )
    assert shed.served_by is None
    await release(blocker)
    assert [(await t).status for t in waiting] == [200] * 8


async def test_a_client_that_leaves_while_queued_frees_its_slot(
    gated: Stack, session: aiohttp.ClientSession
) -> None:
    director = gated.epp.director
    admission = gated.epp.admission
    assert director is not None
    labels = {
        "fairness_id": "leaver",
        "priority": "0",
        "inference_pool": POOL,
        "model_name": MODEL,
        "target_model_name": MODEL,
    }
    cancelled = director.outcomes.get("cancelled", 0)
    evicted = admission.outcomes[Outcome.EVICTED_CONTEXT_CANCELLED]
    blocker = await block(gated, session)
    leaver = asyncio.create_task(
        post(session, gated, completion("leaving"), {FAIRNESS_HEADER: "leaver"})
    )
    await wait_until(lambda: queued(gated) == 1, what="the leaver queued")
    assert sample("inference_extension_flow_control_queue_size", labels) == 1
    leaver.cancel()
    await asyncio.gather(leaver, return_exceptions=True)
    await wait_until(lambda: queued(gated) == 0, what="the queue emptied")
    await wait_until(lambda: director.outcomes.get("cancelled", 0) == cancelled + 1)
    assert admission.outcomes[Outcome.EVICTED_CONTEXT_CANCELLED] == evicted + 1
    assert sample("inference_extension_flow_control_queue_size", labels) == 0
    assert sample("inference_extension_flow_control_queue_bytes", labels) == 0
    assert total_inflight(gated) == 1  # only the blocker: the leaver never got a slot
    await release(blocker)
    await wait_until(lambda: total_inflight(gated) == 0, what="in-flight back to 0")
    running = {"model_name": MODEL}
    await wait_until(lambda: sample("inference_objective_running_requests", running) == 0)
    after = await post(session, gated, completion("after"))
    assert after.status == 200


async def test_ttl_expiry_in_queue_is_503(with_ttl: Stack, session: aiohttp.ClientSession) -> None:
    blocker = await block(with_ttl, session)
    reply = await post(session, with_ttl, completion("too late"), {FAIRNESS_HEADER: "ttl-test"})
    assert reply.status == 503
    assert reply.body == (
        b"inference error: ServiceUnavailable - request timed out in queue: "
        b"request evicted from queue: request TTL expired"
    )
    assert with_ttl.epp.admission.outcomes[Outcome.EVICTED_TTL] == 1
    await release(blocker)
    assert (await post(session, with_ttl, completion("in time"))).status == 200
