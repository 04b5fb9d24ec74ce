"""A deterministic tokenizer stand-in and the chat template the simulator applies.

A token is a run of word characters or one other non-space character (``\\w+|[^\\w\\s]``), so
``"Hello, world!"`` is four tokens. Real BPE tokenizers give more tokens per word, but what the
simulator needs is only that the same text always gives the same tokens, and that a shared text
prefix gives a shared token prefix (which prefix caching and prefix-aware routing rely on).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, cast

import xxhash

_TOKEN = re.compile(r"\w+|[^\w\s]")

# Words the simulator "generates"; cycled, so output text is deterministic.
_VOCAB = tuple(
    [
        "the",
        "quick",
        "brown",
        "fox",
        "jumps",
        "over",
        "a",
        "lazy",
        "dog",
        "while",
        "simulated",
        "tokens",
        "stream",
        "from",
        "an",
        "engine",
        "that",
        "models",
        "queueing",
        "batching",
        "and",
        "caching",
    ]
)


def tokenize(text: str) -> list[str]:
    """Split text into tokens (words and single punctuation characters)."""
    return _TOKEN.findall(text)


_IDS: dict[str, int] = {}  # token -> id, a bounded memo (workloads reuse a small vocabulary)


def token_id(token: str) -> int:
    """The id a token has in KV events and for the EPP's ``token-producer`` (stable, 31-bit)."""
    found = _IDS.get(token)
    if found is None:
        if len(_IDS) >= 1 << 18:
            _IDS.clear()
        found = _IDS[token] = xxhash.xxh32_intdigest(token.encode()) & 0x7FFFFFFF
    return found


def token_ids(text: str) -> list[int]:
    """Token ids of ``text``: what the simulator's tokenizer gives, as ids."""
    tokens = _TOKEN.findall(text)
    found = list(map(_IDS.get, tokens))  # known tokens: one C-level pass
    if None in found:
        return [i if i is not None else token_id(t) for i, t in zip(found, tokens, strict=True)]
    return cast("list[int]", found)


def render_chat(messages: Sequence[Any]) -> str:
    """The prompt a chat request becomes: ``<|role|>\\ncontent\\n`` per message, then the
    assistant header. Content may be a string or a list of ``{"type": "text", "text": ...}``.

    Raises ValueError with a client-facing reason for malformed messages.
    """
    parts: list[str] = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or not isinstance(msg.get("role"), str):
            raise ValueError(f"messages[{i}] must be an object with a string 'role'")
        content = msg.get("content")
        if content is None:
            text = ""
        elif isinstance(content, str):
            text = content
        elif isinstance(content, list):
            text = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        else:
            raise ValueError(f"messages[{i}].content must be a string or a list of parts")
        parts.append(f"<|{msg['role']}|>\n{text}\n")
    parts.append("<|assistant|>\n")
    return "".join(parts)


def output_text(start: int, stop: int) -> str:
    """Generated text of tokens ``start`` (inclusive) to ``stop`` (exclusive)."""
    return "".join(" " + _VOCAB[i % len(_VOCAB)] for i in range(start, stop))
