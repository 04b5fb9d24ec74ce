"""A scheduling profile: filters -> weighted scorers -> one picker (``SchedulerProfile``)."""

from __future__ import annotations

from collections.abc import Sequence
from time import perf_counter

from endpoint_picker.datastore import Endpoint
from endpoint_picker.requests.types import InferenceRequest
from endpoint_picker.scheduling import metrics as m
from endpoint_picker.scheduling.framework import (
    TRACE_KEY,
    Filter,
    Picker,
    ProfileRunResult,
    SchedulingError,
    WeightedScorer,
)


class NoEndpointsError(SchedulingError):
    """A profile ended with nothing left (filters removed all, or the picker chose none)."""


class SchedulerProfile:
    """One named pipeline. Every plugin call is timed into ``plugin_duration_seconds``."""

    def __init__(
        self,
        name: str,
        *,
        filters: Sequence[Filter] = (),
        scorers: Sequence[WeightedScorer] = (),
        picker: Picker,
    ) -> None:
        self.name = name
        self.filters = list(filters)
        self.scorers = list(scorers)
        self.picker = picker
        # Histogram children resolved once: a labels() lookup per call would cost more than
        # most scorers do.
        self._filters = [(f, m.plugin_timer(m.FILTER, f.type_name, f.name)) for f in self.filters]
        self._scorers = [
            (
                ws.scorer,
                float(ws.weight),
                m.plugin_timer(m.SCORER, ws.scorer.type_name, ws.scorer.name),
            )
            for ws in self.scorers
        ]
        self._picker_timer = m.plugin_timer(m.PICKER, picker.type_name, picker.name)

    def run(self, request: InferenceRequest, candidates: Sequence[Endpoint]) -> ProfileRunResult:
        endpoints = list(candidates)
        trace: list[tuple[str, str, float, float]] | None = request.state.get(TRACE_KEY)
        for flt, timer in self._filters:
            t = perf_counter()
            endpoints = flt.filter(request, endpoints)
            timer.observe(perf_counter() - t)
            if trace is not None:
                trace.append((flt.name, "filter", t, perf_counter()))
            if not endpoints:
                raise NoEndpointsError(f"no endpoints left after filter {flt.name!r}")
        totals = [0.0] * len(endpoints)
        why: list[tuple[str, float, list[float]]] = []
        for scorer, weight, timer in self._scorers:
            t = perf_counter()
            scores = scorer.score(request, endpoints)
            timer.observe(perf_counter() - t)
            if trace is not None:
                trace.append((scorer.name, "scorer", t, perf_counter()))
            if scores and (min(scores) < 0.0 or max(scores) > 1.0):
                scores = [0.0 if s < 0.0 else 1.0 if s > 1.0 else s for s in scores]
            why.append((scorer.name, weight, scores))
            # No normalisation by the sum of weights, as upstream.
            totals = [tot + s * weight for tot, s in zip(totals, scores, strict=True)]
        t = perf_counter()
        picked = self.picker.pick(request, endpoints, totals)
        self._picker_timer.observe(perf_counter() - t)
        if trace is not None:
            trace.append((self.picker.name, "picker", t, perf_counter()))
        if not picked:
            raise NoEndpointsError(f"picker {self.picker.name!r} chose no endpoint")
        return ProfileRunResult(picked, endpoints, why, totals)

    def __repr__(self) -> str:
        parts = [f.name for f in self.filters]
        parts += [f"{ws.scorer.name}x{ws.weight:g}" for ws in self.scorers]
        return f"SchedulerProfile({self.name}: {' -> '.join([*parts, self.picker.name])})"
