"""OpenAI request validation and response bodies, apart from HTTP and from the engine.

Errors are :class:`ApiError` with the status the issue and vLLM use (400 malformed, 404 unknown
model, 413 beyond ``max_model_len``, 429 queue full); the server renders them in OpenAI's shape
``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from endpoint_picker.sim.config import SimConfig
from endpoint_picker.sim.tokenizer import output_text, render_chat, tokenize

ERROR_TYPES = {
    400: "BadRequestError",
    404: "NotFoundError",
    413: "BadRequestError",
    429: "RateLimitError",
    500: "InternalServerError",
    503: "ServiceUnavailableError",
}


class ApiError(Exception):
    """A client-facing error with its HTTP status."""

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param

    def body(self) -> bytes:
        err = {
            "message": self.message,
            "type": ERROR_TYPES.get(self.status, "APIError"),
            "param": self.param,
            "code": self.status,
        }
        return json.dumps({"error": err}).encode()


@dataclass(slots=True)
class Parsed:
    """A validated generation request."""

    api: str  # "chat" or "completions"
    model: str
    lora: str | None
    tokens: list[str]
    max_tokens: int
    explicit_max_tokens: bool
    ignore_eos: bool
    stream: bool
    include_usage: bool


def parse_json(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise ApiError(400, f"malformed JSON body: {err}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return body


def resolve_model(cfg: SimConfig, body: dict[str, Any]) -> str | None:
    """The LoRA adapter a request names, or None for the base model; 404 for anything else."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "'model' is required and must be a string", "model")
    if model == cfg.model:
        return None
    if model in cfg.lora:
        return model
    raise ApiError(404, f"The model `{model}` does not exist.", "model")


def _prompt_tokens(prompt: Any) -> list[str]:
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]  # a batch of one
    if isinstance(prompt, str):
        return tokenize(prompt)
    if isinstance(prompt, list) and prompt and all(type(t) is int for t in prompt):
        return [str(t) for t in prompt]
    raise ApiError(
        400,
        "'prompt' must be a string, a list of token ids, or a list of one of "
        "those (batches of several prompts are not supported)",
        "prompt",
    )


def _flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ApiError(400, f"'{name}' must be a boolean", name)
    return value


def parse_generation(cfg: SimConfig, api: str, body: dict[str, Any]) -> Parsed:
    """Validate a completions or chat body against the instance's config."""
    lora = resolve_model(cfg, body)
    if api == "chat":
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise ApiError(400, "'messages' is required and must be a non-empty list", "messages")
        try:
            tokens = tokenize(render_chat(messages))
        except ValueError as err:
            raise ApiError(400, str(err), "messages") from None
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    else:
        if "prompt" not in body:
            raise ApiError(400, "'prompt' is required", "prompt")
        tokens = _prompt_tokens(body["prompt"])
        max_tokens = body.get("max_tokens")
    n = body.get("n", 1)
    if n not in (1, None):
        raise ApiError(400, "only n=1 is supported", "n")
    if not tokens:
        raise ApiError(400, "the prompt is empty", "prompt")
    explicit = max_tokens is not None
    if explicit and (type(max_tokens) is not int or max_tokens < 1):
        raise ApiError(400, "'max_tokens' must be a positive integer", "max_tokens")
    room = cfg.max_model_len - len(tokens)
    if not explicit:
        max_tokens = min(cfg.default_max_tokens, room)
    assert isinstance(max_tokens, int)
    if room < 1 or len(tokens) + max_tokens > cfg.max_model_len:
        raise ApiError(
            413,
            f"This model's maximum context length is {cfg.max_model_len} tokens. However, you "
            f"requested {len(tokens) + max(max_tokens, 0)} tokens ({len(tokens)} in the "
            f"messages, {max(max_tokens, 0)} in the completion).",
        )
    stream = _flag(body, "stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise ApiError(400, "'stream_options' must be an object", "stream_options")
    include_usage = bool(options.get("include_usage", False))
    return Parsed(
        api,
        body["model"],
        lora,
        tokens,
        max_tokens,
        explicit,
        _flag(body, "ignore_eos"),
        stream,
        include_usage,
    )


def usage(prompt: int, completion: int, cached: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


def completion_body(
    p: Parsed, rid: str, generated: int, reason: str, cached: int
) -> dict[str, Any]:
    """A non-streaming chat.completion or text_completion object."""
    text = output_text(0, generated)
    if p.api == "chat":
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "logprobs": None,
            "finish_reason": reason,
        }
        obj = "chat.completion"
    else:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": reason}
        obj = "text_completion"
    return {
        "id": rid,
        "object": obj,
        "created": int(time.time()),
        "model": p.model,
        "choices": [choice],
        "usage": usage(len(p.tokens), generated, cached),
    }


class ChunkWriter:
    """Server-sent-event chunks of one streaming response, pre-rendered around the token text.

    Generated tokens are plain words (see tokenizer), so they go into a JSON string unescaped.
    """

    def __init__(self, p: Parsed, rid: str) -> None:
        self.p = p
        self.rid = rid
        self.created = int(time.time())
        obj = "chat.completion.chunk" if p.api == "chat" else "text_completion"
        head = f'{{"id":"{rid}","object":"{obj}","created":{self.created},"model":'
        self._head = head + json.dumps(p.model) + ',"choices":[{"index":0,'
        if p.api == "chat":
            self._pre = (self._head + '"delta":{"content":"').encode()
            self._mid = b'"},"logprobs":null,"finish_reason":'
        else:
            self._pre = (self._head + '"text":"').encode()
            self._mid = b'","logprobs":null,"finish_reason":'

    def role(self) -> bytes:
        """The chat stream's opening chunk (vLLM sends the role first)."""
        return (
            f'data: {self._head}"delta":{{"role":"assistant","content":""}},"logprobs":null,'
            f'"finish_reason":null}}]}}\n\n'.encode()
        )

    def tokens(self, start: int, stop: int, reason: str | None) -> bytes:
        """Chunks for generated tokens ``start..stop``; the last carries ``reason`` if given."""
        out = []
        for i in range(start, stop):
            fr = b"null" if reason is None or i != stop - 1 else f'"{reason}"'.encode()
            out.append(
                b"data: " + self._pre + output_text(i, i + 1).encode() + self._mid + fr + b"}]}\n\n"
            )
        return b"".join(out)

    def usage(self, generated: int, cached: int) -> bytes:
        body: dict[str, Any] = {
            "id": self.rid,
            "object": "chat.completion.chunk" if self.p.api == "chat" else "text_completion",
            "created": self.created,
            "model": self.p.model,
            "choices": [],
            "usage": usage(len(self.p.tokens), generated, cached),
        }
        return b"data: " + json.dumps(body).encode() + b"\n\n"

    @staticmethod
    def done() -> bytes:
        return b"data: [DONE]\n\n"
