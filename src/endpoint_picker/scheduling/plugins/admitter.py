"""``probabilistic-admitter`` (llm-d): sheddable requests (priority < 0) are rejected with a
probability that grows steeply with the pool's saturation.

Saturation is the mean over candidate endpoints of ``max(queue / queueDepthThreshold,
kvCacheUsage / kvCacheUtilThreshold)``; the rejection probability is
``min(saturation ** power * k, 1)``. Requests of priority >= 0 always pass. It runs after
admission (flow control or legacy shedding) and before scheduling, on the request's candidate
endpoints; a rejection is a 429, as llm-d's ``ResourceExhausted``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import Field

from endpoint_picker.datastore import Endpoint
from endpoint_picker.errors import ResourceExhausted
from endpoint_picker.params import PluginParams
from endpoint_picker.requests.types import InferenceRequest
from endpoint_picker.scheduling.plugins.base import PluginBase


class ProbabilisticAdmitterParams(PluginParams):
    """llm-d's names and defaults."""

    queue_depth_threshold: int = Field(5, gt=0)
    kv_cache_util_threshold: float = Field(0.8, gt=0)
    power: float = Field(5.0, gt=0)
    k: float = Field(300.0, gt=0)


class ProbabilisticAdmitter(PluginBase):
    """Reject sheddable requests at random, more often the more saturated the pool."""

    type_name = "probabilistic-admitter"
    params_model = ProbabilisticAdmitterParams

    def __init__(
        self,
        name: str | None = None,
        params: ProbabilisticAdmitterParams | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        super().__init__(name)
        self.params = params or ProbabilisticAdmitterParams()
        self.rand = rand

    def saturation(self, endpoints: Sequence[Endpoint]) -> float:
        p = self.params
        total = 0.0
        for ep in endpoints:
            queue = ep.metrics.waiting_queue_size / p.queue_depth_threshold
            total += max(queue, ep.metrics.kv_cache_usage_percent / p.kv_cache_util_threshold)
        return total / len(endpoints)

    def probability(self, endpoints: Sequence[Endpoint]) -> float:
        return self._probability(self.saturation(endpoints))

    def _probability(self, saturation: float) -> float:
        scaled: float = saturation**self.params.power * self.params.k
        return min(scaled, 1.0)

    def admit_request(self, request: InferenceRequest, endpoints: Sequence[Endpoint]) -> None:
        """Raise ResourceExhausted (429) to reject ``request``."""
        if request.priority >= 0 or not endpoints:
            return
        saturation = self.saturation(endpoints)
        prob = self._probability(saturation)
        if self.rand() < prob:
            raise ResourceExhausted(
                f"probabilistic-admitter: rejected, saturation={saturation:.3f} prob={prob:.2f}"
            )

    @classmethod
    def from_config(cls, name: str, params: Any) -> ProbabilisticAdmitter:
        return cls(name, params)
