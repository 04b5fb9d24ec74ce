"""The fast front end to end (real Envoy, EPP, simulators): routing, spoofing, the response path
over the access log, and in-flight accounting returning to zero after a burst."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from e2e_support import (
    DESTINATION_HEADER,
    MODEL,
    TEST_SELECTION_HEADER,
    completion,
    post,
    sample,
    total_inflight,
    wait_until,
)
from fastfront_support import FastStack, running

from endpoint_picker.envoy.fast import TICKET_HEADER

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

LABELS = {"model_name": MODEL, "target_model_name": MODEL}
LOG_LINE = re.compile(r"upstream=(\S+) md=(\S+) rid=(\S+)")
FLUSH_S = 0.1  # the access-log flush interval these stacks use
PICKED = """
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- {name: header-based-testing-filter, type: header-based-testing-filter}
schedulingProfiles:
- name: conformance
  plugins: [{pluginRef: header-based-testing-filter}]
"""


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[FastStack]:
    directory = tmp_path_factory.mktemp("ff-routing")
    async with running(
        "fast", directory, simulate=3, access_log=True, als_flush_interval_s=FLUSH_S
    ) as s:
        assert isinstance(s, FastStack)
        yield s


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def picked(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[FastStack]:
    directory = tmp_path_factory.mktemp("ff-picked")
    async with running("fast", directory, simulate=3, config=PICKED) as s:
        assert isinstance(s, FastStack)
        yield s


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def _access_log(stack: FastStack) -> dict[str, tuple[str, str]]:
    path = Path(stack.options.access_log_path or "")
    lines = path.read_text().splitlines() if path.exists() else []
    return {m[3]: (m[1], m[2]) for m in map(LOG_LINE.search, lines) if m}


async def test_requests_reach_the_endpoint_the_epp_chose(
    stack: FastStack, session: aiohttp.ClientSession
) -> None:
    served: dict[str, str | None] = {}
    for i in range(6):
        rid = f"ff-route-{i}"
        reply = await post(session, stack, completion(f"route {i}"), {"x-request-id": rid})
        assert reply.status == 200, reply.body
        served[rid] = reply.served_by
    await wait_until(lambda: set(served) <= set(_access_log(stack)), what="access log lines")
    log = _access_log(stack)
    for rid, endpoint in served.items():
        upstream, chosen = log[rid]
        assert chosen in stack.pool_endpoints
        assert upstream == chosen == endpoint, (rid, log[rid], endpoint)


async def test_the_pick_decides_and_spoofed_headers_are_ignored(
    picked: FastStack, session: aiohttp.ClientSession
) -> None:
    target, other = picked.pool_endpoints[:2]
    assert picked.front is not None
    completed = picked.front.completions.completed
    for spoof in (other, "127.0.0.1:1", f"{other},{target}"):
        headers = {TEST_SELECTION_HEADER: target, DESTINATION_HEADER: spoof, TICKET_HEADER: "x-1"}
        reply = await post(session, picked, completion(), headers)
        assert reply.status == 200, reply.body
        assert reply.served_by == target
    # Every entry carried the EPP's ticket, never the client's: all three were completed.
    await wait_until(lambda: picked.front.completions.completed == completed + 3)  # type: ignore[union-attr]
    assert picked.front.completions.unknown == 0


async def test_in_flight_returns_to_zero_within_the_flush_interval_after_a_burst(
    stack: FastStack, session: aiohttp.ClientSession
) -> None:
    assert stack.front is not None
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
    assert stack.front.pending == 0
    assert sample(running_requests, {"model_name": MODEL}) == 0
    assert director.outcomes.get("completed", 0) == done + ok
    assert stack.front.completions.swept == 0


async def test_usage_is_estimated_and_labelled(
    stack: FastStack, session: aiohttp.ClientSession
) -> None:
    front = stack.front
    assert front is not None
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


async def test_sse_streams_through(stack: FastStack, session: aiohttp.ClientSession) -> None:
    payload = completion("stream me", 5, stream=True, stream_options={"include_usage": True})
    reply = await post(session, stack, payload)
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/event-stream")
    events = [ln[6:] for ln in reply.body.decode().splitlines() if ln.startswith("data: ")]
    assert events[-1] == "[DONE]"
    assert json.loads(events[-2])["usage"]["completion_tokens"] >= 1


async def test_a_2mb_body_passes_whole(stack: FastStack, session: aiohttp.ClientSession) -> None:
    size = "inference_objective_request_sizes_sum"
    before = sample(size, LABELS)
    data = json.dumps(completion("big", 2, user="u" * (2 * 1024 * 1024))).encode()
    reply = await post(session, stack, data)
    assert reply.status == 200, reply.body[:200]
    assert reply.json()["usage"]["prompt_tokens"] > 0
    assert sample(size, LABELS) - before == len(data)


async def test_header_only_requests_are_routed_to_the_pool(
    stack: FastStack, session: aiohttp.ClientSession
) -> None:
    front = stack.front
    assert front is not None
    await wait_until(lambda: front.pending == 0, what="earlier requests completed")
    async with session.get(stack.url + "/v1/models") as r:
        assert r.status == 200
        assert r.headers["x-sim-endpoint"] in stack.pool_endpoints
    assert front.pending == 0  # nothing to complete for a header-only pick: no ticket
