"""Fuzzing (issue 18): hypothesis drives the ext_proc stream state machine with message
sequences in any order (headers, split bodies, trailers, response first, end of stream in odd
places, a read that fails), and the real director with request bodies of any shape.

Invariants: a stream never raises anything but ``StreamFailed`` (the defined way to fail it),
every context the director hands out is finished exactly once, every answer is a valid
ProcessingResponse; a body is either routed or answered with a 4xx/5xx ``InferenceError``
(4xx for anything wrong with the body), and the in-flight books end at zero.
Examples are bounded so the whole module runs in seconds.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.fakes.director import FakeDirector
from tests.unit.extproc_fakes import scripted
from tests.unit.reliability_support import World, make_world

from endpoint_picker.errors import BadRequest, InferenceError
from endpoint_picker.extproc.stream import (
    BUFFERED,
    DUPLEX,
    NONE,
    STREAMED,
    StreamFailed,
    handle_stream,
)

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

MODES = st.sampled_from([NONE, STREAMED, BUFFERED, DUPLEX])
BYTES = st.binary(max_size=64)


@st.composite
def request_headers(draw: st.DrawFn) -> pb.ProcessingRequest:
    msg = pb.ProcessingRequest()
    msg.request_headers.end_of_stream = draw(st.booleans())
    pairs = draw(
        st.lists(
            st.tuples(
                st.sampled_from(
                    [
                        ":path",
                        ":method",
                        "x-request-id",
                        "x-gateway-inference-fairness-id",
                        "x-gateway-inference-objective",
                        "content-type",
                        "x-other",
                    ]
                ),
                BYTES,
            ),
            max_size=5,
        )
    )
    for key, value in pairs:
        msg.request_headers.headers.headers.add(key=key, raw_value=value)
    if draw(st.booleans()):
        msg.protocol_config.request_body_mode = draw(MODES)
        msg.protocol_config.response_body_mode = draw(MODES)
    return msg


def _body(field: str) -> st.SearchStrategy[pb.ProcessingRequest]:
    def build(data: bytes, eos: bool) -> pb.ProcessingRequest:
        msg = pb.ProcessingRequest()
        part = getattr(msg, field)
        part.body, part.end_of_stream = data, eos
        return msg

    return st.builds(build, BYTES, st.booleans())


def _simple(field: str, eos: bool = False) -> st.SearchStrategy[pb.ProcessingRequest]:
    def build(end: bool) -> pb.ProcessingRequest:
        msg = pb.ProcessingRequest()
        getattr(msg, field).SetInParent()
        if field == "response_headers":
            msg.response_headers.end_of_stream = end
            msg.response_headers.headers.headers.add(key=":status", raw_value=b"200")
        return msg

    return st.builds(build, st.booleans() if eos else st.just(False))


MESSAGE = st.one_of(
    request_headers(),
    _body("request_body"),
    _simple("request_trailers"),
    _simple("response_headers", eos=True),
    _body("response_body"),
    _simple("response_trailers"),
)


@st.composite
def streams(draw: st.DrawFn) -> list[Any]:
    """Mostly well-started streams (headers first), some starting anywhere; maybe a failed read."""
    msgs: list[Any] = draw(st.lists(MESSAGE, max_size=8))
    if draw(st.integers(0, 3)):
        msgs.insert(0, draw(request_headers()))
    if draw(st.integers(0, 5)) == 0:
        msgs.insert(draw(st.integers(0, len(msgs))), ConnectionResetError("stream reset"))
    return msgs


async def _drive(director: FakeDirector, msgs: list[Any]) -> list[bytes]:
    read, write, _, out = scripted(msgs)
    try:
        await handle_stream(director, read, write, max_body_bytes=100)
    except (StreamFailed, ConnectionResetError):
        pass  # the defined failure, or the transport's own error passed on
    return out


@FUZZ
@given(streams(), st.sampled_from([None, BadRequest("bad"), RuntimeError("bug")]))
def test_a_stream_never_raises_and_accounts_every_request_once(
    msgs: list[Any], error: BaseException | None
) -> None:
    director = FakeDirector()
    director.error = error
    out = asyncio.run(_drive(director, msgs))
    handed_out = 0 if error is not None else len(director.requests)
    handed_out += director.calls.count(("response_only",))  # streams that began with a response
    assert handed_out == len(director.finished)  # exactly once each
    for data in out:
        pb.ProcessingResponse.FromString(data)  # every answer is a valid message


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "model": st.one_of(st.just("m"), JSON),
        "prompt": st.one_of(st.text(max_size=20), st.lists(st.integers(), max_size=5), JSON),
        "messages": JSON,
        "input": JSON,
        "max_tokens": st.one_of(st.integers(-(10**20), 10**20), st.floats(), JSON),
        "stream": JSON,
        "cache_salt": JSON,
    },
)
BODIES = st.one_of(
    FIELDS.map(lambda d: json.dumps(d).encode()),
    JSON.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=40),
    st.integers(1, 3000).map(lambda n: b'{"model":"m","prompt":' + b"[" * n + b"]" * n + b"}"),
)
PATHS = st.sampled_from(["/v1/completions", "/v1/chat/completions", "/v1/responses",
                         "/v1/embeddings", "/v1/conversations", "/other"])  # fmt: skip


async def _route_all(bodies: list[tuple[str, bytes]]) -> World:
    world = await make_world()
    try:
        for path, data in bodies:
            world.scrape()
            try:
                ctx = await world.director.handle_request({":path": path}, data)
            except InferenceError as err:
                assert err.http_status is not None
                assert 400 <= err.http_status < 500, (data, err)
                continue
            world.director.finish(ctx)
        return world
    finally:
        await world.admission.stop()


@FUZZ
@given(st.lists(st.tuples(PATHS, BODIES), min_size=1, max_size=4))
def test_any_body_is_routed_or_answered_4xx_and_the_books_balance(
    bodies: list[tuple[str, bytes]],
) -> None:
    world = asyncio.run(_route_all(bodies))
    for ep in world.datastore.endpoints():
        assert ep.inflight_requests == 0 and ep.inflight_tokens == 0
    assert world.admission.registry.len == 0
