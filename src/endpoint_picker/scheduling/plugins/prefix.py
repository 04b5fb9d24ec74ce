"""Prefix-cache-aware routing: ``approx-prefix-cache-producer`` and ``prefix-cache-scorer``.

The producer hashes the prompt once per request (before any profile runs), looks up how many
leading blocks each endpoint probably has cached, and keeps the answer in ``request.state``;
the scorer turns it into ``matched / total``. After scheduling, ``pre_request`` records the
hashes as held by the chosen endpoint (and the ``prefill`` profile's, if any).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import Field, ValidationInfo, field_validator

from endpoint_picker.datastore import Endpoint
from endpoint_picker.params import PluginParams
from endpoint_picker.requests.types import CHARS_PER_TOKEN, InferenceRequest
from endpoint_picker.scheduling import metrics as m
from endpoint_picker.scheduling.framework import PrefixMatch, SchedulingResult
from endpoint_picker.scheduling.plugins.base import PluginBase
from endpoint_picker.scheduling.plugins.prefix_index import (
    PrefixIndex,
    block_hashes,
)

STATE_KEY = "approx-prefix-cache"
PREFILL_PROFILE = "prefill"


def match_state_key(producer_name: str) -> str:
    """Where the producer named ``producer_name`` leaves its :class:`PrefixMatch` (the
    default-named approximate producer keeps ``STATE_KEY``)."""
    if not producer_name or producer_name == "approx-prefix-cache-producer":
        return STATE_KEY
    return f"prefix-match:{producer_name}"


class PrefixParams(PluginParams):
    """``approx-prefix-cache-producer`` tuning (also accepted on ``prefix-cache-scorer``, where
    upstream's docs put it). ``blockSize`` is upstream's deprecated size in characters."""

    auto_tune: bool = True
    block_size_tokens: int = 16
    block_size: int = 0
    max_prefix_blocks_to_match: int = 256
    max_prefix_tokens_to_match: int = 0
    lru_capacity_per_server: int = Field(31250, gt=0)

    @field_validator("block_size_tokens")
    @classmethod
    def _tokens(cls, v: int, info: ValidationInfo) -> int:
        if v <= 0 and info.data.get("auto_tune") is False:
            raise ValueError("must be > 0 when autoTune is false")
        return v

    @field_validator("block_size")
    @classmethod
    def _chars(cls, v: int, info: ValidationInfo) -> int:
        tokens = info.data.get("block_size_tokens")
        if v > 0 and tokens is not None and tokens <= 0:
            raise ValueError("blockSize is deprecated; set blockSizeTokens > 0")
        return v


class PrefixScorerParams(PrefixParams):
    """``prefix-cache-scorer``: the producer's tuning (see :class:`PrefixParams`) and llm-d's
    ``prefixMatchInfoProducerName``, the producer whose match info the scorer reads."""

    prefix_match_info_producer_name: str = ""

    def producer_params(self) -> PrefixParams:
        """The tuning alone, as the auto-created producer takes it (only the fields given)."""
        tuning = self.model_dump(include=set(PrefixParams.model_fields) & self.model_fields_set)
        return PrefixParams.model_validate(tuning)


@dataclass(slots=True)
class PrefixConfig:
    auto_tune: bool = True
    block_size_tokens: int = 16
    max_prefix_blocks: int = 256
    max_prefix_tokens: int = 0
    lru_capacity_per_server: int = 31250

    @classmethod
    def from_model(cls, p: PrefixParams) -> PrefixConfig:
        """The effective settings: a deprecated ``blockSize`` (chars) counts when
        ``blockSizeTokens`` is not given; a block size <= 0 means 16."""
        tokens = p.block_size_tokens
        if p.block_size > 0 and "block_size_tokens" not in p.model_fields_set:
            tokens = max(1, p.block_size // CHARS_PER_TOKEN)
        return cls(
            auto_tune=p.auto_tune,
            block_size_tokens=tokens if tokens > 0 else 16,
            max_prefix_blocks=p.max_prefix_blocks_to_match,
            max_prefix_tokens=p.max_prefix_tokens_to_match,
            lru_capacity_per_server=p.lru_capacity_per_server,
        )


class ApproxPrefixCacheProducer(PluginBase):
    """``approx-prefix-cache-producer``: the per-EPP approximate prefix index (spec 5.4)."""

    type_name = "approx-prefix-cache-producer"
    params_model = PrefixParams

    def __init__(self, name: str | None = None, config: PrefixConfig | None = None) -> None:
        super().__init__(name)
        self.config = config or PrefixConfig()
        self.index = PrefixIndex(self.config.lru_capacity_per_server)
        self.state_key = match_state_key(self.name)

    def _block_size(self, endpoints: Sequence[Endpoint]) -> int:
        if self.config.auto_tune and endpoints and endpoints[0].metrics.cache_block_size > 0:
            return endpoints[0].metrics.cache_block_size
        return self.config.block_size_tokens

    def prepare(self, request: InferenceRequest, endpoints: Sequence[Endpoint]) -> None:
        block_tokens = self._block_size(endpoints)
        state = request.state.get(self.state_key)
        if isinstance(state, PrefixMatch) and state.block_size_tokens == block_tokens:
            hashes = state.hashes  # hashed already (a retry): hash a prompt once per request
        else:
            max_blocks = self.config.max_prefix_blocks
            if self.config.max_prefix_tokens > 0:
                max_blocks = max(1, self.config.max_prefix_tokens // block_tokens)
            hashes = block_hashes(
                request.prompt_text.encode(),
                block_tokens * CHARS_PER_TOKEN,
                max_blocks,
                request.target_model,
                request.cache_salt,
            )
        request.state[self.state_key] = PrefixMatch(block_tokens, hashes, self.index.match(hashes))

    def _capacity(self, endpoint: Endpoint) -> int:
        if self.config.auto_tune and endpoint.metrics.cache_num_blocks > 0:
            return endpoint.metrics.cache_num_blocks
        return self.config.lru_capacity_per_server

    def pre_request(self, request: InferenceRequest, result: SchedulingResult) -> None:
        state = request.state.get(self.state_key)
        if not isinstance(state, PrefixMatch) or not result.endpoints:
            return
        targets = [result.endpoints[0]]
        prefill = result.profile_results.get(PREFILL_PROFILE)
        if prefill is not None and prefill.endpoints and prefill.endpoints[0] is not targets[0]:
            targets.append(prefill.endpoints[0])
        for ep in targets:
            self.index.add(state.hashes, ep.name, self._capacity(ep))
        if state.total:
            matched = state.matches.get(targets[0].name, 0)
            m.PREFIX_INDEXER_HIT_RATIO.observe(matched / state.total)
            m.PREFIX_INDEXER_HIT_BYTES.observe(matched * state.block_size_tokens * CHARS_PER_TOKEN)
        m.PREFIX_INDEXER_SIZE.set(self.index.size)

    def remove_endpoint(self, endpoint: Endpoint) -> None:
        self.index.remove_server(endpoint.name)
        m.PREFIX_INDEXER_SIZE.set(self.index.size)

    @classmethod
    def from_config(cls, name: str, params: Any) -> ApproxPrefixCacheProducer:
        return cls(name, PrefixConfig.from_model(params))


class PrefixCacheScorer(PluginBase):
    """``prefix-cache-scorer``: ``matched blocks / total blocks`` (0 without prefix data).

    Tuning parameters written on the scorer (as upstream's docs show; upstream's code ignores
    them, spec section 10 (3)) are validated as the producer's; the config loader hands them to
    the auto-created producer, so they take effect instead of being silently ignored.
    ``prefixMatchInfoProducerName`` (llm-d) names the producer whose match info it reads
    (default: the approximate producer).
    """

    type_name = "prefix-cache-scorer"
    params_model = PrefixScorerParams

    def __init__(self, name: str | None = None, producer_name: str = "") -> None:
        super().__init__(name)
        self.producer_name = producer_name
        self.state_key = match_state_key(producer_name)

    def score(self, request: InferenceRequest, endpoints: list[Endpoint]) -> list[float]:
        state = request.state.get(self.state_key)
        if not isinstance(state, PrefixMatch) or not state.total or not state.matches:
            return [0.0] * len(endpoints)
        total = float(state.total)
        get = state.matches.get
        return [get(ep.name, 0) / total for ep in endpoints]

    @classmethod
    def from_config(cls, name: str, params: Any) -> PrefixCacheScorer:
        return cls(name, params.prefix_match_info_producer_name)
