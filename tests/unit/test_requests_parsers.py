"""openai-parser and passthrough-parser: API routing, upstream's validation messages, fields."""

from __future__ import annotations

import json
import uuid
from typing import Any, cast

import pytest

from endpoint_picker.errors import BadRequest, Code
from endpoint_picker.requests import PARSERS, OpenAIParser, PassthroughParser, api_for_path

P = OpenAIParser()


def parse(body: Any, path: str = "", headers: dict[str, str] | None = None) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return P.parse(headers or {}, raw, path)


def bad(body: Any, path: str = "", headers: dict[str, str] | None = None) -> str:
    with pytest.raises(BadRequest) as info:
        parse(body, path, headers)
    assert info.value.code is Code.BAD_REQUEST
    assert info.value.http_status == 400
    return info.value.msg


@pytest.mark.parametrize(
    ("path", "api"),
    [
        ("/v1/conversations", "conversations"),
        ("/v1/responses", "responses"),
        ("/v1/chat/completions", "chat/completions"),
        ("/v1/completions", "completions"),
        ("/v1/embeddings", "embeddings"),
        ("/v1/chat/completions?x=1", "chat/completions"),
        ("/v1/embeddings/", "embeddings"),
        ("/v1/models", "completions"),
        ("", "completions"),
    ],
)
def test_api_for_path(path: str, api: str) -> None:
    assert api_for_path(path) == api


def test_path_header_precedence() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    headers = {":path": "/v1/chat/completions", "x-original-path": "/v1/completions"}
    assert parse(body, headers=headers).api == "chat/completions"
    assert parse(body, headers={"x-original-path": "/v1/chat/completions"}).api == (
        "chat/completions"
    )
    assert parse(body, headers={"x-forwarded-path": "/v1/chat/completions"}).api == (
        "chat/completions"
    )
    # An explicit path argument beats the headers.
    assert parse({"model": "m", "prompt": "p"}, "/v1/completions", headers).api == "completions"
    # No path at all: completions.
    assert parse({"model": "m", "prompt": "p"}).api == "completions"


CONV = "invalid conversations request: must have items field"
RESP = "invalid responses request: must have input field"
CHAT = "invalid chat completions request: must have valid messages field"
COMP = "invalid completions request: must have prompt field"
EMB = "invalid embeddings request: must have input field"


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/v1/conversations", {"model": "m"}, CONV),
        ("/v1/conversations", {"model": "m", "items": []}, CONV),
        ("/v1/responses", {"model": "m"}, RESP),
        ("/v1/responses", {"model": "m", "input": None}, RESP),
        ("/v1/chat/completions", {"model": "m"}, CHAT),
        ("/v1/chat/completions", {"model": "m", "messages": []}, CHAT),
        ("/v1/chat/completions", {"model": "m", "messages": ["hi"]}, CHAT),
        ("/v1/chat/completions", {"model": "m", "messages": [{"content": 3}]}, CHAT),
        ("/v1/chat/completions", {"model": "m", "messages": [{"content": ["x"]}]}, CHAT),
        ("/v1/completions", {"model": "m"}, COMP),
        ("/v1/completions", {"model": "m", "prompt": ""}, COMP),
        ("/v1/completions", {"model": "m", "prompt": []}, COMP),
        ("/v1/completions", {"model": "m", "prompt": 7}, COMP),
        ("/v1/embeddings", {"model": "m"}, EMB),
        ("/v1/embeddings", {"model": "m", "input": ""}, EMB),
    ],
)
def test_validation_messages_verbatim(path: str, body: Any, message: str) -> None:
    assert bad(body, path) == message


def test_mixed_prompt_arrays_are_rejected() -> None:
    msg = bad({"model": "m", "prompt": ["a", 1]}, "/v1/completions")
    assert msg.startswith("invalid completions request:")
    assert "array of token ids" in msg
    msg = bad({"model": "m", "input": [1, True]}, "/v1/embeddings")
    assert msg.startswith("invalid embeddings request:")


@pytest.mark.parametrize(
    "raw",
    [b"", b"{", b"not json", b'{"model": "m",}', b"\xff\xfe\x00", b"[1,2]", b'"str"', b"null"],
)
def test_malformed_json_is_a_clear_bad_request(raw: bytes) -> None:
    msg = bad(raw, "/v1/completions")
    assert msg.startswith("error unmarshaling request bodyMap: ")
    assert len(msg) > len("error unmarshaling request bodyMap: ")


def test_non_object_body_names_its_kind() -> None:
    assert bad(b"[1]").endswith("expected a JSON object, got an array")
    assert bad(b"null").endswith("got null")


@pytest.mark.parametrize("model", [None, 3, ["m"], {"a": 1}])
def test_missing_or_non_string_model(model: Any) -> None:
    body: dict[str, Any] = {"prompt": "hello"}
    if model is not None:
        body["model"] = model
    assert bad(body, "/v1/completions") == "model not found in request body"


def test_completions_fields() -> None:
    req = parse(
        {
            "model": "llama",
            "prompt": "Once upon a time",
            "stream": True,
            "max_tokens": 64,
            "cache_salt": "tenant-a",
        },
        "/v1/completions",
        {
            "X-Request-Id": "req-1",
            "X-Gateway-Inference-Objective": "premium",
            "X-Gateway-Inference-Fairness-Id": "tenant-a",
            "Content-Type": "application/json",
        },
    )
    assert req.request_id == "req-1"
    assert req.headers["content-type"] == "application/json"
    assert all(k == k.lower() for k in req.headers)
    assert req.api == "completions"
    assert req.incoming_model == req.target_model == "llama"
    assert req.prompt_text == "Once upon a time"
    assert req.stream is True
    assert req.max_tokens == 64
    assert req.cache_salt == "tenant-a"
    assert req.objective == "premium"
    assert req.fairness_id == "tenant-a"
    assert req.body is not None and req.body["prompt"] == "Once upon a time"


def test_raw_body_is_kept_byte_for_byte() -> None:
    raw = b'{ "model" : "m",  "prompt":"x" , "extra": [1, 2.50] }'
    req = P.parse({}, raw, "/v1/completions")
    assert req.raw_body is raw or req.raw_body == raw
    assert req.size_bytes == len(raw)


def test_defaults_generated_id_and_default_flow() -> None:
    req = parse({"model": "m", "prompt": "x"})
    assert str(uuid.UUID(req.request_id)) == req.request_id
    assert parse({"model": "m", "prompt": "x"}).request_id != req.request_id
    assert req.fairness_id == "default-flow"
    assert req.objective is None
    assert req.stream is False
    assert req.max_tokens is None
    assert req.cache_salt == ""


def test_stream_must_be_true_boolean() -> None:
    assert parse({"model": "m", "prompt": "x", "stream": "true"}).stream is False
    assert parse({"model": "m", "prompt": "x", "stream": 1}).stream is False


def test_model_rewrite_header_sets_target() -> None:
    req = parse(
        {"model": "food-review", "prompt": "x"},
        headers={"x-gateway-model-name-rewrite": "food-review-v2"},
    )
    assert req.incoming_model == "food-review"
    assert req.target_model == "food-review-v2"


def test_prompt_shapes() -> None:
    assert parse({"model": "m", "prompt": ["a b", "c"]}).prompt_text == "a b c"
    assert parse({"model": "m", "prompt": [1, 2, 30]}).prompt_text == "1 2 30"
    req = parse({"model": "m", "input": ["x", "y"]}, "/v1/embeddings")
    assert (req.api, req.prompt_text) == ("embeddings", "x y")


def test_chat_prompt_renders_messages_in_order_with_text_parts() -> None:
    body = {
        "model": "m",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA"}},
                    {"type": "text", "text": "this picture?"},
                ],
            },
            {"role": "assistant", "content": None, "tool_calls": []},
            {"role": "user", "content": "Thanks"},
        ],
        "max_completion_tokens": 12,
    }
    req = parse(body, "/v1/chat/completions")
    assert req.prompt_text == "You are terse. What is in this picture?  Thanks "
    assert req.max_tokens == 12
    # Same conversation, different order: different text (prefix hashing depends on order).
    body2 = {**body, "messages": list(reversed(cast(list[Any], body["messages"])))}
    assert parse(body2, "/v1/chat/completions").prompt_text != req.prompt_text


def test_responses_and_conversations_prompt_text_is_stable_json() -> None:
    req = parse({"model": "m", "input": "hello", "max_output_tokens": 5}, "/v1/responses")
    assert (req.api, req.prompt_text, req.max_tokens) == ("responses", "hello", 5)
    a = parse({"model": "m", "input": [{"role": "user", "content": "hé"}]}, "/v1/responses")
    b = P.parse(
        {}, b'{"input":[{"content":"h\\u00e9","role":"user"}],"model":"m"}', "/v1/responses"
    )
    assert a.prompt_text == b.prompt_text == '[{"content":"hé","role":"user"}]'
    conv = parse(
        {"model": "m", "items": [{"type": "message", "role": "user", "content": "hi"}]},
        "/v1/conversations",
    )
    assert conv.api == "conversations"
    assert json.loads(conv.prompt_text) == [{"type": "message", "role": "user", "content": "hi"}]


def test_max_tokens_ignores_booleans_and_strings() -> None:
    assert parse({"model": "m", "prompt": "x", "max_tokens": True}).max_tokens is None
    assert parse({"model": "m", "prompt": "x", "max_tokens": "9"}).max_tokens is None


def test_passthrough_keeps_body_opaque() -> None:
    raw = b"\x00\x01 not json at all"
    req = PassthroughParser().parse(
        {
            "X-Gateway-Inference-Objective": "batch",
            "x-gateway-model-name-rewrite": "m2",
            "x-request-id": "abc",
        },
        raw,
        "/anything",
    )
    assert req.raw_body == raw
    assert req.body is None
    assert req.api == ""
    assert req.prompt_text == ""
    assert req.incoming_model == ""
    assert req.target_model == "m2"
    assert req.objective == "batch"
    assert req.fairness_id == "default-flow"
    assert req.request_id == "abc"
    assert PassthroughParser().usage_tracker("application/json") is None


def test_registry_has_upstream_names() -> None:
    assert set(PARSERS) == {"openai-parser", "passthrough-parser"}
    assert isinstance(PARSERS["openai-parser"], OpenAIParser)
    assert PARSERS["openai-parser"].usage_tracker("text/event-stream") is not None
