"""The per-stream state machine, driven message by message without Envoy or gRPC I/O."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from tests.fakes.director import FakeDirector
from tests.unit.extproc_fakes import body_msg, headers_msg, response_headers_msg
from tests.unit.extproc_fakes import run as run_stream

from endpoint_picker.errors import Code, InferenceError, ServiceUnavailable
from endpoint_picker.extproc.stream import (
    BUFFERED,
    STREAMED,
    ResponseIncomplete,
    StreamFailed,
)


def errors(d: FakeDirector) -> list[BaseException | None]:
    """The error each ``finish`` call carried, in order."""
    return [error for _, error in d.finished]


async def run(director: FakeDirector, msgs: list[Any]) -> list[pb.ProcessingResponse]:
    return (await run_stream(director, msgs))[0]


def set_headers(common: Any) -> dict[str, str]:
    return {o.header.key: o.header.raw_value.decode() for o in common.header_mutation.set_headers}


async def test_duplex_request_is_answered_after_the_whole_body() -> None:
    d = FakeDirector()
    d.response_headers_to_set = {"x-extra": "1"}
    out = await run(
        d,
        [
            headers_msg(headers={"x-request-id": "r1"}),
            body_msg(b'{"model":', False),
            body_msg(b'"m"}', True),
            response_headers_msg(),
            body_msg(b"part1", False, response=True),
            body_msg(b"part2", True, response=True),
        ],
    )
    assert d.calls[0][2] == b'{"model":"m"}' and d.calls[0][3] is True
    kinds = [o.WhichOneof("response") for o in out]
    assert kinds == [
        "request_headers",
        "request_body",
        "response_headers",
        "response_body",
        "response_body",
    ]
    hs = set_headers(out[0].request_headers.response)
    assert hs["x-gateway-destination-endpoint"] == "10.0.0.1:8000"
    assert hs["content-length"] == str(len(b'{"model":"m"}'))
    assert hs["x-request-id"] == "r1"  # the client's headers re-set as upstream, id unchanged
    assert out[0].request_headers.response.clear_route_cache
    sbr = out[1].request_body.response.body_mutation.streamed_response
    assert (sbr.body, sbr.end_of_stream) == (b'{"model":"m"}', True)
    assert set_headers(out[2].response_headers.response) == {
        "x-went-into-resp-headers": "true",
        "x-extra": "1",
    }
    assert [c for c in d.calls if c[0] == "response_body"] == [
        ("response_body", b"part1", False),
        ("response_body", b"part2", True),
    ]
    assert errors(d) == [None]


async def test_generated_request_id_is_set_upstream() -> None:
    d = FakeDirector()
    out = await run(d, [headers_msg(eos=True)])
    assert set_headers(out[0].request_headers.response)["x-request-id"] == "generated-id"
    assert d.calls[0][3] is False  # header-only: has_body False
    assert d.finished and isinstance(errors(d)[0], ResponseIncomplete)


async def test_buffered_mode_answers_headers_first_and_routes_on_the_body() -> None:
    d = FakeDirector()
    body_out = b'{"model":"target"}'
    d.rewrite_body = lambda _: body_out
    out = await run(d, [headers_msg(mode=BUFFERED), body_msg(b'{"model":"m"}', True)])
    assert out[0].WhichOneof("response") == "request_headers"
    assert not out[0].request_headers.HasField("response")  # plain continue
    common = out[1].request_body.response
    assert set_headers(common)["x-gateway-destination-endpoint"] == "10.0.0.1:8000"
    assert set_headers(common)["content-length"] == str(len(body_out))
    assert common.body_mutation.body == body_out
    md = out[1].dynamic_metadata.fields["envoy.lb"].struct_value.fields
    assert md["x-gateway-destination-endpoint"].string_value == "10.0.0.1:8000"


async def test_streamed_response_mode_replaces_changed_chunks_only() -> None:
    d = FakeDirector()
    d.rewrite_response = bytes.upper
    out = await run(
        d,
        [
            headers_msg(eos=True, resp_mode=STREAMED),
            response_headers_msg(),
            body_msg(b"abc", True, response=True),
        ],
    )
    assert out[-1].response_body.response.body_mutation.body == b"ABC"
    assert errors(d) == [None]


async def test_request_trailers_end_the_body_and_are_answered() -> None:
    d = FakeDirector()
    trailers = pb.ProcessingRequest()
    trailers.request_trailers.SetInParent()
    out = await run(d, [headers_msg(), body_msg(b"{}", False), trailers])
    kinds = [o.WhichOneof("response") for o in out]
    assert kinds == ["request_headers", "request_body", "request_trailers"]
    assert not out[1].request_body.response.body_mutation.streamed_response.end_of_stream


@pytest.mark.parametrize("status", [400, 429, 503])
async def test_inference_errors_become_immediate_responses(status: int) -> None:
    d = FakeDirector()
    code = {400: Code.BAD_REQUEST, 429: Code.RESOURCE_EXHAUSTED, 503: Code.SERVICE_UNAVAILABLE}
    d.error = InferenceError("nope", code[status])
    (out,) = await run(d, [headers_msg(), body_msg(b"{}", True)])
    assert out.immediate_response.status.code == status
    assert out.immediate_response.body == f"inference error: {code[status].value} - nope".encode()
    assert d.finished == []  # no context was handed out


async def test_error_without_status_fails_the_stream() -> None:
    d = FakeDirector()
    d.error = InferenceError("odd", Code.UNKNOWN)
    with pytest.raises(StreamFailed) as err:
        await run(d, [headers_msg(), body_msg(b"{}", True)])
    assert err.value.code == grpc.StatusCode.UNKNOWN


async def test_director_bug_fails_the_stream_with_internal() -> None:
    d = FakeDirector()
    d.error = KeyError("bug")
    with pytest.raises(StreamFailed) as err:
        await run(d, [headers_msg(), body_msg(b"{}", True)])
    assert err.value.code == grpc.StatusCode.INTERNAL


async def test_unsupported_request_mode_is_refused() -> None:
    with pytest.raises(StreamFailed, match="STREAMED is not supported"):
        await run(FakeDirector(), [headers_msg(mode=STREAMED)])


async def test_first_message_must_be_headers() -> None:
    with pytest.raises(StreamFailed, match="request_header_mode"):
        await run(FakeDirector(), [body_msg(b"{}", True)])


async def test_cancellation_mid_response_finishes_once_with_the_error() -> None:
    d = FakeDirector()
    with pytest.raises(asyncio.CancelledError):
        await run(
            d,
            [
                headers_msg(),
                body_msg(b"{}", True),
                response_headers_msg(),
                asyncio.CancelledError(),
            ],
        )
    assert len(d.finished) == 1 and isinstance(errors(d)[0], asyncio.CancelledError)


async def test_the_stream_ends_once_the_response_has_ended() -> None:
    """After the response's last message the EPP ends the stream itself (status OK) instead of
    waiting for Envoy's reset, which grpc-python pays for in memory: the cancellation that would
    follow is never read, and the request finished as a success."""
    d = FakeDirector()
    out, unread = await run_stream(
        d, [headers_msg(eos=True), response_headers_msg(eos=True), asyncio.CancelledError()]
    )
    assert unread == 1
    assert [o.WhichOneof("response") for o in out] == ["request_headers", "response_headers"]
    assert errors(d) == [None]


async def test_the_stream_ends_after_the_last_body_chunk() -> None:
    d = FakeDirector()
    out, unread = await run_stream(
        d,
        [
            headers_msg(eos=True),
            response_headers_msg(),
            body_msg(b"data", True, response=True),
            asyncio.CancelledError(),
        ],
    )
    assert unread == 1 and errors(d) == [None]
    assert out[-1].WhichOneof("response") == "response_body"


async def test_eof_before_the_body_ends_calls_nothing() -> None:
    d = FakeDirector()
    assert await run(d, [headers_msg(), body_msg(b"{", False)]) == []
    assert d.calls == [] and d.finished == []


async def test_subset_hint_is_passed_on() -> None:
    d = FakeDirector()
    msg = headers_msg(eos=True)
    ns = msg.metadata_context.filter_metadata["envoy.lb.subset_hint"]
    ns.fields[
        "x-gateway-destination-endpoint-subset"
    ].list_value.values.add().string_value = "10.0.0.9:80"
    d.error = ServiceUnavailable("failed to find endpoint candidates for serving the request")
    (out,) = await run(d, [msg])
    assert d.calls[0][4] == ["10.0.0.9:80"]
    assert out.immediate_response.status.code == 503


async def test_the_served_endpoint_header_reaches_the_director_but_not_the_client() -> None:
    """Our Envoy reports the endpoint that really served (after a retry) as a response header:
    the director gets it, and the answer removes it so clients never see pool addresses."""
    d = FakeDirector()
    served = response_headers_msg()
    served.response_headers.headers.headers.add(
        key="x-gateway-destination-endpoint-served", raw_value=b"10.0.0.2:8000"
    )
    out = await run(d, [headers_msg(eos=True), served])
    seen = next(c[1] for c in d.calls if c[0] == "response_headers")
    assert seen["x-gateway-destination-endpoint-served"] == "10.0.0.2:8000"
    mutation = out[1].response_headers.response.header_mutation
    assert list(mutation.remove_headers) == ["x-gateway-destination-endpoint-served"]
    assert "x-gateway-destination-endpoint-served" not in set_headers(
        out[1].response_headers.response
    )
