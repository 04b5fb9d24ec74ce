"""Load and affinity scorers (upstream ``.../scheduling/scorer/*``). Each score is in [0, 1].

They read the endpoint's latest metrics snapshot as it is, stale or not, like upstream's
default profile; a stale endpoint is the saturation detector's business (used as a filter).
"""

from __future__ import annotations

from typing import Any

from endpoint_picker.datastore import Endpoint
from endpoint_picker.params import PluginParams
from endpoint_picker.requests.types import InferenceRequest
from endpoint_picker.scheduling.plugins.base import PluginBase


def _min_max_inverted(values: list[int]) -> list[float]:
    """``(max - v) / (max - min)``: the least loaded gets 1, the most 0; all equal -> all 1."""
    lo, hi = min(values), max(values)
    if hi == lo:
        return [1.0] * len(values)
    span = float(hi - lo)
    return [(hi - v) / span for v in values]


class QueueScorer(PluginBase):
    """``queue-scorer``: min-max of the waiting queue over the candidates.

    The queue is ``Endpoint.queue_depth``: the scraped waiting count plus requests sent since
    that scrape began (upstream reads the scrape alone, so every request of a burst between two
    scrapes goes to the endpoint that looked emptiest)."""

    type_name = "queue-scorer"

    def score(self, request: InferenceRequest, endpoints: list[Endpoint]) -> list[float]:
        if not endpoints:
            return []
        return _min_max_inverted([ep.queue_depth for ep in endpoints])


class RunningRequestsSizeScorer(PluginBase):
    """``running-requests-size-scorer``: min-max of running requests over the candidates."""

    type_name = "running-requests-size-scorer"

    def score(self, request: InferenceRequest, endpoints: list[Endpoint]) -> list[float]:
        if not endpoints:
            return []
        return _min_max_inverted([ep.metrics.running_requests_size for ep in endpoints])


class KVCacheUtilizationScorer(PluginBase):
    """``kv-cache-utilization-scorer``: ``1 - KVCacheUsagePercent`` (a 0..1 fraction)."""

    type_name = "kv-cache-utilization-scorer"

    def score(self, request: InferenceRequest, endpoints: list[Endpoint]) -> list[float]:
        return [1.0 - ep.metrics.kv_cache_usage_percent for ep in endpoints]


class LoraAffinityScorer(PluginBase):
    """``lora-affinity-scorer``: 1.0 adapter active; 0.8 room to load it; 0.6 already waiting; 0."""

    type_name = "lora-affinity-scorer"

    def score(self, request: InferenceRequest, endpoints: list[Endpoint]) -> list[float]:
        model = request.target_model
        out: list[float] = []
        for ep in endpoints:
            m = ep.metrics
            if model in m.active_models:
                out.append(1.0)
            elif len(m.active_models) + len(m.waiting_models) < m.max_active_models:
                out.append(0.8)
            elif model in m.waiting_models:
                out.append(0.6)
            else:
                out.append(0.0)
        return out


DEFAULT_QUEUE_THRESHOLD_TOKENS = 4_194_304


class TokenLoadParams(PluginParams):
    """``token-load-scorer``: ``queueThresholdTokens`` (<= 0 means the default, as upstream)."""

    queue_threshold_tokens: int = DEFAULT_QUEUE_THRESHOLD_TOKENS


class TokenLoadScorer(PluginBase):
    """``token-load-scorer``: ``1 - min(inflight_tokens, thr) / thr`` (1 when nothing in flight)."""

    type_name = "token-load-scorer"
    params_model = TokenLoadParams

    def __init__(
        self, name: str | None = None, queue_threshold_tokens: int = DEFAULT_QUEUE_THRESHOLD_TOKENS
    ) -> None:
        super().__init__(name)
        if queue_threshold_tokens <= 0:
            queue_threshold_tokens = DEFAULT_QUEUE_THRESHOLD_TOKENS  # upstream: <= 0 -> default
        self.threshold = float(queue_threshold_tokens)

    def score(self, request: InferenceRequest, endpoints: list[Endpoint]) -> list[float]:
        thr = self.threshold
        return [
            1.0 if ep.inflight_tokens <= 0 else 1.0 - min(ep.inflight_tokens, thr) / thr
            for ep in endpoints
        ]

    @classmethod
    def from_config(cls, name: str, params: Any) -> TokenLoadScorer:
        return cls(name, params.queue_threshold_tokens)
