"""Token usage from a model server's response, fed chunk by chunk as it streams past.

Two shapes: one JSON body (``usage`` at the top), or an SSE stream of ``data: {...}`` events
(usage arrives in a late chunk when the client asked for ``stream_options.include_usage``; a
Responses-API stream carries it in ``response.completed``). Streams are the hot path, so an
event is JSON-parsed only when its bytes contain ``"usage"`` with a non-null value; chunk
boundaries may fall anywhere, including inside a line.

Where upstream takes the *first* usage in a stream, we keep the *last*: with vLLM's
``continuous_usage_stats`` every chunk carries cumulative usage and only the last is the total.
"""

from __future__ import annotations

import json
from typing import Any

from endpoint_picker.requests.types import Usage

_USAGE = b'"usage"'
_NULL_USAGE = (b'"usage":null', b'"usage": null')
_SSE_STARTS = (b"data:", b"event:", b":", b"id:", b"retry:")
MAX_BUFFER_BYTES = 32 * 1024 * 1024  # beyond this a JSON body / SSE line is not inspected


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def usage_from_object(obj: Any) -> Usage | None:
    """Usage in a response object or stream event, by upstream's object-type rules."""
    if not isinstance(obj, dict):
        return None
    usage = obj.get("usage")
    kind = obj.get("object")
    if not isinstance(usage, dict):
        response = obj.get("response")
        if obj.get("type") != "response.completed" or not isinstance(response, dict):
            return None
        usage, kind = response.get("usage"), response.get("object", "response")
        if not isinstance(usage, dict):
            return None
    kind = kind if isinstance(kind, str) else ""
    inp, out = _int(usage.get("input_tokens")), _int(usage.get("output_tokens"))
    prompt, completion = _int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens"))
    if kind.startswith(("response", "conversation")):
        p, c = inp, out
    elif kind in ("chat.completion", "chat.completion.chunk", "text_completion"):
        p, c = prompt, completion
    elif inp is not None or out is not None:
        p, c = inp, out
    else:
        p, c = prompt, completion
    cached = None
    for key in ("prompt_tokens_details", "prompt_token_details", "input_tokens_details"):
        details = usage.get(key)
        if isinstance(details, dict) and _int(details.get("cached_tokens")) is not None:
            cached = details["cached_tokens"]
            break
    return Usage(prompt_tokens=p or 0, completion_tokens=c or 0, cached_tokens=cached)


def _has_real_usage(region: bytes) -> bool:
    """False when every ``"usage"`` in the bytes is ``"usage":null`` (OpenAI/vLLM chunks)."""
    return region.count(_USAGE) > sum(region.count(n) for n in _NULL_USAGE)


_EVENT_STARTS = (b"data:", b"event:")


class UsageTracker:
    """Accumulates a response and reports its usage; ``content_type`` picks JSON vs SSE
    (``text/event-stream``); without it the first bytes decide (``data:``/``event:``/``:``)."""

    __slots__ = ("_head", "_json_parts", "_mode", "_parsed", "_size", "_tail", "_usage")

    def __init__(self, content_type: str | None = None) -> None:
        self._mode: str | None = None
        if content_type:
            self._mode = "sse" if "text/event-stream" in content_type.lower() else "json"
        self._usage: Usage | None = None
        self._head = b""  # bytes seen while sniffing the shape
        self._json_parts: list[bytes] = []
        self._tail = b""  # SSE: bytes of the current, unterminated line
        self._size = 0
        self._parsed = True  # JSON: buffer already inspected

    def feed(self, chunk: bytes) -> None:
        """Take the next piece of the response body."""
        if not chunk:
            return
        if self._mode is None:
            # Sniff: wait until the first bytes are decisive (b"d" may yet become b"data:").
            self._head += chunk
            head = self._head.lstrip()
            if not head or any(len(head) < len(m) and m.startswith(head) for m in _SSE_STARTS):
                return
            self._mode = "sse" if head.startswith(_SSE_STARTS) else "json"
            chunk, self._head = self._head, b""
        if self._mode == "json":
            if self._size <= MAX_BUFFER_BYTES:
                self._json_parts.append(chunk)
                self._size += len(chunk)
                self._parsed = False
            return
        tail = self._tail
        if tail and chunk.startswith(_EVENT_STARTS) and tail.rstrip().endswith((b"}", b"]")):
            # The last chunk ended a complete event without its newline, and this one starts
            # the next: the boundary was the line's end (upstream parses chunk by chunk, and
            # its hermetic SSE case sends events with no trailing newline).
            tail += b"\n"
        if b"\n" not in chunk:
            if len(tail) <= MAX_BUFFER_BYTES:
                self._tail = tail + chunk
            return
        data = tail + chunk if tail else chunk
        cut = data.rfind(b"\n")
        self._tail = data[cut + 1 :]
        if _USAGE in data:
            region = data[:cut]
            if _has_real_usage(region):
                self._scan(region)

    def _scan(self, region: bytes) -> None:
        for line in region.split(b"\n"):
            if _USAGE not in line or not line.startswith(b"data:"):
                continue
            if line.count(_USAGE) == 1 and any(n in line for n in _NULL_USAGE):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                continue
            try:
                found = usage_from_object(json.loads(payload))
            except (ValueError, RecursionError):
                continue  # a malformed event is the server's problem, not the request's
            if found is not None:
                self._usage = found

    @property
    def usage(self) -> Usage | None:
        """The usage seen so far (for SSE: the last event carrying one), or None."""
        if self._mode == "json" and not self._parsed:
            self._parsed = True
            body = b"".join(self._json_parts)
            self._json_parts = [body]
            if _USAGE in body and self._size <= MAX_BUFFER_BYTES:
                try:
                    self._usage = usage_from_object(json.loads(body))
                except (ValueError, RecursionError):
                    self._usage = None
        elif self._mode == "sse" and _USAGE in self._tail:
            # A final event without a trailing newline: inspect it without consuming it.
            before = self._usage
            self._scan(self._tail)
            found, self._usage = self._usage, before
            return found
        return self._usage
