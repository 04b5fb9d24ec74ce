"""Prefix-cache-aware routing: ``approx-prefix-cache-producer`` and ``prefix-cache-scorer``.

The producer hashes the prompt once per request (before any profile runs), looks up how many
leading blocks each endpoint probably has cached, and keeps the answer in ``request.state``;
the scorer turns it into ``matched / total``. After scheduling, ``pre_request`` records the
hashes as held by the chosen endpoint (and the ``prefill`` profile's, if any).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from endpoint_picker.datastore import Endpoint
from endpoint_picker.errors import ConfigError
from endpoint_picker.requests.types import InferenceRequest
from endpoint_picker.scheduling import metrics as m
from endpoint_picker.scheduling.framework import SchedulingResult
from endpoint_picker.scheduling.plugins.base import Params, PluginBase
from endpoint_picker.scheduling.plugins.prefix_index import (
    AVERAGE_CHARS_PER_TOKEN,
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


@dataclass(slots=True)
class PrefixMatch:
    """One request's prefix data: its block hashes and the blocks matched per endpoint name."""

    block_size_tokens: int
    hashes: list[int]
    matches: dict[str, int]

    @property
    def total(self) -> int:
        return len(self.hashes)


@dataclass(slots=True)
class PrefixConfig:
    auto_tune: bool = True
    block_size_tokens: int = 16
    max_prefix_blocks: int = 256
    max_prefix_tokens: int = 0
    lru_capacity_per_server: int = 31250

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> PrefixConfig:
        p = Params(params)
        cfg = cls(
            auto_tune=p.get_bool("autoTune", True),
            max_prefix_blocks=p.get_int("maxPrefixBlocksToMatch", 256),
            max_prefix_tokens=p.get_int("maxPrefixTokensToMatch", 0),
            lru_capacity_per_server=p.get_int("lruCapacityPerServer", 31250),
        )
        given_tokens = params is not None and "blockSizeTokens" in params
        cfg.block_size_tokens = p.get_int("blockSizeTokens", 16)
        block_chars = p.get_int("blockSize", 0)  # deprecated: characters per block
        p.done()
        if block_chars > 0:
            if given_tokens and cfg.block_size_tokens <= 0:
                raise ConfigError(
                    "blockSize is deprecated; set blockSizeTokens > 0", path="blockSize"
                )
            if not given_tokens:
                cfg.block_size_tokens = max(1, block_chars // AVERAGE_CHARS_PER_TOKEN)
        if not cfg.auto_tune and cfg.block_size_tokens <= 0:
            raise ConfigError("must be > 0 when autoTune is false", path="blockSizeTokens")
        if cfg.block_size_tokens <= 0:
            cfg.block_size_tokens = 16
        if cfg.lru_capacity_per_server <= 0:
            raise ConfigError("must be > 0", path="lruCapacityPerServer")
        return cfg


class ApproxPrefixCacheProducer(PluginBase):
    """``approx-prefix-cache-producer``: the per-EPP approximate prefix index (spec 5.4)."""

    type_name = "approx-prefix-cache-producer"

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
                block_tokens * AVERAGE_CHARS_PER_TOKEN,
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
            m.PREFIX_INDEXER_HIT_BYTES.observe(
                matched * state.block_size_tokens * AVERAGE_CHARS_PER_TOKEN
            )
        m.PREFIX_INDEXER_SIZE.set(self.index.size)

    def remove_endpoint(self, endpoint: Endpoint) -> None:
        self.index.remove_server(endpoint.name)
        m.PREFIX_INDEXER_SIZE.set(self.index.size)

    @classmethod
    def from_params(cls, name: str, params: Mapping[str, Any] | None) -> ApproxPrefixCacheProducer:
        return cls(name, PrefixConfig.from_params(params))


# Parameters upstream's docs put on the scorer (its code ignores them, spec section 10 (3)).
LEGACY_SCORER_PARAMS = (
    "autoTune",
    "blockSize",
    "blockSizeTokens",
    "maxPrefixBlocksToMatch",
    "maxPrefixTokensToMatch",
    "lruCapacityPerServer",
)


class PrefixCacheScorer(PluginBase):
    """``prefix-cache-scorer``: ``matched blocks / total blocks`` (0 without prefix data).

    Tuning parameters written on the scorer (as upstream's docs show) are kept in
    ``producer_params``; the config loader hands them to the auto-created producer, so they
    take effect instead of being silently ignored. ``prefixMatchInfoProducerName`` (llm-d)
    names the producer whose match info it reads (default: the approximate producer).
    """

    type_name = "prefix-cache-scorer"

    def __init__(
        self,
        name: str | None = None,
        producer_params: Mapping[str, Any] | None = None,
        producer_name: str = "",
    ) -> None:
        super().__init__(name)
        self.producer_params = dict(producer_params or {})
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
    def from_params(cls, name: str, params: Mapping[str, Any] | None) -> PrefixCacheScorer:
        p = Params(params)
        legacy = p.ignore(*LEGACY_SCORER_PARAMS)
        producer = p.get_str("prefixMatchInfoProducerName", "")
        p.done()
        if legacy:
            PrefixConfig.from_params(legacy)  # validate now, with the scorer's path
        return cls(name, legacy, producer)
