"""``token-producer``: tokenize the prompt once per request, for every plugin that needs tokens.

Runs first among the data producers (list it first, as llm-d's configs do) and leaves a
:class:`TokenizedPrompt` in ``request.state[TOKENS_KEY]``; idempotent, so a retry does not
tokenize again. Backends are in requests/tokenize.py: ``tokenizerPath`` (ours) or a local
tokenizer found for ``modelName``, else the simulator's tokenizer. llm-d's ``vllm`` block
(tokenize over HTTP with ``/render``) is accepted but not called: data producers run
synchronously on the request path here, and a network round trip per request is what the
local tokenizer avoids.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from endpoint_picker.datastore import Endpoint
from endpoint_picker.errors import ConfigError
from endpoint_picker.requests.tokenize import (
    HFTokenizer,
    SimTokenizer,
    TokenizerBackend,
    find_tokenizer,
    tokenize_body,
)
from endpoint_picker.requests.tokenize_cache import ChunkedTokenizer
from endpoint_picker.requests.types import InferenceRequest
from endpoint_picker.scheduling.plugins.base import PluginBase
from endpoint_picker.scheduling.plugins.precise_params import TokenProducerParams

log = logging.getLogger(__name__)

TOKENS_KEY = "tokenized-prompt"


@dataclass(slots=True)
class TokenizedPrompt:
    token_ids: Sequence[int]  # a list, or an array('I') from the chunk cache
    tokenizer: str  # the backend's name, so a consumer can tell sim ids from a model's


def backend_for(params: TokenProducerParams) -> TokenizerBackend:
    """The backend the parameters choose (see the module docstring), behind a chunk cache
    (requests/tokenize_cache.py: a shared system prompt is tokenized once)."""
    return ChunkedTokenizer(_backend(params))


def _backend(params: TokenProducerParams) -> TokenizerBackend:
    path = params.tokenizer_path or find_tokenizer(params.model_name)
    if not path:
        if params.model_name:
            log.warning(
                "token-producer: no local tokenizer.json for %r (set tokenizerPath, "
                "LOCAL_TOKENIZER_DIR or HF_HOME); using the simulator's tokenizer",
                params.model_name,
            )
        return SimTokenizer()
    try:
        return HFTokenizer(path)
    except Exception as err:  # tokenizers raises its own Exception type
        raise ConfigError(f"cannot load tokenizer {path!r}: {err}", path="tokenizerPath") from None


def tokens_of(request: InferenceRequest, backend: TokenizerBackend) -> TokenizedPrompt:
    """The request's tokens, computed once and kept in ``request.state``."""
    found = request.state.get(TOKENS_KEY)
    if isinstance(found, TokenizedPrompt):
        return found
    try:
        ids = tokenize_body(backend, request.api, request.body, request.prompt_text)
    except ValueError:
        ids = backend.encode(request.prompt_text, True)
    tp = request.state[TOKENS_KEY] = TokenizedPrompt(ids, backend.name)
    return tp


class TokenProducer(PluginBase):
    """``token-producer`` (llm-d's type name; ``tokenizer`` is its legacy alias)."""

    type_name = "token-producer"
    params_model = TokenProducerParams

    def __init__(self, name: str | None = None, backend: TokenizerBackend | None = None) -> None:
        super().__init__(name)
        self.backend: TokenizerBackend = backend or ChunkedTokenizer(SimTokenizer())

    def prepare(self, request: InferenceRequest, endpoints: Sequence[Endpoint]) -> None:
        tokens_of(request, self.backend)

    @classmethod
    def from_config(cls, name: str, params: Any) -> TokenProducer:
        return cls(name, backend_for(params))
