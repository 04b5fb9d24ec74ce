"""Envoy ext_proc wire messages: parsing helpers and pre-built or hand-encoded responses.

Every response leaves this module already serialized (``bytes``), and the gRPC handler is
registered without a serializer. Constant responses are serialized once at import, and body
chunks (the one message that repeats per response chunk) are encoded by hand around the body
bytes, so a streamed token costs one copy and no protobuf object. The encoders are tested
byte-for-byte against protobuf's own serializer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.type.v3 import http_status_pb2
from google.protobuf import struct_pb2

from endpoint_picker.requests.types import (
    DESTINATION_HEADER,
    DESTINATION_NAMESPACE,
    DESTINATION_SERVED_HEADER,
    FAIRNESS_ID_HEADER,
    HEADER_ALIASES,
    MODEL_REWRITE_HEADER,
    OBJECTIVE_HEADER,
    SUBSET_KEY,
    SUBSET_NAMESPACE,
)

ProcessingRequest = pb.ProcessingRequest

# Upstream's pkg/common/envoy/chunking.go: Envoy's gRPC messages stay well under limits.
BODY_CHUNK_LIMIT = 62_000

# Headers the EPP owns or that describe the body; never copied from a director's extra headers
# (upstream's pkg/epp/util/request/headers.go). The destination is set by this module alone.
SYSTEM_OWNED_HEADERS = frozenset(
    {
        *(
            alias
            for name in (FAIRNESS_ID_HEADER, OBJECTIVE_HEADER, MODEL_REWRITE_HEADER)
            for alias in HEADER_ALIASES[name]
        ),
        "x-gateway-destination-endpoint-subset",
        DESTINATION_HEADER,
        DESTINATION_SERVED_HEADER,
        "content-length",
    }
)

_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD

# ProcessingResponse oneof field numbers (request_body = 3, response_body = 4).
REQUEST_BODY_FIELD = 3
RESPONSE_BODY_FIELD = 4


def _ser(msg: pb.ProcessingResponse) -> bytes:
    return msg.SerializeToString()  # type: ignore[no-any-return]


# Constant answers, serialized once. "Continue" = an empty CommonResponse: pass unchanged.
REQUEST_HEADERS_CONTINUE = _ser(pb.ProcessingResponse(request_headers=pb.HeadersResponse()))
RESPONSE_HEADERS_CONTINUE = _ser(pb.ProcessingResponse(response_headers=pb.HeadersResponse()))
RESPONSE_BODY_CONTINUE = _ser(pb.ProcessingResponse(response_body=pb.BodyResponse()))
REQUEST_TRAILERS_CONTINUE = _ser(pb.ProcessingResponse(request_trailers=pb.TrailersResponse()))
RESPONSE_TRAILERS_CONTINUE = _ser(pb.ProcessingResponse(response_trailers=pb.TrailersResponse()))


def header_map(headers: base_pb2.HeaderMap) -> dict[str, str]:
    """Envoy's header list as a dict; Envoy sends values in ``raw_value`` (bytes)."""
    out: dict[str, str] = {}
    for h in headers.headers:
        raw = h.raw_value
        out[h.key] = raw.decode("utf-8", "surrogateescape") if raw else h.value
    return out


def subset_hint(msg: pb.ProcessingRequest) -> list[str] | None:
    """The data plane's candidate subset (protocol 004), or None when it sent none."""
    if not msg.HasField("metadata_context"):
        return None
    fm = msg.metadata_context.filter_metadata
    if SUBSET_NAMESPACE not in fm:
        return None
    fields = fm[SUBSET_NAMESPACE].fields
    if SUBSET_KEY not in fields:
        return None
    value = fields[SUBSET_KEY]
    if value.HasField("list_value"):
        return [v.string_value for v in value.list_value.values if v.HasField("string_value")]
    if value.HasField("string_value"):  # tolerate a comma-joined string
        return [s.strip() for s in value.string_value.split(",") if s.strip()]
    return []


def served_endpoint(msg: pb.ProcessingRequest) -> str | None:
    """``envoy.lb/x-gateway-destination-endpoint-served`` when the data plane reports it."""
    if not msg.HasField("metadata_context"):
        return None
    fm = msg.metadata_context.filter_metadata
    if DESTINATION_NAMESPACE not in fm:
        return None
    value = fm[DESTINATION_NAMESPACE].fields.get(DESTINATION_SERVED_HEADER)
    return value.string_value if value is not None and value.string_value else None


def _set_headers(headers: Iterable[tuple[str, str]]) -> list[base_pb2.HeaderValueOption]:
    return [
        base_pb2.HeaderValueOption(
            header=base_pb2.HeaderValue(key=k, raw_value=v.encode("utf-8", "surrogateescape")),
            append_action=_OVERWRITE,
        )
        for k, v in headers
    ]


def routing_headers(
    destination: str, extra: Mapping[str, str], content_length: int | None
) -> list[tuple[str, str]]:
    """The request headers the EPP sets: destination first, then extras minus system-owned."""
    out = [(DESTINATION_HEADER, destination)]
    if content_length is not None:
        out.append(("content-length", str(content_length)))
    out.extend((k, v) for k, v in extra.items() if k.lower() not in SYSTEM_OWNED_HEADERS)
    return out


# llm-d-router's --emit-endpoint-scores key, beside the destination in ``envoy.lb``.
DESTINATION_SCORES_KEY = "x-gateway-destination-endpoint-scores"


def _destination_metadata(
    destination: str, scores: Mapping[str, float] | None = None
) -> struct_pb2.Struct:
    md = struct_pb2.Struct()
    lb = md.fields[DESTINATION_NAMESPACE].struct_value
    lb.fields[DESTINATION_HEADER].string_value = destination
    if scores:
        by_endpoint = lb.fields[DESTINATION_SCORES_KEY].struct_value
        for endpoint, score in scores.items():
            by_endpoint.fields[endpoint].number_value = score
    return md


def with_metadata(answer: bytes, metadata: Mapping[str, Mapping[str, object]]) -> bytes:
    """``answer`` with ``dynamic_metadata`` added (namespace -> key -> value). Serialized
    protobuf messages merge when concatenated, so the hand-encoded body chunk stays as it is."""
    md = struct_pb2.Struct()
    for namespace, values in metadata.items():
        md.fields[namespace].struct_value.update(values)
    return answer + _ser(pb.ProcessingResponse(dynamic_metadata=md))


def route_on_headers(
    destination: str, headers: list[tuple[str, str]], scores: Mapping[str, float] | None = None
) -> bytes:
    """Request-headers answer (duplex, header-only): set headers, metadata, re-route."""
    common = pb.CommonResponse(
        header_mutation=pb.HeaderMutation(set_headers=_set_headers(headers)),
        clear_route_cache=True,
    )
    return _ser(
        pb.ProcessingResponse(
            request_headers=pb.HeadersResponse(response=common),
            dynamic_metadata=_destination_metadata(destination, scores),
        )
    )


def route_on_body(
    destination: str,
    headers: list[tuple[str, str]],
    body: bytes | None,
    scores: Mapping[str, float] | None = None,
) -> bytes:
    """BUFFERED-mode request-body answer: Envoy still holds the headers, so mutate them here."""
    common = pb.CommonResponse(
        header_mutation=pb.HeaderMutation(set_headers=_set_headers(headers)),
        clear_route_cache=True,
    )
    if body is not None:
        common.body_mutation.body = body
    return _ser(
        pb.ProcessingResponse(
            request_body=pb.BodyResponse(response=common),
            dynamic_metadata=_destination_metadata(destination, scores),
        )
    )


RESPONSE_MARKER = ("x-went-into-resp-headers", "true")


def response_headers(backend: Mapping[str, str], extra: Mapping[str, str]) -> bytes:
    """Response-headers answer as upstream's (``generateResponseHeaders``): the marker
    ``x-went-into-resp-headers: true``, then the backend's headers re-set with the director's
    changes over them, minus system-owned and pseudo-headers (Envoy will not let those be set)."""
    merged = {**backend, **extra}
    headers = [RESPONSE_MARKER]
    headers.extend(
        (k, v)
        for k, v in merged.items()
        if not k.startswith(":")
        and k.lower() not in SYSTEM_OWNED_HEADERS
        and k.lower() != DESTINATION_SERVED_HEADER
    )
    # The served endpoint, when our Envoy reports it as a header, is for the EPP, not clients.
    removed = [DESTINATION_SERVED_HEADER] if DESTINATION_SERVED_HEADER in backend else []
    mutation = pb.HeaderMutation(set_headers=_set_headers(headers), remove_headers=removed)
    common = pb.CommonResponse(header_mutation=mutation)
    return _ser(pb.ProcessingResponse(response_headers=pb.HeadersResponse(response=common)))


def replaced_response_body(body: bytes) -> bytes:
    """BUFFERED/STREAMED response-body answer replacing the chunk with ``body``."""
    common = pb.CommonResponse(body_mutation=pb.BodyMutation(body=body))
    return _ser(pb.ProcessingResponse(response_body=pb.BodyResponse(response=common)))


def immediate(status: int, body: str) -> bytes:
    """ImmediateResponse: Envoy answers the client itself with ``status`` and ``body``."""
    headers = pb.HeaderMutation(set_headers=_set_headers([("content-type", "text/plain")]))
    resp = pb.ImmediateResponse(
        status=http_status_pb2.HttpStatus(code=status),
        headers=headers,
        body=body.encode(),
        details="epp_" + str(status),
    )
    return _ser(pb.ProcessingResponse(immediate_response=resp))


def _varint(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_EOS = b"\x10\x01"  # StreamedBodyResponse.end_of_stream = true (field 2, varint)


def streamed_chunk(field: int, body: bytes, end_of_stream: bool) -> bytes:
    """One FULL_DUPLEX_STREAMED body answer, hand-encoded:

    ProcessingResponse{<field>: BodyResponse{response: CommonResponse{body_mutation:
    BodyMutation{streamed_response: StreamedBodyResponse{body, end_of_stream}}}}}
    """
    n = len(body)
    sbr_len = (1 + len(_varint(n)) + n if n else 0) + (2 if end_of_stream else 0)
    bm_len = 1 + len(_varint(sbr_len)) + sbr_len  # BodyMutation.streamed_response (3)
    cr_len = 1 + len(_varint(bm_len)) + bm_len  # CommonResponse.body_mutation (3)
    br_len = 1 + len(_varint(cr_len)) + cr_len  # BodyResponse.response (1)
    head = b"".join(
        (
            bytes(((field << 3) | 2,)),
            _varint(br_len),
            b"\x0a",
            _varint(cr_len),
            b"\x1a",
            _varint(bm_len),
            b"\x1a",
            _varint(sbr_len),
            b"\x0a" + _varint(n) if n else b"",
        )
    )
    return b"".join((head, body, _EOS)) if end_of_stream else head + body


def streamed_chunks(field: int, body: bytes, end_of_stream: bool) -> list[bytes]:
    """``body`` split into <= 62,000-byte streamed answers; only the last carries EOS."""
    n = len(body)
    if n <= BODY_CHUNK_LIMIT:
        return [streamed_chunk(field, body, end_of_stream)]
    view = memoryview(body)
    out = []
    for start in range(0, n, BODY_CHUNK_LIMIT):
        last = start + BODY_CHUNK_LIMIT >= n
        out.append(
            streamed_chunk(
                field, bytes(view[start : start + BODY_CHUNK_LIMIT]), end_of_stream and last
            )
        )
    return out
