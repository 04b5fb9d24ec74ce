"""The ``openai-parser``: OpenAI-style JSON bodies -> :class:`InferenceRequest`.

API type comes from the path suffix (upstream's order: conversations, responses,
chat/completions, completions, embeddings; unknown -> completions) and each API is validated
with upstream's messages verbatim, so clients see the same 400s. The body is parsed once with
``json.loads`` on the bytes and kept as a dict; nothing is re-serialised here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from endpoint_picker.errors import BadRequest
from endpoint_picker.requests.common import base_request
from endpoint_picker.requests.prompt import chat_text, json_text, prompt_text
from endpoint_picker.requests.types import MODEL_REWRITE_HEADER, InferenceRequest, header_value
from endpoint_picker.requests.usage import UsageTracker

DEFAULT_PATH = "/v1/completions"
PATH_HEADERS = (":path", "x-original-path", "x-forwarded-path")
# Suffix -> api name, checked in this order (upstream's).
API_SUFFIXES = (
    ("/conversations", "conversations"),
    ("/responses", "responses"),
    ("/chat/completions", "chat/completions"),
    ("/completions", "completions"),
    ("/embeddings", "embeddings"),
)
# Deeper bodies are refused with 400: later steps (prompt rendering, a model rewrite's
# re-serialisation) recurse over the body and must not run out of stack.
MAX_JSON_DEPTH = 128
MAX_TOKENS_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
# What one request may add to in-flight token accounting: no model has a longer output, and
# a larger client value (10**400) must neither overflow a float nor saturate the pool forever.
MAX_ACCOUNTED_TOKENS = 10_000_000


def api_for_path(path: str) -> str:
    """The API a request path addresses (query string ignored); unknown -> completions."""
    path = path.split("?", 1)[0].rstrip("/")
    for suffix, api in API_SUFFIXES:
        if path.endswith(suffix):
            return api
    return "completions"


def request_path(headers: Mapping[str, str], path: str = "") -> str:
    if path:
        return path
    for name in PATH_HEADERS:
        value = headers.get(name)
        if value:
            return value
    return DEFAULT_PATH


def _validate(api: str, body: dict[str, Any]) -> str:
    """Check the API's required field; return the prompt text used for prefix hashing."""
    if api == "conversations":
        items = body.get("items")
        if not isinstance(items, list) or not items:
            raise BadRequest("invalid conversations request: must have items field")
        return json_text(items)
    if api == "responses":
        if body.get("input") is None:
            raise BadRequest("invalid responses request: must have input field")
        value = body["input"]
        return value if isinstance(value, str) else json_text(value)
    if api == "chat/completions":
        text = chat_text(body.get("messages"))
        if text is None:
            raise BadRequest("invalid chat completions request: must have valid messages field")
        return text
    if api == "embeddings":
        return prompt_text(body.get("input"), "invalid embeddings request: must have input field")
    return prompt_text(body.get("prompt"), "invalid completions request: must have prompt field")


def _max_tokens(body: dict[str, Any]) -> int | None:
    """The first numeric output-token limit: a non-negative integer (400 otherwise), capped at
    ``MAX_ACCOUNTED_TOKENS`` for accounting. Other types are not counted (the model server
    answers them); the forwarded body keeps the client's value."""
    for name in MAX_TOKENS_FIELDS:
        value = body.get(name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if isinstance(value, float):
            if not value.is_integer():
                raise BadRequest(f"invalid {name}: must be a non-negative integer, got {value!r}")
            value = int(value)
        if value < 0:
            raise BadRequest(f"invalid {name}: must be a non-negative integer, got {value!r}")
        return min(value, MAX_ACCOUNTED_TOKENS)
    return None


class OpenAIParser:
    """Upstream's ``openai-parser`` (completions, chat, responses, conversations, embeddings)."""

    type_name = "openai-parser"
    # The path suffixes it claims when several parsers are configured (llm-d-router's
    # ``OpenAIParser.Claims``; requests/registry.py picks by them).
    claims = (
        "chat/completions",
        "completions",
        "embeddings",
        "responses",
        "conversations",
        "chat/completions/render",
        "completions/render",
        "images/generations",
    )

    def parse(self, headers: Mapping[str, str], body: bytes, path: str = "") -> InferenceRequest:
        """Parse one request. Raises :class:`BadRequest` with upstream's messages."""
        try:
            return self._parse(headers, body, path)
        except RecursionError:
            # JSON nested about a thousand deep: json.loads (or rendering the prompt) runs out of
            # stack. It is the client's input, so 400, never a 500 that FailOpen would forward.
            raise BadRequest("error unmarshaling request bodyMap: JSON nested too deeply") from None

    def _parse(self, headers: Mapping[str, str], body: bytes, path: str) -> InferenceRequest:
        req = base_request(headers, body)
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as e:
            raise BadRequest(f"error unmarshaling request bodyMap: {e}") from None
        if body.count(b"[") + body.count(b"{") > MAX_JSON_DEPTH and _too_deep(data):
            raise BadRequest(
                f"error unmarshaling request bodyMap: JSON nested deeper than {MAX_JSON_DEPTH}"
            )
        if not isinstance(data, dict):
            raise BadRequest(
                f"error unmarshaling request bodyMap: expected a JSON object, got "
                f"{_json_kind(data)}"
            )
        req.body = data
        req.api = api_for_path(request_path(req.headers, path))
        req.prompt_text = _validate(req.api, data)
        model = data.get("model")
        if not isinstance(model, str):
            raise BadRequest("model not found in request body")
        req.incoming_model = model
        req.target_model = header_value(req.headers, MODEL_REWRITE_HEADER) or model
        salt = data.get("cache_salt")
        req.cache_salt = salt if isinstance(salt, str) else ""
        req.stream = data.get("stream") is True
        req.max_tokens = _max_tokens(data)
        return req

    def usage_tracker(self, content_type: str | None = None) -> UsageTracker | None:
        """A fresh tracker for one response (JSON or SSE by content type)."""
        return UsageTracker(content_type)


def _too_deep(data: Any) -> bool:
    """True when ``data`` nests lists/objects deeper than ``MAX_JSON_DEPTH`` (iterative walk)."""
    stack: list[tuple[Any, int]] = [(data, 1)] if isinstance(data, dict | list) else []
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value
        if depth > MAX_JSON_DEPTH:
            return True
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"
