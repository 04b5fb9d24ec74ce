"""llm-d's disaggregation deciders: whether a request's prefill (or encode) runs on a separate
worker. ``disagg-profile-handler`` asks its deciders after the decode profile has picked.

- ``prefix-based-pd-decider``: disaggregate when the prompt's part not cached on the chosen
  decode endpoint (from the prefix producer's match info) is at least ``nonCachedTokens``
  (0 turns disaggregation off), and the prompt has at least ``promptTokens`` (0: no gate).
- ``always-disagg-pd-decider``: always.
- ``always-disagg-multimodal-decider``: when the request carries multimodal content (an encode
  decider: images, audio or video parts in the chat messages).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from endpoint_picker.datastore import Endpoint
from endpoint_picker.params import PluginParams
from endpoint_picker.requests.types import CHARS_PER_TOKEN, InferenceRequest
from endpoint_picker.scheduling.framework import PrefixMatch
from endpoint_picker.scheduling.plugins.base import PluginBase
from endpoint_picker.scheduling.plugins.prefix import STATE_KEY
from endpoint_picker.scheduling.plugins.token_producer import TOKENS_KEY, TokenizedPrompt


class PrefixDeciderParams(PluginParams):
    """llm-d's names and defaults (both 0: as shipped, the decider never disaggregates)."""

    non_cached_tokens: int = Field(0, ge=0)
    prompt_tokens: int = Field(0, ge=0)


def prompt_tokens(request: InferenceRequest) -> int:
    """The prompt's length in tokens: the token producer's count where one ran, else the
    characters-per-token estimate the approximate prefix producer hashes with."""
    tokens = request.state.get(TOKENS_KEY)
    if isinstance(tokens, TokenizedPrompt):
        return len(tokens.token_ids)
    return len(request.prompt_text) // CHARS_PER_TOKEN


def prefix_match(request: InferenceRequest) -> PrefixMatch | None:
    """The request's prefix match info: the default producer's, else any producer's."""
    state = request.state.get(STATE_KEY)
    if isinstance(state, PrefixMatch):
        return state
    return next((v for v in request.state.values() if isinstance(v, PrefixMatch)), None)


class PrefixBasedPDDecider(PluginBase):
    """``prefix-based-pd-decider``: disaggregate when the uncached suffix is long enough."""

    type_name = "prefix-based-pd-decider"
    params_model = PrefixDeciderParams

    def __init__(self, name: str | None = None, params: PrefixDeciderParams | None = None) -> None:
        super().__init__(name)
        self.params = params or PrefixDeciderParams()

    def uncached_tokens(self, request: InferenceRequest, endpoint: Endpoint) -> int:
        """Prompt tokens minus those whose blocks ``endpoint`` has cached (no match info: the
        whole prompt counts as uncached)."""
        total = prompt_tokens(request)
        match = prefix_match(request)
        if match is None:
            return total
        return max(0, total - match.matches.get(endpoint.name, 0) * match.block_size_tokens)

    def disaggregate(self, request: InferenceRequest, endpoint: Endpoint | None) -> bool:
        p = self.params
        if p.non_cached_tokens == 0 or endpoint is None:
            return False
        total = prompt_tokens(request)
        if total < p.prompt_tokens or total < p.non_cached_tokens:
            return False
        return self.uncached_tokens(request, endpoint) >= p.non_cached_tokens

    @classmethod
    def from_config(cls, name: str, params: Any) -> PrefixBasedPDDecider:
        return cls(name, params)


class AlwaysDisaggPDDecider(PluginBase):
    """``always-disagg-pd-decider``: every request gets a separate prefill."""

    type_name = "always-disagg-pd-decider"

    def disaggregate(self, request: InferenceRequest, endpoint: Endpoint | None) -> bool:
        return True


_TEXT_PARTS = frozenset({"text", "input_text"})


def has_multimodal(request: InferenceRequest) -> bool:
    """Whether a chat message carries a non-text content part (image, audio, video, file)."""
    body = request.body or {}
    messages = body.get("messages")
    if not isinstance(messages, list):
        return False
    for msg in messages:
        content = msg.get("content") if isinstance(msg, dict) else None
        if isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and part.get("type", "text") not in _TEXT_PARTS:
                    return True
    return False


class AlwaysDisaggMultimodalDecider(PluginBase):
    """``always-disagg-multimodal-decider``: encode separately whenever the request has
    multimodal content."""

    type_name = "always-disagg-multimodal-decider"

    def disaggregate(self, request: InferenceRequest, endpoint: Endpoint | None) -> bool:
        return has_multimodal(request)
