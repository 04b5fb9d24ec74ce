"""Usage extraction from JSON and SSE responses (split anywhere), and the model-name rewrite."""

from __future__ import annotations

import itertools
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from endpoint_picker.requests import UsageTracker, rewrite_model_name, usage_from_object
from endpoint_picker.requests.types import Usage


def sse(events: list[Any], done: bool = True, eol: str = "\n") -> bytes:
    out = "".join(f"data: {json.dumps(e)}{eol}{eol}" for e in events)
    if done:
        out += f"data: [DONE]{eol}{eol}"
    return out.encode()


def chunk_event(i: int, usage: Any = None) -> dict[str, Any]:
    return {
        "id": "cmpl-1",
        "object": "chat.completion.chunk",
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": f'tok{i} "usage" talk'}}],
        "usage": usage,
    }


FINAL_USAGE = {
    "prompt_tokens": 120,
    "completion_tokens": 7,
    "total_tokens": 127,
    "prompt_tokens_details": {"cached_tokens": 96},
}
STREAM = sse(
    [chunk_event(i) for i in range(6)]
    + [{"id": "cmpl-1", "object": "chat.completion.chunk", "choices": [], "usage": FINAL_USAGE}]
)


def feed_all(parts: list[bytes], content_type: str | None = None) -> UsageTracker:
    t = UsageTracker(content_type)
    for p in parts:
        t.feed(p)
    return t


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def test_json_completion_usage() -> None:
    body = json.dumps(
        {
            "id": "cmpl-1",
            "object": "text_completion",
            "choices": [{"text": "hi"}],
            "usage": {
                "prompt_tokens": 5,
                "completion_tokens": 3,
                "total_tokens": 8,
                "prompt_tokens_details": {"cached_tokens": 4},
            },
        }
    ).encode()
    t = feed_all([body[:10], body[10:37], body[37:]], "application/json")
    assert t.usage == Usage(prompt_tokens=5, completion_tokens=3, cached_tokens=4)


def test_json_sniffed_without_content_type_and_leading_whitespace() -> None:
    body = b'  \n{"object":"chat.completion","usage":{"prompt_tokens":2,"completion_tokens":9}}'
    t = feed_all([b"  ", body[2:]])
    assert t.usage == Usage(prompt_tokens=2, completion_tokens=9, cached_tokens=None)


def test_json_without_usage_or_invalid() -> None:
    assert feed_all([b'{"object":"chat.completion","choices":[]}']).usage is None
    assert feed_all([b'{"usage": {"prompt_tokens": 1'], "application/json").usage is None
    assert UsageTracker().usage is None


def test_usage_grows_as_body_arrives() -> None:
    t = UsageTracker("application/json")
    t.feed(b'{"object":"text_completion","usage":{"prompt_tokens":3,')
    assert t.usage is None
    t.feed(b'"completion_tokens":4}}')
    assert t.usage == Usage(3, 4, None)


def test_object_type_rules() -> None:
    both = {"input_tokens": 1, "output_tokens": 2, "prompt_tokens": 10, "completion_tokens": 20}
    assert usage_from_object({"object": "response", "usage": both}) == Usage(1, 2)
    assert usage_from_object({"object": "conversation.item", "usage": both}) == Usage(1, 2)
    assert usage_from_object({"object": "chat.completion", "usage": both}) == Usage(10, 20)
    assert usage_from_object({"object": "text_completion", "usage": both}) == Usage(10, 20)
    # Unknown object: input_/output_ first, then prompt_/completion_.
    assert usage_from_object({"object": "list", "usage": both}) == Usage(1, 2)
    emb = {"object": "list", "usage": {"prompt_tokens": 8, "total_tokens": 8}}
    assert usage_from_object(emb) == Usage(8, 0)
    # Responses API cached tokens live under input_tokens_details.
    resp = {"object": "response", "usage": {**both, "input_tokens_details": {"cached_tokens": 1}}}
    assert usage_from_object(resp) == Usage(1, 2, 1)
    assert usage_from_object({"usage": None}) is None
    assert usage_from_object([1, 2]) is None


def test_sse_stream_usage_in_final_chunk() -> None:
    t = feed_all([STREAM], "text/event-stream")
    assert t.usage == Usage(prompt_tokens=120, completion_tokens=7, cached_tokens=96)


def test_sse_without_usage_events() -> None:
    stream = sse([chunk_event(i) for i in range(3)])
    assert feed_all([stream], "text/event-stream; charset=utf-8").usage is None


def test_sse_crlf_and_no_trailing_newline() -> None:
    stream = sse([chunk_event(0), {"object": "chat.completion.chunk", "usage": FINAL_USAGE}], False)
    assert feed_all([stream.replace(b"\n", b"\r\n")]).usage == Usage(120, 7, 96)
    # The last event without its newline is still seen, and seeing it does not consume it.
    last = b'data: {"object":"text_completion","usage":{"prompt_tokens":1,"completion_tokens":2}}'
    t = feed_all([b"data: {}\n\n", last[:20], last[20:]])
    assert t.usage == Usage(1, 2)
    assert t.usage == Usage(1, 2)


def test_sse_last_usage_wins_with_continuous_usage_stats() -> None:
    events = [
        {**chunk_event(i), "usage": {"prompt_tokens": 50, "completion_tokens": i + 1}}
        for i in range(5)
    ]
    assert feed_all([sse(events)]).usage == Usage(50, 5)


def test_responses_api_stream_completed_event() -> None:
    completed = {
        "type": "response.completed",
        "response": {
            "id": "resp_1",
            "object": "response",
            "usage": {
                "input_tokens": 11,
                "output_tokens": 4,
                "input_tokens_details": {"cached_tokens": 0},
            },
        },
    }
    text = (
        'event: response.output_text.delta\ndata: {"type":"response.output_text.delta"}\n\n'
        f"event: response.completed\ndata: {json.dumps(completed)}\n\n"
    ).encode()
    assert feed_all([text]).usage == Usage(11, 4, 0)


def test_null_usage_events_are_not_parsed(monkeypatch: Any) -> None:
    calls: list[bytes] = []
    real = json.loads

    def counting(data: Any) -> Any:
        calls.append(data)
        return real(data)

    monkeypatch.setattr(json, "loads", counting)  # the module the parser calls
    feed_all([STREAM], "text/event-stream")
    assert len(calls) == 1  # only the final event with a real usage object


def test_malformed_event_does_not_hide_later_usage() -> None:
    stream = b'data: {"usage": {broken\n\n' + sse(
        [{"object": "chat.completion.chunk", "usage": FINAL_USAGE}]
    )
    assert feed_all([stream]).usage == Usage(120, 7, 96)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=40))
def test_sse_any_split_gives_same_usage(cuts: list[int]) -> None:
    parts = split_at(STREAM, cuts)
    assert b"".join(parts) == STREAM
    assert feed_all(parts).usage == Usage(120, 7, 96)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=10_000), max_size=20),
    st.integers(min_value=0, max_value=5000),
    st.integers(min_value=0, max_value=5000),
    st.sampled_from(["\n", "\r\n"]),
)
def test_sse_split_property_random_usage(cuts: list[int], p: int, c: int, eol: str) -> None:
    usage = {"prompt_tokens": p, "completion_tokens": c}
    data = sse([chunk_event(0), {"object": "chat.completion.chunk", "usage": usage}], eol=eol)
    assert feed_all(split_at(data, cuts)).usage == Usage(p, c)


# -- model-name rewrite (spec 2.8) --------------------------------------------------------------


def test_rewrite_compact_form() -> None:
    body = b'{"id":"1","model":"llama-v2","choices":[{"text":"model llama-v2"}]}'
    out = rewrite_model_name(body, "llama-v2", "llama")
    assert out == b'{"id":"1","model":"llama","choices":[{"text":"model llama-v2"}]}'


def test_rewrite_spaced_form_only_when_compact_absent() -> None:
    body = b'{"id": "1", "model": "t"}'
    assert rewrite_model_name(body, "t", "in") == b'{"id": "1", "model": "in"}'
    mixed = b'{"model":"t"} {"model": "t"}'
    assert rewrite_model_name(mixed, "t", "in") == b'{"model":"in"} {"model": "t"}'


def test_rewrite_is_noop_when_not_needed() -> None:
    body = b'{"model":"t"}'
    assert rewrite_model_name(body, "t", "t") is body
    assert rewrite_model_name(body, "", "x") is body
    assert rewrite_model_name(body, "t", "") is body
    assert rewrite_model_name(body, "other", "x") is body


def test_rewrite_every_sse_event_in_a_chunk() -> None:
    chunk = b'data: {"model":"t","x":1}\n\ndata: {"model":"t","x":2}\n\n'
    assert rewrite_model_name(chunk, "t", "client") == chunk.replace(b'"t"', b'"client"')


def test_sse_events_without_newlines_split_at_chunk_boundaries() -> None:
    """Upstream parses chunk by chunk, and its hermetic SSE case sends ``data: {}`` then the
    usage event with no newline between: the chunk boundary ends the first event."""
    tracker = UsageTracker("text/event-stream")
    tracker.feed(b"data: {}")
    tracker.feed(b'data: {"usage":{"prompt_tokens":7,"total_tokens":17,"completion_tokens":10}}')
    tracker.feed(b"\ndata: [DONE]")
    assert tracker.usage == Usage(prompt_tokens=7, completion_tokens=10)


def test_a_json_value_split_mid_event_is_not_cut() -> None:
    """Only a complete-looking event (ending in ``}``/``]``) followed by a new ``data:`` is cut."""
    tracker = UsageTracker("text/event-stream")
    tracker.feed(b'data: {"usage":{"prompt_tokens":7,')
    tracker.feed(b'"total_tokens":9,"completion_tokens":2}}\n')
    assert tracker.usage == Usage(prompt_tokens=7, completion_tokens=2)
