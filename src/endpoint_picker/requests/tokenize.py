"""Tokenizers for the EPP's ``token-producer``: a model's own, or the simulator's.

Two backends behind one interface (:class:`TokenizerBackend`):

- :class:`HFTokenizer`: the model's ``tokenizer.json`` through the ``tokenizers`` package (Rust),
  or, for byte-level BPE files, a faster equivalent checked against it (requests/tokenize_fast.py).
  Found locally, never downloaded: an explicit path, else ``LOCAL_TOKENIZER_DIR/<model>/``,
  else the Hugging Face cache (``$HF_HOME/hub/models--<org>--<name>/snapshots/*/``), as
  llm-d-kv-cache's local auto-discovery looks.
- :class:`SimTokenizer`: ``epp sim``'s word tokenizer with its token ids, so the EPP's blocks
  line up with a simulated server's.

Chat requests are rendered with a fixed default template before tokenizing: one
``<|role|>\\ncontent\\n`` per message, then ``<|assistant|>\\n`` (the simulator's template, see
sim/tokenizer.py). A model's own Jinja chat template is not applied (that would need a Jinja
runtime on the hot path); where it differs, chat prompts still share prefixes consistently
among themselves, but their block keys are not the engine's.
"""

from __future__ import annotations

import glob
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from endpoint_picker.requests.tokenize_fast import FastBPE, fast_encoder
from endpoint_picker.sim.tokenizer import render_chat
from endpoint_picker.sim.tokenizer import token_id as sim_token_id
from endpoint_picker.sim.tokenizer import token_ids as sim_token_ids

log = logging.getLogger(__name__)


class TokenizerBackend(Protocol):
    name: str

    def encode(self, text: str, add_special_tokens: bool) -> Sequence[int]: ...

    def encode_ids(self, ids: Sequence[int]) -> list[int]:
        """A prompt given as token ids, in this backend's id space."""
        ...


class SimTokenizer:
    """The simulator's tokenizer (sim/tokenizer.py) with its stable 31-bit ids."""

    name = "sim"

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return sim_token_ids(text)

    def encode_ids(self, ids: Sequence[int]) -> list[int]:
        return [sim_token_id(str(i)) for i in ids]


class HFTokenizer:
    """A Hugging Face ``tokenizer.json`` loaded from disk.

    Byte-level BPE files are encoded by a faster equivalent (requests/tokenize_fast.py) when
    ``fast``; its result is compared with the ``tokenizers`` package's on the first
    ``verify_first`` texts and then on one in ``verify_every``, and the first difference
    switches it off for good (with a warning). ``fast_reason`` says why there is none."""

    def __init__(
        self, path: str, fast: bool = True, verify_first: int = 64, verify_every: int = 256
    ) -> None:
        from tokenizers import Tokenizer

        file = Path(path)
        if file.is_dir():
            file = file / "tokenizer.json"
        self.path = str(file)
        self.name = f"hf:{file}"
        self._tok = Tokenizer.from_file(self.path)
        self.verify_first = verify_first
        self.verify_every = verify_every
        self.calls = 0
        self.fast: FastBPE | None = None
        self.fast_reason = "off"
        if fast:
            spec = json.loads(file.read_text(encoding="utf-8"))
            self.fast, self.fast_reason = fast_encoder(spec, self._tok)
            if self.fast is None:
                log.info("tokenizer %s: no fast encoder (%s)", file, self.fast_reason)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        fast = self.fast
        if fast is None:
            return list(self._tok.encode(text, add_special_tokens=add_special_tokens).ids)
        ids = fast.encode(text, add_special_tokens)
        if self._check_due():
            whole = list(self._tok.encode(text, add_special_tokens=add_special_tokens).ids)
            if ids != whole:
                self._fast_differs(text)
                return whole
        return ids

    def encode_split(
        self, text: str, cuts: Sequence[int], add_special_tokens: bool
    ) -> list[list[int]] | None:
        """``text`` encoded in one call and cut at the character offsets ``cuts`` (see
        :meth:`FastBPE.encode_split`); None without the fast encoder or when a cut falls inside
        a token. Checked against the ``tokenizers`` package as :meth:`encode` is."""
        fast = self.fast
        if fast is None:
            return None
        pieces = fast.encode_split(text, cuts, add_special_tokens)
        if self._check_due() and pieces is not None:
            joined = [i for piece in pieces for i in piece]
            if joined != list(self._tok.encode(text, add_special_tokens=add_special_tokens).ids):
                self._fast_differs(text)
                return None
        return pieces

    def _check_due(self) -> bool:
        """Count a fast call; True when it is one the package also answers."""
        self.calls += 1
        return check_due(self.calls, self.verify_first, self.verify_every)

    def _fast_differs(self, text: str) -> None:
        self.fast = None
        self.fast_reason = "it differed from the tokenizers package"
        log.warning(
            "tokenizer %s: the fast encoder differs from the tokenizers package on a "
            "%d-character text; using the tokenizers package from now on",
            self.path,
            len(text),
        )

    def encode_ids(self, ids: Sequence[int]) -> list[int]:
        return list(ids)


def check_due(calls: int, first: int, every: int) -> bool:
    """Whether the ``calls``-th call of a self-checking fast path is checked against the slow
    one: each of the first ``first``, then one in ``every``."""
    return calls <= first or calls % every == 0


def find_tokenizer(model: str, env: dict[str, str] | None = None) -> str | None:
    """A local ``tokenizer.json`` for ``model`` (see the module docstring), or None."""
    env = dict(os.environ) if env is None else env
    if not model:
        return None
    local_dir = env.get("LOCAL_TOKENIZER_DIR", "/mnt/models")
    candidate = Path(local_dir) / model / "tokenizer.json"
    if candidate.is_file():
        return str(candidate)
    hf_home = env.get("HF_HOME", str(Path.home() / ".cache" / "huggingface"))
    hub = env.get("HF_HUB_CACHE", str(Path(hf_home) / "hub"))
    pattern = str(Path(hub) / f"models--{model.replace('/', '--')}" / "snapshots" / "*")
    for snapshot in sorted(glob.glob(pattern)):
        file = Path(snapshot) / "tokenizer.json"
        if file.is_file():
            return str(file)
    return None


def render_messages(messages: Any) -> str:
    """Chat messages as the default template renders them; ValueError if malformed."""
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages must be a non-empty list")
    return render_chat(messages)


def tokenize_body(
    backend: TokenizerBackend, api: str, body: dict[str, Any] | None, prompt_text: str
) -> Sequence[int]:
    """Token ids of a request: chat messages through the template, a completions prompt as
    text or ids; other requests (or no parsed body) by their prompt text."""
    if body is not None:
        if api == "chat/completions" and "messages" in body:
            return backend.encode(render_messages(body["messages"]), False)
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1:
            prompt = prompt[0]
        if isinstance(prompt, list) and prompt and all(type(t) is int for t in prompt):
            return backend.encode_ids(prompt)
        if isinstance(prompt, str):
            return backend.encode(prompt, True)
    return backend.encode(prompt_text, True)
