"""End to end, default config (flow control on): three simulators, the EPP and a real Envoy.

Requests reach the endpoint the EPP chose (Envoy's access log records the EPP's metadata and the
upstream host; the simulator names itself), client routing headers are ignored, parser errors
come back with upstream's bodies, SSE usage is counted and large bodies pass.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from e2e_support import (
    DESTINATION_HEADER,
    EXACT_USAGE_FRONTS,
    FRONTS,
    MODEL,
    TEST_SELECTION_HEADER,
    access_log,
    completion,
    post,
    running_stack,
    sample,
    total_inflight,
    wait_until,
)

from endpoint_picker.runner.stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

LABELS = {"model_name": MODEL, "target_model_name": MODEL}
BAD_BODIES = [b"{not json", b'{"prompt": "no model here"}', b"[1, 2, 3]", b'{"model": 7}']


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def stack(front: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    directory = tmp_path_factory.mktemp("e2e-routing")
    sim = {"lora": ["sse-lora"]}  # a model of its own for the usage test's metric labels
    async with running_stack(front, directory, simulate=3, access_log=True, sim_overrides=sim) as s:
        yield s


async def test_requests_reach_the_endpoint_the_epp_chose(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    rids = [str(uuid.uuid4()) for _ in range(12)]
    replies = await asyncio.gather(
        *(
            post(session, stack, completion(f"prompt {i}", 4), {"x-request-id": rid})
            for i, rid in enumerate(rids)
        )
    )
    assert [r.status for r in replies] == [200] * len(rids), [r.body for r in replies]
    served = {rid: r.served_by for rid, r in zip(rids, replies, strict=True)}
    assert set(served.values()) <= set(stack.pool_endpoints)
    await wait_until(lambda: set(rids) <= set(access_log(stack)), what="access log lines")
    log = access_log(stack)
    for rid in rids:
        upstream, metadata = log[rid]
        chosen = metadata.split(",")[0]  # primary first, then fallbacks
        assert chosen in stack.pool_endpoints
        assert upstream == chosen == served[rid], (rid, log[rid], served[rid])
    await wait_until(lambda: total_inflight(stack) == 0, what="in-flight back to 0")


async def test_the_header_filter_decides_the_endpoint(
    picked: Stack, session: aiohttp.ClientSession
) -> None:
    for target in [*picked.pool_endpoints, *reversed(picked.pool_endpoints)]:
        reply = await post(session, picked, completion(), {TEST_SELECTION_HEADER: target})
        assert reply.status == 200, reply.body
        assert reply.served_by == target


async def test_spoofed_destination_headers_are_ignored(
    picked: Stack, session: aiohttp.ClientSession
) -> None:
    target, other = picked.pool_endpoints[:2]
    for spoof in (other, "127.0.0.1:1", f"{other},{target}"):
        reply = await post(
            session,
            picked,
            completion(),
            {TEST_SELECTION_HEADER: target, DESTINATION_HEADER: spoof},
        )
        assert reply.status == 200, reply.body
        assert reply.served_by == target


@pytest.mark.parametrize("body", BAD_BODIES)
async def test_bad_requests_get_400_with_upstream_bodies(
    stack: Stack, session: aiohttp.ClientSession, body: bytes, front: str
) -> None:
    before = stack.epp.director.outcomes.get("BadRequest", 0)  # type: ignore[union-attr]
    reply = await post(session, stack, body)
    assert reply.status == 400
    assert reply.body.decode().startswith("inference error: BadRequest - ")
    assert reply.served_by is None  # answered by the EPP, never forwarded
    assert stack.epp.director.outcomes["BadRequest"] == before + 1  # type: ignore[union-attr]


async def test_sse_usage_is_counted(
    stack: Stack, session: aiohttp.ClientSession, front: str
) -> None:
    count = "inference_objective_output_tokens_count"
    total = "inference_objective_output_tokens_sum"
    estimated = "endpoint_picker_usage_estimated_total"
    # Labels no other request uses: other stacks' completions cannot move these samples.
    labels = {"model_name": "sse-lora", "target_model_name": "sse-lora"}
    before = (sample(count, labels), sample(total, labels), sample(estimated, labels))
    payload = completion(
        "count my tokens", 5, model="sse-lora", stream=True, stream_options={"include_usage": True}
    )
    reply = await post(session, stack, payload)
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/event-stream")
    events = [ln[6:] for ln in reply.body.decode().splitlines() if ln.startswith("data: ")]
    assert events[-1] == "[DONE]"
    usage = json.loads(events[-2])["usage"]
    assert 1 <= usage["completion_tokens"] <= 5  # the simulator may stop early, as at EOS
    await wait_until(lambda: sample(count, labels) == before[0] + 1, what="usage recorded")
    recorded = sample(total, labels) - before[1]
    if front in EXACT_USAGE_FRONTS:
        assert recorded == usage["completion_tokens"]
        assert sample(estimated, labels) == before[2]
    else:  # estimated from the response size, capped by max_tokens, and said to be estimated
        assert 1 <= recorded <= 5
        assert sample(estimated, labels) == before[2] + 1


async def test_a_2mb_body_passes_whole(stack: Stack, session: aiohttp.ClientSession) -> None:
    size = "inference_objective_request_sizes_sum"
    before = sample(size, LABELS)
    payload = completion("big", 2, user="u" * (2 * 1024 * 1024))
    data = json.dumps(payload).encode()
    reply = await post(session, stack, data)
    # The simulator parses the JSON it receives: a truncated or reordered body would be a 400.
    assert reply.status == 200, reply.body[:200]
    assert reply.json()["usage"]["prompt_tokens"] > 0
    assert sample(size, LABELS) - before == len(data)


async def test_header_only_requests_are_routed_to_the_pool(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    async with session.get(stack.url + "/v1/models") as r:
        assert r.status == 200
        assert r.headers["x-sim-endpoint"] in stack.pool_endpoints
        assert (await r.json())["data"][0]["id"] == MODEL


async def test_both_fronts_answer_bad_requests_alike(
    tmp_path_factory: pytest.TempPathFactory, session: aiohttp.ClientSession
) -> None:
    """Every 400 body is the same whichever front answers it: both stacks are started here, so
    the comparison needs no other test to have run first."""
    answers: dict[str, list[tuple[int, bytes]]] = {}
    for front in FRONTS:
        directory = tmp_path_factory.mktemp(f"e2e-bad-{front}")
        async with running_stack(front, directory) as s:
            answers[front] = [
                ((r := await post(session, s, body)).status, r.body) for body in BAD_BODIES
            ]
    first, *others = answers.values()
    assert all(status == 400 for status, _ in first)
    assert all(answer == first for answer in others)
