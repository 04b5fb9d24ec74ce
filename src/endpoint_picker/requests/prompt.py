"""The text a request's prefix-cache hash is computed over, rendered deterministically.

Follows upstream's ``PromptText()``: completions/embeddings take the prompt string, or the
strings joined by a space; chat takes each message's text (text blocks only, so multimodal
messages contribute their text parts) followed by a space; responses and conversations take
the JSON of their input. Only these small parts are ever serialised, never the whole body.

The text is cut at ``MAX_PROMPT_CHARS`` (1 Mi characters): prefix matching hashes at most
``maxPrefixBlocksToMatch`` blocks (16 KiB by default), and rendering all of a 15 MB token-id
prompt held the event loop for seconds (issue 18: 3 s of 3.3 s, measured with
``benchmarks/large_prompt.py``). In-flight token estimates read the cut length, so a prompt
longer than that counts as about 256 Ki tokens.
"""

from __future__ import annotations

import json
from typing import Any

from endpoint_picker.errors import BadRequest

MAX_PROMPT_CHARS = 1 << 20


def json_text(value: Any) -> str:
    """Compact JSON with sorted keys (as Go's encoder writes maps): stable across clients."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def prompt_text(value: Any, missing: str) -> str:
    """A completions ``prompt`` / embeddings ``input``: string, strings, or token ids.

    Raises BadRequest(``missing``) when absent or empty, and a shape error for mixed arrays.
    """
    if isinstance(value, str):
        if not value:
            raise BadRequest(missing)
        return value[:MAX_PROMPT_CHARS]
    if not isinstance(value, list) or not value:
        raise BadRequest(missing)
    kinds = set(map(type, value))  # C-speed: a per-item isinstance() took 0.8 s for 2M ids
    if kinds == {str}:
        return " ".join(value)[:MAX_PROMPT_CHARS]
    if kinds == {int}:
        return _token_text(value)
    api = missing.split(" request:", 1)[0]  # "invalid completions" / "invalid embeddings"
    raise BadRequest(
        f"{api} request: must be a string, an array of strings or an array of token ids"
    )


def _token_text(ids: list[int], chunk: int = 4096) -> str:
    """Token ids joined by spaces, rendered a chunk at a time up to ``MAX_PROMPT_CHARS``."""
    parts: list[str] = []
    size = 0
    for i in range(0, len(ids), chunk):
        part = " ".join(map(str, ids[i : i + chunk]))
        parts.append(part)
        size += len(part) + 1
        if size >= MAX_PROMPT_CHARS:
            break
    return " ".join(parts)[:MAX_PROMPT_CHARS]


def _content_text(content: Any) -> str | None:
    """A message's text: a string, or the text of its text blocks; None when malformed."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return None
    parts: list[str] = []
    for block in content:
        if not isinstance(block, dict):
            return None
        text = block.get("text")
        if block.get("type") == "text" and isinstance(text, str):
            parts.append(text)
    return " ".join(parts)


def chat_text(messages: Any) -> str | None:
    """Render chat messages in order; None when ``messages`` is missing, empty or malformed."""
    if not isinstance(messages, list) or not messages:
        return None
    out: list[str] = []
    for message in messages:
        if not isinstance(message, dict):
            return None
        text = _content_text(message.get("content"))
        if text is None:
            return None
        out.append(text)
        out.append(" ")
    return "".join(out)[:MAX_PROMPT_CHARS]
