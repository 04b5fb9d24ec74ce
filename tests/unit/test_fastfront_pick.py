"""The pick endpoint over a real socket (no Envoy): answers, errors, health, disconnects; and the
fast bootstrap's structure and validation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from tests.fakes.director import FakeDirector

from endpoint_picker.envoy import validate
from endpoint_picker.envoy.fast import STRIPPED_HEADERS, TICKET_HEADER, fast_bootstrap
from endpoint_picker.errors import ConfigError, InferenceError, ResourceExhausted
from endpoint_picker.errors import ServiceUnavailable as Unavailable
from endpoint_picker.fastfront import FastFront


@pytest_asyncio.fixture
async def front() -> AsyncIterator[FastFront]:
    f = FastFront(FakeDirector(["10.0.0.1:8000,10.0.0.2:8000"]), "127.0.0.1", 0, 0)
    await f.start()
    yield f
    await f.stop()


async def _call(front: FastFront, raw: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", front.port)
    writer.write(raw)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        (
            int(ln.split(b":")[1])
            for ln in head.split(b"\r\n")
            if ln.lower().startswith(b"content-length")
        ),
        0,
    )
    body = await reader.readexactly(length)
    writer.close()
    return head + body


def _post(path: str, body: bytes, extra: str = "") -> bytes:
    return (
        f"POST /pick{path} HTTP/1.1\r\nhost: gw\r\nx-request-id: rid-1\r\n{extra}"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body


async def test_a_pick_answers_200_with_the_primary_destination_and_a_ticket(
    front: FastFront,
) -> None:
    director: FakeDirector = front.director  # type: ignore[assignment]
    reply = await _call(front, _post("/v1/completions?x=1", b'{"model":"m"}'))
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"x-gateway-destination-endpoint: 10.0.0.1:8000\r\n" in reply
    assert f"{TICKET_HEADER}: ".encode() in reply
    assert b"x-request-id" not in reply  # the client's id is kept, not repeated
    [(headers, body, has_body, _)] = director.requests
    assert headers[":path"] == "/v1/completions?x=1" and headers[":method"] == "POST"
    assert headers[":authority"] == "gw" and body == b'{"model":"m"}' and has_body
    assert front.pending == 1


async def test_header_only_picks_get_no_ticket(front: FastFront) -> None:
    reply = await _call(front, b"GET /pick/v1/models HTTP/1.1\r\nhost: gw\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 200 OK") and TICKET_HEADER.encode() not in reply
    assert b"x-request-id: generated-id\r\n" in reply  # the director's id goes upstream
    assert front.pending == 0


@pytest.mark.parametrize(
    ("error", "wire"),
    [(ResourceExhausted("queue full"), b"429"), (Unavailable("no endpoints"), b"453")],
)
async def test_errors_carry_the_director_body_5xx_under_a_standin(
    front: FastFront, error: InferenceError, wire: bytes
) -> None:
    front.director.error = error  # type: ignore[attr-defined]
    reply = await _call(front, _post("/v1/completions", b"{}"))
    assert reply.startswith(b"HTTP/1.1 " + wire)
    assert reply.endswith(error.body.encode())
    assert front.pending == 0


async def test_errors_without_a_status_abort_the_side_call(front: FastFront) -> None:
    front.director.error = InferenceError("odd", code=None)  # type: ignore[attr-defined]
    front.director.error.code = front.director.error.code.UNKNOWN  # type: ignore[attr-defined]
    reader, writer = await asyncio.open_connection("127.0.0.1", front.port)
    writer.write(_post("/v1/completions", b"{}"))
    assert await reader.read() == b""  # closed without an answer: Envoy's failure mode applies
    writer.close()


async def test_a_disconnect_while_queued_cancels_the_pick(front: FastFront) -> None:
    director: FakeDirector = front.director  # type: ignore[assignment]
    director.hold = asyncio.Event()
    _, writer = await asyncio.open_connection("127.0.0.1", front.port)
    writer.write(_post("/v1/completions", b"{}"))
    await writer.drain()
    for _ in range(200):
        if director.requests:
            break
        await asyncio.sleep(0.01)
    writer.close()
    for _ in range(200):
        if director.cancelled:
            break
        await asyncio.sleep(0.01)
    assert director.cancelled == 1 and front.pending == 0


async def test_health_and_unknown_paths_and_bad_http(front: FastFront) -> None:
    assert (await _call(front, b"GET /healthz HTTP/1.1\r\n\r\n")).endswith(b"\r\n\r\nok")
    assert (await _call(front, b"GET /v1/models HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 404")
    assert (await _call(front, b"NOT HTTP AT ALL\r\n\r\n")).startswith(b"HTTP/1.1 400")


async def test_keep_alive_serves_several_picks_on_one_connection(front: FastFront) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", front.port)
    for _ in range(3):
        writer.write(_post("/v1/completions", b"{}"))
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK")
    writer.close()
    assert front.pending == 3


async def test_pipelined_requests_are_answered_in_order(front: FastFront) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", front.port)
    health = b"GET /healthz HTTP/1.1\r\n\r\n"
    writer.write(_post("/a", b"{}") + health + _post("/b", b"{}") + health)
    data = b""
    while data.count(b"HTTP/1.1 ") < 4 or not data.endswith(b"ok"):
        data += await reader.read(65536)
    writer.close()
    replies = data.split(b"HTTP/1.1 ")[1:]
    assert [r[:3] for r in replies] == [b"200"] * 4
    assert [r.endswith(b"ok") for r in replies] == [False, True, False, True]
    director: FakeDirector = front.director  # type: ignore[assignment]
    assert [h[":path"] for h, *_ in director.requests] == ["/a", "/b"]


async def test_stop_finishes_what_is_still_open() -> None:
    director = FakeDirector()
    f = FastFront(director, "127.0.0.1", 0, 0)
    await f.start()
    await _call(f, _post("/v1/completions", b"{}"))
    await f.stop()
    assert len(director.finished) == 1 and f.pending == 0


def test_the_fast_bootstrap_strips_before_the_side_call_and_validates() -> None:
    config = fast_bootstrap(0, "127.0.0.1", 9004, 9005, access_log_path="/dev/null")
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    filters = [f["name"] for f in hcm["typed_config"]["http_filters"]]
    assert filters == [
        "envoy.filters.http.header_mutation",
        "envoy.filters.http.ext_authz",
        "envoy.filters.http.router",
    ]
    removed = hcm["typed_config"]["http_filters"][0]["typed_config"]["mutations"]
    assert {m["remove"] for m in removed["request_mutations"]} == set(STRIPPED_HEADERS)
    validate(config)
    pool = ["127.0.0.1:8000", "127.0.0.1:8001"]
    validate(
        fast_bootstrap(0, "127.0.0.1", 9004, 9005, failure_mode="FailOpen", pool_endpoints=pool)
    )


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"failure_mode": "FailOpen"}, "FailOpen needs the pool"),
        ({"failure_mode": "Maybe"}, "failure mode"),
        ({"als_flush_interval_s": 0}, "flush interval"),
        ({"pool_endpoints": ["pod-a:8000"]}, "IP addresses"),
    ],
)
def test_bad_fast_bootstraps_are_config_errors(kwargs: dict[str, Any], reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        fast_bootstrap(0, "127.0.0.1", 9004, 9005, **kwargs)


async def test_a_port_in_use_is_a_config_error(front: FastFront) -> None:
    with pytest.raises(ConfigError, match="in use"):
        await FastFront(FakeDirector(), "127.0.0.1", front.port, 0).start()


def test_the_pick_endpoint_runs_on_uvloop() -> None:
    """``epp run`` uses uvloop, whose transports are not ``asyncio.Transport`` subclasses."""
    import uvloop

    async def main() -> bytes:
        f = FastFront(FakeDirector(), "127.0.0.1", 0, 0)
        await f.start()
        try:
            return await _call(f, _post("/v1/completions", b"{}"))
        finally:
            await f.stop()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(main()).startswith(b"HTTP/1.1 200 OK")
