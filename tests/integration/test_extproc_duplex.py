"""Through a real Envoy in upstream's mode: FULL_DUPLEX_STREAMED both ways, TLS, fail-close,
ORIGINAL_DST on the EPP's header. The director is a FAKE that picks scripted upstreams."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from extproc_support import ENDPOINT_HEADER, EchoUpstream
from tests.fakes.director import FakeDirector

from endpoint_picker.envoy import ManagedEnvoy
from endpoint_picker.errors import BadRequest, Code, InferenceError, ResourceExhausted
from endpoint_picker.errors import ServiceUnavailable as Unavailable
from endpoint_picker.extproc import ExtProcServer, ResponseIncomplete

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stack(
    echo_upstreams: list[EchoUpstream], envoy_factory: Any, start_extproc: Any
) -> tuple[ExtProcServer, ManagedEnvoy]:
    server = await start_extproc(FakeDirector([echo_upstreams[0].endpoint]), secure=True)
    envoy = await envoy_factory(epp_port=server.port, mode="duplex", tls=True)
    return server, envoy


@pytest.fixture
def director(
    stack: tuple[ExtProcServer, ManagedEnvoy], echo_upstreams: list[EchoUpstream]
) -> FakeDirector:
    fake = FakeDirector([echo_upstreams[1].endpoint])
    stack[0].director = fake
    return fake


def url(stack: tuple[ExtProcServer, ManagedEnvoy], path: str = "/v1/completions") -> str:
    return f"http://127.0.0.1:{stack[1].port}{path}"


async def post(
    stack: Any, payload: Any, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    async with aiohttp.ClientSession() as s, s.post(url(stack), data=data, headers=headers) as r:
        return r.status, dict(r.headers), await r.read()


async def test_request_reaches_the_chosen_endpoint(
    stack: Any, director: FakeDirector, echo_upstreams: list[EchoUpstream]
) -> None:
    for _ in range(3):
        status, headers, body = await post(stack, {"model": "m", "prompt": "hi"})
        assert status == 200, body
        assert headers[ENDPOINT_HEADER] == echo_upstreams[1].endpoint
    seen = json.loads(body)
    assert seen["destination_values"] == [echo_upstreams[1].endpoint]
    # Envoy re-frames a FULL_DUPLEX_STREAMED body as chunked; any length it states must be right
    sent = b'{"model": "m", "prompt": "hi"}'
    assert seen["body_len"] == len(sent)
    assert seen["headers"].get("content-length", str(len(sent))) == str(len(sent))
    hdrs, sent_body, has_body, hint = director.requests[-1]
    assert has_body and hint is None
    assert sent_body == b'{"model": "m", "prompt": "hi"}'
    assert hdrs[":path"] == "/v1/completions" and hdrs[":method"] == "POST"


async def test_spoofed_destination_header_is_ignored(
    stack: Any, director: FakeDirector, echo_upstreams: list[EchoUpstream]
) -> None:
    spoofed = echo_upstreams[2].endpoint
    status, headers, body = await post(
        stack, {"model": "m"}, headers={"x-gateway-destination-endpoint": spoofed}
    )
    assert status == 200
    assert headers[ENDPOINT_HEADER] == echo_upstreams[1].endpoint
    assert json.loads(body)["destination_values"] == [echo_upstreams[1].endpoint]
    # stripped before ext_proc: the director never even sees the client's value
    assert "x-gateway-destination-endpoint" not in director.requests[-1][0]


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (BadRequest("model not found in request body"), 400),
        (ResourceExhausted("system saturated, sheddable request dropped"), 429),
        (Unavailable("failed to find endpoint candidates for serving the request"), 503),
    ],
)
async def test_director_errors_become_immediate_responses(
    stack: Any, director: FakeDirector, error: InferenceError, status: int
) -> None:
    director.error = error
    got, headers, body = await post(stack, {"model": "m"})
    assert got == status
    assert body.decode() == f"inference error: {error.code.value} - {error.msg}"
    assert ENDPOINT_HEADER not in headers


async def test_error_without_http_status_fails_the_stream(
    stack: Any, director: FakeDirector
) -> None:
    director.error = InferenceError("boom", Code.UNKNOWN)
    status, headers, _ = await post(stack, {"model": "m"})
    assert status == 500  # fail-close: Envoy answers, nothing reaches an upstream
    assert ENDPOINT_HEADER not in headers


async def test_two_megabyte_body_passes(stack: Any, director: FakeDirector) -> None:
    big = json.dumps({"model": "m", "prompt": "x" * (2 * 1024 * 1024)}).encode()
    status, _, body = await post(stack, big)
    assert status == 200
    seen = json.loads(body)
    assert seen["body_len"] == len(big)
    assert seen["body_sha256"] == hashlib.sha256(big).hexdigest()
    assert director.requests[-1][1] == big


async def test_rewritten_body_is_forwarded_with_its_length(
    stack: Any, director: FakeDirector
) -> None:
    director.rewrite_body = lambda b: b.replace(b'"m"', b'"model-b-long-name"')
    status, _, body = await post(stack, {"model": "m", "prompt": "p"})
    assert status == 200
    seen = json.loads(body)
    assert json.loads(seen["body"]) == {"model": "model-b-long-name", "prompt": "p"}
    assert seen["headers"].get("content-length", str(seen["body_len"])) == str(seen["body_len"])


async def test_header_only_request_is_routed(
    stack: Any, director: FakeDirector, echo_upstreams: list[EchoUpstream]
) -> None:
    async with aiohttp.ClientSession() as s, s.get(url(stack, "/v1/models")) as r:
        assert r.status == 200
        assert r.headers[ENDPOINT_HEADER] == echo_upstreams[1].endpoint
        await r.read()  # the whole response: leaving early is a client disconnect (cancelled)
    assert director.requests[-1][2] is False  # has_body
    await asyncio.wait_for(director.finished_event.wait(), 5)
    assert director.finished[-1][1] is None


async def test_request_id_made_by_the_director_reaches_the_upstream(
    stack: Any, director: FakeDirector
) -> None:
    director.request_id = "rid-from-the-parser"
    status, _, body = await post(stack, {"model": "m"})
    assert status == 200
    assert json.loads(body)["headers"]["x-request-id"] == "rid-from-the-parser"


async def test_response_headers_and_body_pass_through_the_director(
    stack: Any, director: FakeDirector
) -> None:
    director.response_headers_to_set = {"x-epp-note": "seen"}
    status, headers, body = await post(stack, {"model": "m"})
    assert status == 200 and headers["x-epp-note"] == "seen"
    await asyncio.wait_for(director.finished_event.wait(), 5)
    ctx, error = director.finished[-1]
    assert error is None
    assert ctx.response_headers[":status"] == "200"
    assert b"".join(c for c, _ in ctx.chunks) == body
    assert ctx.chunks[-1][1] is True


async def test_sse_flows_chunk_by_chunk(
    stack: Any, director: FakeDirector, echo_upstreams: list[EchoUpstream]
) -> None:
    upstream = echo_upstreams[1]
    upstream.release_last.clear()  # the upstream holds its last event until we saw the first
    try:
        async with (
            aiohttp.ClientSession() as s,
            s.post(url(stack), json={"model": "m", "stream": True, "chunks": 3}) as r,
        ):
            assert r.status == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            first = await asyncio.wait_for(r.content.readuntil(b"\n\n"), 5)
            assert json.loads(first[len(b"data: ") :])["i"] == 0
            upstream.release_last.set()
            rest = await asyncio.wait_for(r.content.read(), 5)
    finally:
        upstream.release_last.set()
    assert rest.endswith(b"data: [DONE]\n\n")
    await asyncio.wait_for(director.finished_event.wait(), 5)
    ctx, error = director.finished[-1]
    assert error is None
    assert len(ctx.chunks) >= 3  # one director call per chunk, not one at the end


async def test_client_disconnect_while_queued_cancels_the_director(
    stack: Any, director: FakeDirector
) -> None:
    director.hold = asyncio.Event()
    async with aiohttp.ClientSession() as s:
        task = asyncio.create_task(s.post(url(stack), json={"model": "m"}))
        for _ in range(200):
            if director.requests:
                break
            await asyncio.sleep(0.01)
        assert director.requests, "the request never reached the director"
        task.cancel()
    for _ in range(300):
        if director.cancelled:
            break
        await asyncio.sleep(0.01)
    assert director.cancelled == 1
    assert director.finished == []  # no context was handed out, so nothing to finish


async def test_client_disconnect_mid_response_finishes_with_an_error(
    stack: Any, director: FakeDirector, echo_upstreams: list[EchoUpstream]
) -> None:
    upstream = echo_upstreams[1]
    upstream.release_last.clear()
    try:
        async with aiohttp.ClientSession() as s:
            r = await s.post(url(stack), json={"model": "m", "stream": True, "chunks": 3})
            await asyncio.wait_for(r.content.readuntil(b"\n\n"), 5)
            r.close()  # drop the connection mid-stream
        await asyncio.wait_for(director.finished_event.wait(), 5)
    finally:
        upstream.release_last.set()
    _, error = director.finished[-1]
    assert error is not None
    assert isinstance(error, (asyncio.CancelledError, ResponseIncomplete))
    assert len(director.finished) == 1
