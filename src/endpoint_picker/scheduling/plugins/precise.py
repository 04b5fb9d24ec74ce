"""``precise-prefix-cache-producer``: prefix matches from what the servers say they hold.

Per request (``prepare``): the prompt's tokens (from ``token-producer``; the simulator's
tokenizer if none ran) become block keys (scheduling/plugins/precise_index.py), and the index
says how many leading blocks each endpoint holds. The answer goes where ``prefix-cache-scorer``
reads it when its ``prefixMatchInfoProducerName`` names this producer (see
:func:`~endpoint_picker.scheduling.plugins.prefix.match_state_key`).

The index is fed by the servers' KV events (datalayer/kvevents*.py): the producer is also the
data layer's extractor for ``endpoint-notification-source``, and owns one subscription per
endpoint while the endpoint is in the pool. With ``speculativeIndexing``, ``pre_request``
records the chosen endpoint as holding the prompt's blocks for ``speculativeTTL``, so a burst
of requests sharing a new prefix follows the first before its ``BlockStored`` arrives.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from endpoint_picker.datastore import Datastore, Endpoint
from endpoint_picker.requests.tokenize import SimTokenizer
from endpoint_picker.requests.tokenize_cache import ChunkedTokenizer
from endpoint_picker.requests.types import InferenceRequest
from endpoint_picker.scheduling.framework import PrefixMatch, SchedulingResult
from endpoint_picker.scheduling.plugins.base import PluginBase
from endpoint_picker.scheduling.plugins.precise_index import BlockIndex, chain_keys, root_key
from endpoint_picker.scheduling.plugins.precise_params import PreciseProducerParams
from endpoint_picker.scheduling.plugins.prefix import PREFILL_PROFILE, match_state_key
from endpoint_picker.scheduling.plugins.token_producer import tokens_of

log = logging.getLogger(__name__)


class PrecisePrefixCacheProducer(PluginBase):
    """The precise KV-block index, its event subscriptions and per-request match info."""

    type_name = "precise-prefix-cache-producer"
    params_model = PreciseProducerParams

    def __init__(
        self,
        name: str | None = None,
        params: PreciseProducerParams | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(name)
        self.params = p = params or PreciseProducerParams()
        self.block_size = p.token_processor_config.resolved_block_size()
        self.hash_seed = p.token_processor_config.hash_seed
        mem = p.indexer_config.kv_block_index_config.in_memory_config
        self.index = BlockIndex(mem.size, mem.pod_cache_size)
        # Imported here: datalayer.kvevents imports this package's precise_index.
        from endpoint_picker.datalayer.kvevents import KVEventIngester

        self.ingester = KVEventIngester(self.index, self.block_size, self.hash_seed)
        self.clock = clock
        self.state_key = match_state_key(self.name)
        self._fallback = ChunkedTokenizer(SimTokenizer())
        self._roots: dict[str, int] = {}  # model -> chain root, memoized
        self._datastore: Datastore | None = None
        self._addresses: dict[str, str] = {}
        self._host = ""
        self.subscriber: Any = None
        self.lookups = 0
        self.lookup_hits = 0  # leading keys found (the best endpoint's match), summed
        self._collector: Any = None

    # -- request path ------------------------------------------------------------------------

    def keys_for(self, request: InferenceRequest) -> list[int]:
        tokens = tokens_of(request, self._fallback).token_ids
        model = self.ingester.request_model(request.target_model)
        return chain_keys(tokens, self.block_size, self._root(model))

    def _root(self, model: str) -> int:
        root = self._roots.get(model)
        if root is None:
            if len(self._roots) > 1024:
                self._roots.clear()
            root = self._roots[model] = root_key(self.hash_seed, model)
        return root

    def prepare(self, request: InferenceRequest, endpoints: Sequence[Endpoint]) -> None:
        keys = self.keys_for(request)
        matches = self.index.match(keys, self.clock()) if keys else {}
        self.lookups += 1
        self.lookup_hits += max(matches.values(), default=0)
        request.state[self.state_key] = PrefixMatch(self.block_size, keys, matches)

    def pre_request(self, request: InferenceRequest, result: SchedulingResult) -> None:
        if not self.params.speculative_indexing or not result.endpoints:
            return
        state = request.state.get(self.state_key)
        if not isinstance(state, PrefixMatch) or not state.hashes:
            return
        expiry = self.clock() + self.params.speculative_ttl
        targets = [result.endpoints[0]]
        prefill = result.profile_results.get(PREFILL_PROFILE)
        if prefill is not None and prefill.endpoints and prefill.endpoints[0] is not targets[0]:
            targets.append(prefill.endpoints[0])
        for ep in targets:
            self.index.add(state.hashes, ep.name, expiry)

    def remove_endpoint(self, endpoint: Endpoint) -> None:
        self.ingester.forget(endpoint.name)

    # -- events ------------------------------------------------------------------------------

    def attach(
        self,
        datastore: Datastore,
        addresses: Mapping[str, str] | None = None,
        host: str = "",
    ) -> None:
        """Where endpoints come from; per-endpoint event addresses overriding
        ``tcp://<ip>:<socketPort>`` (local runs with several servers on one IP); the EPP's
        ``--host``, which a central ``zmqEndpoint`` on ``0.0.0.0`` binds to instead."""
        self._datastore = datastore
        self._addresses = dict(addresses or {})
        self._host = host

    async def start(self) -> None:
        from endpoint_picker.datalayer.kvevents_zmq import KVEventSubscriber

        ev = self.params.kv_events_config
        discover = ev.discover_pods if ev.discover_pods is not None else not ev.zmq_endpoint
        self.subscriber = KVEventSubscriber(
            self.ingester,
            topic_filter=ev.topic_filter,
            socket_port=ev.pod_discovery_config.socket_port,
            replay_port=ev.pod_discovery_config.replay_port,
            central_endpoint=_bindable(ev.zmq_endpoint, self._host),
            discover=discover,
            addresses=self._addresses,
        )
        if self._datastore is not None:
            self.subscriber.attach(self._datastore)
        import zmq

        if self.params.indexer_config.kv_block_index_config.enable_metrics:
            from endpoint_picker.scheduling.plugins.precise_metrics import register

            self._collector = register(self)
        try:
            await self.subscriber.start()
        except zmq.ZMQError as err:
            from endpoint_picker.errors import ConfigError

            raise ConfigError(
                f"cannot listen for KV events on {self.subscriber.central_endpoint!r}: {err}",
                path=f"plugins[{self.name}].parameters.kvEventsConfig.zmqEndpoint",
            ) from None

    async def stop(self) -> None:
        if self.subscriber is not None:
            await self.subscriber.stop()
            self.subscriber = None
        if self._collector is not None:
            from endpoint_picker.metrics import REGISTRY

            REGISTRY.unregister(self._collector)
            self._collector = None

    @classmethod
    def from_config(cls, name: str, params: Any) -> PrecisePrefixCacheProducer:
        return cls(name, params)


def _bindable(endpoint: str, host: str) -> str:
    """llm-d writes ``tcp://0.0.0.0:5557`` (all interfaces): bind the EPP's ``--host`` instead
    when one is given (127.0.0.1 by default, as every server of ``epp run``), else ``*``."""
    wildcard = host if host and host != "0.0.0.0" else "*"
    return endpoint.replace("://0.0.0.0:", f"://{wildcard}:").replace("://*:", f"://{wildcard}:")
