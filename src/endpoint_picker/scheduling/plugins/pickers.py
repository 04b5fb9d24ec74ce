"""Pickers (upstream ``.../scheduling/picker/*``): choose targets from scored endpoints.

All take ``maxNumOfEndpoints`` (default 1, values <= 0 mean 1): the first is the primary, the
rest are fallbacks the gateway may try in order.
"""

from __future__ import annotations

import heapq
import random
from typing import Any, Self

from endpoint_picker.datastore import Endpoint
from endpoint_picker.params import PluginParams
from endpoint_picker.requests.types import InferenceRequest
from endpoint_picker.scheduling.plugins.base import PluginBase


class PickerParams(PluginParams):
    """Every picker: ``maxNumOfEndpoints`` (values <= 0 mean 1)."""

    max_num_of_endpoints: int = 1


class _PickerBase(PluginBase):
    params_model = PickerParams

    def __init__(
        self, name: str | None = None, max_endpoints: int = 1, rng: random.Random | None = None
    ) -> None:
        super().__init__(name)
        self.max_endpoints = max_endpoints if max_endpoints > 0 else 1
        self.rng = rng or random.Random()

    @classmethod
    def from_config(cls, name: str, params: Any) -> Self:
        return cls(name, params.max_num_of_endpoints)


class MaxScorePicker(_PickerBase):
    """``max-score-picker``: highest totals first; ties broken at random."""

    type_name = "max-score-picker"

    def pick(
        self, request: InferenceRequest, endpoints: list[Endpoint], scores: list[float]
    ) -> list[Endpoint]:
        if not endpoints:
            return []
        if self.max_endpoints == 1:
            # Same distribution as upstream's shuffle + stable sort, in one pass.
            best = max(scores)
            ties = [i for i, s in enumerate(scores) if s == best]
            return [endpoints[ties[0] if len(ties) == 1 else self.rng.choice(ties)]]
        order = list(range(len(endpoints)))
        self.rng.shuffle(order)
        order.sort(key=lambda i: scores[i], reverse=True)  # stable: shuffled order breaks ties
        return [endpoints[i] for i in order[: self.max_endpoints]]


class RandomPicker(_PickerBase):
    """``random-picker``: uniformly random, ignoring scores."""

    type_name = "random-picker"

    def pick(
        self, request: InferenceRequest, endpoints: list[Endpoint], scores: list[float]
    ) -> list[Endpoint]:
        n = min(self.max_endpoints, len(endpoints))
        return self.rng.sample(endpoints, n)


class WeightedRandomPicker(_PickerBase):
    """``weighted-random-picker``: A-Res weighted sampling without replacement.

    key = U ** (1 / score) with U uniform (0 replaced by 1e-10), score <= 0 -> key 0; the N
    largest keys win. With every score <= 0 it behaves as ``random-picker``.
    """

    type_name = "weighted-random-picker"

    def pick(
        self, request: InferenceRequest, endpoints: list[Endpoint], scores: list[float]
    ) -> list[Endpoint]:
        if not endpoints:
            return []
        n = min(self.max_endpoints, len(endpoints))
        if all(s <= 0 for s in scores):
            return self.rng.sample(endpoints, n)
        rnd = self.rng.random
        keys = [((rnd() or 1e-10) ** (1.0 / s) if s > 0 else 0.0) for s in scores]
        top = heapq.nlargest(n, range(len(endpoints)), key=keys.__getitem__)
        return [endpoints[i] for i in top]
