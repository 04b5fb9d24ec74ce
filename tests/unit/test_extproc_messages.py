"""The hand-encoded and pre-built ext_proc answers against protobuf's own encoding."""

from __future__ import annotations

import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from hypothesis import given
from hypothesis import strategies as st

from endpoint_picker.extproc import messages as m


def reference_chunk(field: str, body: bytes, eos: bool) -> bytes:
    sbr = pb.StreamedBodyResponse(body=body, end_of_stream=eos)
    common = pb.CommonResponse(body_mutation=pb.BodyMutation(streamed_response=sbr))
    resp = pb.ProcessingResponse(**{field: pb.BodyResponse(response=common)})
    return resp.SerializeToString()  # type: ignore[no-any-return]


@pytest.mark.parametrize("size", [0, 1, 100, 127, 128, 16_383, 16_384, 62_000, 70_000])
@pytest.mark.parametrize("eos", [False, True])
def test_streamed_chunk_matches_protobuf(size: int, eos: bool) -> None:
    body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    assert m.streamed_chunk(m.REQUEST_BODY_FIELD, body, eos) == reference_chunk(
        "request_body", body, eos
    )
    assert m.streamed_chunk(m.RESPONSE_BODY_FIELD, body, eos) == reference_chunk(
        "response_body", body, eos
    )


@given(st.binary(max_size=3000), st.booleans())
def test_streamed_chunk_round_trips(body: bytes, eos: bool) -> None:
    parsed = pb.ProcessingResponse.FromString(m.streamed_chunk(m.RESPONSE_BODY_FIELD, body, eos))
    sbr = parsed.response_body.response.body_mutation.streamed_response
    assert parsed.WhichOneof("response") == "response_body"
    assert (sbr.body, sbr.end_of_stream) == (body, eos)


def test_streamed_chunks_split_at_62000_and_mark_only_the_last() -> None:
    body = b"a" * 62_000 + b"b" * 62_000 + b"c" * 5
    parts = [pb.ProcessingResponse.FromString(c) for c in m.streamed_chunks(3, body, True)]
    sbrs = [p.request_body.response.body_mutation.streamed_response for p in parts]
    assert [len(s.body) for s in sbrs] == [62_000, 62_000, 5]
    assert [s.end_of_stream for s in sbrs] == [False, False, True]
    assert b"".join(s.body for s in sbrs) == body
    # not the end of the stream (trailers follow): no chunk says so
    assert not any(
        pb.ProcessingResponse.FromString(
            c
        ).request_body.response.body_mutation.streamed_response.end_of_stream
        for c in m.streamed_chunks(3, body, False)
    )


def test_empty_body_is_one_empty_chunk() -> None:
    (only,) = m.streamed_chunks(3, b"", True)
    sbr = pb.ProcessingResponse.FromString(only).request_body.response.body_mutation
    assert sbr.HasField("streamed_response") and sbr.streamed_response.end_of_stream


def test_header_map_prefers_raw_value() -> None:
    hm = base_pb2.HeaderMap()
    hm.headers.add(key=":path", raw_value=b"/v1/completions")
    hm.headers.add(key="x-old", value="plain")
    hm.headers.add(key="x-bytes", raw_value="caf\u00e9".encode())
    assert m.header_map(hm) == {
        ":path": "/v1/completions",
        "x-old": "plain",
        "x-bytes": "caf\u00e9",
    }


def test_subset_hint_forms() -> None:
    msg = pb.ProcessingRequest()
    assert m.subset_hint(msg) is None
    ns = msg.metadata_context.filter_metadata["envoy.lb.subset_hint"]
    assert m.subset_hint(msg) is None  # namespace without the key
    ns.fields[
        "x-gateway-destination-endpoint-subset"
    ].list_value.values.add().string_value = "10.0.0.1:8000"
    ns.fields["x-gateway-destination-endpoint-subset"].list_value.values.add().number_value = 3
    assert m.subset_hint(msg) == ["10.0.0.1:8000"]
    ns.fields["x-gateway-destination-endpoint-subset"].list_value.Clear()
    assert m.subset_hint(msg) == []  # present and empty: the director must answer 503


def test_served_endpoint_from_metadata() -> None:
    msg = pb.ProcessingRequest()
    assert m.served_endpoint(msg) is None
    fm = msg.metadata_context.filter_metadata["envoy.lb"]
    fm.fields["x-gateway-destination-endpoint-served"].string_value = "10.0.0.2:8000"
    assert m.served_endpoint(msg) == "10.0.0.2:8000"


def test_route_on_headers_sets_destination_header_and_metadata() -> None:
    hs = m.routing_headers(
        "10.0.0.1:8000,10.0.0.2:8000",
        {"x-request-id": "r1", "X-Gateway-Destination-Endpoint": "evil:1", "content-length": "9"},
        42,
    )
    resp = pb.ProcessingResponse.FromString(m.route_on_headers("10.0.0.1:8000,10.0.0.2:8000", hs))
    common = resp.request_headers.response
    assert common.clear_route_cache
    got = {o.header.key: o.header.raw_value.decode() for o in common.header_mutation.set_headers}
    assert got == {
        "x-gateway-destination-endpoint": "10.0.0.1:8000,10.0.0.2:8000",
        "content-length": "42",
        "x-request-id": "r1",
    }
    assert all(
        o.append_action == base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
        for o in common.header_mutation.set_headers
    )
    md = resp.dynamic_metadata.fields["envoy.lb"].struct_value.fields
    assert md["x-gateway-destination-endpoint"].string_value == "10.0.0.1:8000,10.0.0.2:8000"


def test_route_on_body_replaces_the_body_only_when_given() -> None:
    hs = m.routing_headers("10.0.0.1:8000", {}, None)
    same = pb.ProcessingResponse.FromString(m.route_on_body("10.0.0.1:8000", hs, None))
    assert not same.request_body.response.HasField("body_mutation")
    new = pb.ProcessingResponse.FromString(m.route_on_body("10.0.0.1:8000", hs, b"{}"))
    assert new.request_body.response.body_mutation.body == b"{}"


def test_immediate_response() -> None:
    resp = pb.ProcessingResponse.FromString(m.immediate(429, "inference error: X - y"))
    assert resp.immediate_response.status.code == 429
    assert resp.immediate_response.body == b"inference error: X - y"


def test_constant_answers_are_what_they_say() -> None:
    assert pb.ProcessingResponse.FromString(m.RESPONSE_HEADERS_CONTINUE).HasField(
        "response_headers"
    )
    assert pb.ProcessingResponse.FromString(m.REQUEST_TRAILERS_CONTINUE).HasField(
        "request_trailers"
    )
    answer = pb.ProcessingResponse.FromString(
        m.response_headers({":status": "200", "x-b": "2", "content-length": "9"}, {"x-a": "1"})
    )
    opts = answer.response_headers.response.header_mutation.set_headers
    # upstream's marker first, then the backend's headers with the director's over them;
    # pseudo-headers and system-owned ones (content-length) are not re-set
    assert [(o.header.key, o.header.raw_value) for o in opts] == [
        ("x-went-into-resp-headers", b"true"),
        ("x-b", b"2"),
        ("x-a", b"1"),
    ]
