"""Upstream's hermetic ext_proc cases, reproduced against our stream with the real director.

The cases are GIE v1.5.0's (``test/integration/epp/hermetic_test.go``, ``common_tests.go``,
``pkg/epp/handlers/response_test.go``): what Envoy sends, and what upstream answers. The
director is the real one (``tests/unit/test_director.py``'s world: datastore, parser, flow
control, scheduler on a fake clock); only gRPC is left out (the stream's I/O is two callables).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from tests.unit.test_director import World, _sample, _world

from endpoint_picker.extproc.stream import DUPLEX, handle_stream

MARKER = ("x-went-into-resp-headers", "true")


@pytest.fixture
async def world() -> AsyncIterator[World]:
    w = await _world()
    yield w
    await w.admission.stop()


def req_headers(**headers: str) -> pb.ProcessingRequest:
    msg = pb.ProcessingRequest()
    for k, v in {":path": "/v1/completions", ":method": "POST", **headers}.items():
        msg.request_headers.headers.headers.add(key=k, raw_value=v.encode())
    msg.protocol_config.request_body_mode = DUPLEX
    msg.protocol_config.response_body_mode = DUPLEX
    return msg


def req_body(body: bytes) -> pb.ProcessingRequest:
    msg = pb.ProcessingRequest()
    msg.request_body.body, msg.request_body.end_of_stream = body, True
    return msg


def resp_headers(**headers: str) -> pb.ProcessingRequest:
    msg = pb.ProcessingRequest()
    for k, v in headers.items():
        msg.response_headers.headers.headers.add(key=k, raw_value=v.encode())
    return msg


def resp_body(chunk: str, eos: bool) -> pb.ProcessingRequest:
    msg = pb.ProcessingRequest()
    msg.response_body.body, msg.response_body.end_of_stream = chunk.encode(), eos
    return msg


def resp_only(headers: dict[str, str], *chunks: str) -> list[pb.ProcessingRequest]:
    """upstream's ``ReqResponseOnly``: response headers, then chunks, EOS on the last."""
    return [
        resp_headers(**headers),
        *(resp_body(c, i == len(chunks) - 1) for i, c in enumerate(chunks)),
    ]


async def run(world: World, msgs: list[Any]) -> list[pb.ProcessingResponse]:
    queue = list(msgs)
    out: list[bytes] = []

    async def read() -> Any:
        return queue.pop(0) if queue else grpc.aio.EOF

    async def write(data: bytes) -> None:
        out.append(data)

    await handle_stream(world.director, read, write)
    return [pb.ProcessingResponse.FromString(b) for b in out]


def set_headers(common: Any) -> list[tuple[str, str]]:
    return [(o.header.key, o.header.raw_value.decode()) for o in common.header_mutation.set_headers]


def body_answers(out: list[pb.ProcessingResponse]) -> list[tuple[str, bool]]:
    return [
        (
            o.response_body.response.body_mutation.streamed_response.body.decode(),
            o.response_body.response.body_mutation.streamed_response.end_of_stream,
        )
        for o in out
        if o.HasField("response_body")
    ]


# -- streams that start with the response (hermetic "response buffering/streaming" cases) ------
async def test_response_only_multi_chunk_json_is_held_and_answered_once(world: World) -> None:
    body = '{"max_tokens":100,"model":"sql-lora-sheddable","prompt":"test6","temperature":0}'
    out = await run(world, resp_only({"content-type": "application/json"}, body[:33], body[33:]))
    assert set_headers(out[0].response_headers.response) == [
        MARKER,
        ("content-type", "application/json"),
    ]
    assert body_answers(out) == [(body, True)]


async def test_response_only_invalid_json_passes_unchanged(world: World) -> None:
    out = await run(world, resp_only({"content-type": "application/json"}, "no healthy upstream"))
    assert body_answers(out) == [("no healthy upstream", True)]


async def test_response_only_empty_eos_chunk(world: World) -> None:
    body = '{"max_tokens":100,"model":"sql-lora-sheddable","prompt":"test6","temperature":0}'
    out = await run(world, resp_only({"content-type": "application/json"}, body, ""))
    assert body_answers(out) == [(body, True)]


async def test_response_only_sse_streams_chunk_by_chunk(world: World) -> None:
    chunks = [
        "data: {}",
        'data: {"usage":{"prompt_tokens":7,"total_tokens":17,"completion_tokens":10}}\n'
        "data: [DONE]",
        "",
    ]
    out = await run(
        world, resp_only({"content-type": "text/event-stream", "status": "200"}, *chunks)
    )
    assert set_headers(out[0].response_headers.response) == [
        MARKER,
        ("content-type", "text/event-stream"),
        ("status", "200"),
    ]
    assert body_answers(out) == [(chunks[0], False), (chunks[1], False), ("", True)]


def _tokens(kind: str) -> tuple[float, float]:
    """(sum, count) of ``inference_objective_<kind>_tokens`` under empty model labels, where
    upstream counts a stream whose request phase it never saw."""
    labels = {"model_name": "", "target_model_name": ""}
    name = f"inference_objective_{kind}_tokens"
    return _sample(f"{name}_sum", **labels), _sample(f"{name}_count", **labels)


async def test_response_only_sse_counts_the_tokens_under_empty_labels(world: World) -> None:
    """Hermetic "response streaming: SSE token counting": input 7 (and output 10) counted."""
    before_in, before_out = _tokens("input"), _tokens("output")
    chunks = [
        "data: {}",
        'data: {"usage":{"prompt_tokens":7,"total_tokens":17,"completion_tokens":10}}\n'
        "data: [DONE]",
        "",
    ]
    await run(world, resp_only({"content-type": "text/event-stream", "status": "200"}, *chunks))
    after_in, after_out = _tokens("input"), _tokens("output")
    assert (after_in[0] - before_in[0], after_in[1] - before_in[1]) == (7, 1)
    assert (after_out[0] - before_out[0], after_out[1] - before_out[1]) == (10, 1)


async def test_response_only_json_counts_the_tokens(world: World) -> None:
    before = _tokens("output")
    body = '{"choices":[],"usage":{"prompt_tokens":11,"total_tokens":111,"completion_tokens":100}}'
    await run(world, resp_only({"content-type": "application/json"}, body[:40], body[40:]))
    after = _tokens("output")
    assert (after[0] - before[0], after[1] - before[1]) == (100, 1)


async def test_response_only_stream_cut_short_counts_nothing(world: World) -> None:
    """No end of stream seen: the context is finished as failed, and no usage is invented."""
    before = _tokens("input")
    await run(world, [resp_headers(**{"content-type": "text/event-stream"}), resp_body("d", False)])
    assert _tokens("input") == before
    assert world.director.admission is not None  # the director is still serving


async def test_response_only_grpc_body_flushes_at_the_trailers(world: World) -> None:
    msgs = [
        resp_headers(**{"content-type": "application/grpc"}),
        resp_body("part1", False),
        resp_body("part2", False),
    ]
    trailers = pb.ProcessingRequest()
    trailers.response_trailers.SetInParent()
    out = await run(world, [*msgs, trailers])
    assert body_answers(out) == [("part1part2", False)]
    assert out[-1].HasField("response_trailers")


# -- whole requests through the real director ----------------------------------------------------
def _request(model: str, **extra: Any) -> list[pb.ProcessingRequest]:
    body = json.dumps({"model": model, "prompt": "hi", "max_tokens": 5, **extra}).encode()
    return [req_headers(**{"x-request-id": "r-1", "x-client": "kept"}), req_body(body)]


async def test_request_headers_are_re_set_beside_the_destination(world: World) -> None:
    world.scrape()
    out = await run(world, _request(f"m-{uuid.uuid4().hex[:6]}"))
    hs = dict(set_headers(out[0].request_headers.response))
    assert hs["x-gateway-destination-endpoint"].endswith(":8000")
    assert hs["x-client"] == "kept" and hs["x-request-id"] == "r-1"
    assert ":path" not in hs and ":method" not in hs


async def test_response_headers_carry_the_marker_and_the_backends_headers(world: World) -> None:
    world.scrape()
    msgs = [
        *_request(f"m-{uuid.uuid4().hex[:6]}"),
        resp_headers(**{":status": "200", "content-type": "application/json", "x-backend": "v"}),
        resp_body("{}", True),
    ]
    out = await run(world, msgs)
    headers_answer = next(o for o in out if o.HasField("response_headers"))
    assert set_headers(headers_answer.response_headers.response) == [
        MARKER,
        ("content-type", "application/json"),
        ("x-backend", "v"),
    ]


async def test_json_response_is_held_rewritten_whole_and_usage_counted(world: World) -> None:
    world.scrape()
    model = f"m-{uuid.uuid4().hex[:6]}"
    rewrite = {"x-gateway-model-name-rewrite": "target-model"}
    msgs = [
        req_headers(**rewrite),
        req_body(json.dumps({"model": model, "prompt": "hi"}).encode()),
        resp_headers(**{":status": "200", "content-type": "application/json"}),
        # the rewritten name is split across chunks: only a held body can be rewritten back
        resp_body('{"model":"target-', False),
        resp_body('model","usage":{"prompt_tokens":11,"completion_tokens":100}}', True),
    ]
    out = await run(world, msgs)
    answers = body_answers(out)
    assert len(answers) == 1 and answers[0][1] is True
    assert json.loads(answers[0][0])["model"] == model
    labels = {"model_name": model, "target_model_name": "target-model"}
    assert _sample("inference_objective_input_tokens_sum", **labels) == 11
    assert _sample("inference_objective_output_tokens_sum", **labels) == 100


async def test_sse_response_is_passed_chunk_by_chunk_and_usage_counted(world: World) -> None:
    world.scrape()
    model = f"m-{uuid.uuid4().hex[:6]}"
    chunks = [
        f'data: {{"model":"{model}","choices":[{{"text":"a"}}]}}\n\n',
        f'data: {{"model":"{model}","choices":[],"usage":{{"prompt_tokens":7,'
        '"total_tokens":17,"completion_tokens":10}}\n\ndata: [DONE]\n\n',
    ]
    msgs = [
        *_request(model, stream=True),
        resp_headers(**{":status": "200", "content-type": "text/event-stream"}),
        resp_body(chunks[0], False),
        resp_body(chunks[1], True),
    ]
    out = await run(world, msgs)
    assert body_answers(out) == [(chunks[0], False), (chunks[1], True)]
    labels = {"model_name": model, "target_model_name": model}
    assert _sample("inference_objective_input_tokens_sum", **labels) == 7
    assert _sample("inference_objective_output_tokens_sum", **labels) == 10
