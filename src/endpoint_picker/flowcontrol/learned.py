"""``learned-capacity-detector``: the pool is full when every endpoint runs all it can.

This project's default saturation detector (docs/flow-control.md, "Learned capacity"). Upstream's
``utilization-detector`` calls the pool saturated only once every server holds a queue of its
own, so under overload the queue, and with it the priority order, lives in the servers' FIFO
queues. This detector keeps the queue in the EPP instead: each endpoint has a learned capacity
(:class:`~endpoint_picker.flowcontrol.capacity.CapacityLearner`), the EPP's in-flight requests
fill it, and the pool is saturated when dispatching more would make a server queue.

It also reserves the last slot(s) for the highest priority (holdback): bands below the top band
stop at ``holdback_ceiling``, so a slot is usually free when a critical request arrives and it
does not wait for one to finish, without preempting anything. The reserve is ``holdback`` of the
pool, grown to the top band's demand (:func:`demand_reserve`) within an idle budget.

An endpoint's load is what it holds now, as best known: the EPP's in-flight count, lowered to
the server's own view when that is smaller (:mod:`~endpoint_picker.flowcontrol.server_view`: its
last scrape's running count plus the requests dispatched to it since shortly before that scrape).
The in-flight count alone keeps a slot "taken" from the moment the server finishes a request
until the front reports the response's end.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Self

from prometheus_client import Gauge
from pydantic import Field

from endpoint_picker.datastore import Endpoint
from endpoint_picker.metrics import REGISTRY
from endpoint_picker.params import Duration, PluginParams, validate_params

from .capacity import CapacityLearner
from .server_view import ServerView

LEARNED_CAPACITY = Gauge(
    "endpoint_picker_flow_control_learned_capacity",
    "Requests the learned-capacity-detector lets run at once on each endpoint.",
    ("endpoint",),
    registry=REGISTRY,
)


class LearnedCapacityParams(PluginParams):
    """``learned-capacity-detector`` parameters (camelCase; durations as Go durations)."""

    initial_capacity: int = Field(4, ge=1)
    max_capacity: int = Field(4096, ge=1)
    probe_interval: Duration = Field(5.0, gt=0)
    plateau_window: Duration = Field(2.0, gt=0)
    kv_cache_util_threshold: float = Field(0.95, gt=0, le=1)
    metrics_staleness_threshold: Duration = Field(2.0, gt=0)
    holdback: float = Field(0.05, ge=0, le=0.5)
    holdback_miss_rate: float = Field(0.05, ge=0, le=1)
    holdback_max_idle: float = Field(0.08, ge=0, le=0.5)
    affinity_budget: int = Field(2, ge=0)
    server_view: bool = True
    transit_allowance: Duration = Field(0.1, ge=0)


def demand_reserve(total: int, top_share: float, miss_rate: float, max_idle: float) -> int:
    """Slots to keep free so that a top-band arrival finds one with chance ``1 - miss_rate``,
    when the top band takes ``top_share`` of the dispatches of a saturated pool of ``total``
    slots; shrunk until the slots it leaves idle average at most ``max_idle`` of the pool.

    The model (docs/flow-control.md, "Holdback"): while the pool is full, the free reserved
    slots are a birth-death chain; a completion anywhere refills one (the freed slot stays free
    while the reserve is short), a top-band arrival takes one. Their rates are the pool's
    completion rate and ``top_share`` of it, so ``r = 1 / top_share`` and P(j free) is
    proportional to ``r**j`` for j = 0..k. Arrivals are Poisson, so they see the chain's
    stationary law: the chance that none is free is ``1 / sum(r**j)``.
    """
    if total <= 1 or not 0 < top_share < 1 or miss_rate <= 0:
        return 0
    r = 1.0 / top_share
    weights = [1.0]  # r**j for j = 0..k
    while weights[0] / sum(weights) > miss_rate and len(weights) < total:
        weights.append(weights[-1] * r)
    k = len(weights) - 1
    while k > 0:
        w = weights[: k + 1]
        if sum(j * x for j, x in enumerate(w)) / sum(w) <= max_idle * total:
            break
        k -= 1
    return k


class LearnedCapacityDetector:
    """Saturation = in-flight requests over learned capacity, summed over fresh endpoints."""

    type_name: ClassVar[str] = "learned-capacity-detector"

    def __init__(self, params: LearnedCapacityParams | None = None) -> None:
        self.params = params or LearnedCapacityParams()
        self._learners: dict[str, CapacityLearner] = {}
        self._gauges: dict[str, Any] = {}
        self._views: dict[str, ServerView] = {}  # recent dispatches per endpoint
        self._told = False  # record_dispatch is wired: the server view can be trusted

    params_model: ClassVar[type[LearnedCapacityParams]] = LearnedCapacityParams

    @classmethod
    def from_config(cls, p: LearnedCapacityParams) -> Self:
        return cls(p)

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None = None) -> Self:
        path = f"{cls.type_name}.parameters"
        return cls.from_config(validate_params(cls.params_model, params, path=path))

    # -- learning ----------------------------------------------------------------------------
    def learner(self, ep: Endpoint) -> CapacityLearner:
        """The endpoint's learner, created at ``initialCapacity`` on first sight."""
        found = self._learners.get(ep.name)
        if found is None:
            p = self.params
            found = self._learners[ep.name] = CapacityLearner(
                p.initial_capacity,
                max_capacity=p.max_capacity,
                probe_interval=p.probe_interval,
                plateau_window=p.plateau_window,
                kv_threshold=p.kv_cache_util_threshold,
            )
            self._gauges[ep.name] = LEARNED_CAPACITY.labels(ep.name)
            self._gauges[ep.name].set(found.capacity)
        return found

    def learned(self, name: str) -> int | None:
        """The capacity learned so far for endpoint ``name`` (None before its first sight)."""
        found = self._learners.get(name)
        return found.capacity if found is not None else None

    def capacity(self, ep: Endpoint, now: float) -> int:
        """The endpoint's learned capacity, after learning from a scrape not yet seen."""
        learner = self.learner(ep)
        if learner.observe(ep.metrics, now, ep.inflight_requests):
            self._gauges[ep.name].set(learner.capacity)
        return learner.capacity

    def record_dispatch(self, ep: Endpoint, now: float) -> None:
        """A request goes to ``ep`` now (the scheduler's dispatch hook, bound by the runner)."""
        self._told = True
        found = self._views.get(ep.name)
        if found is None:
            found = self._views[ep.name] = ServerView(self.params.transit_allowance)
        found.record(now)

    def load(self, ep: Endpoint) -> int:
        """Requests on the endpoint: the EPP's in-flight count, or the server's own view when
        smaller (``ServerView``). Only once dispatches are reported (``record_dispatch``):
        without them a request on its way would be counted out and one more sent into a full
        server."""
        inflight = ep.inflight_requests
        if not (self.params.server_view and self._told) or ep.metrics.update_time <= 0:
            return inflight
        view = self._views.get(ep.name)
        if view is None:  # nothing dispatched there since the wiring: none on its way
            view = self._views[ep.name] = ServerView(self.params.transit_allowance)
        return view.load(inflight, ep.metrics, self.learner(ep).capacity)

    def _fresh(self, ep: Endpoint, now: float) -> bool:
        return ep.metrics.age(now) <= self.params.metrics_staleness_threshold

    def forget_missing(self, endpoints: Sequence[Endpoint]) -> None:
        """Drop learners (and gauge series) of endpoints no longer in the pool."""
        names = {ep.name for ep in endpoints}
        for name in [n for n in self._learners if n not in names]:
            del self._learners[name]
            self._gauges.pop(name, None)
            self._views.pop(name, None)
            try:
                LEARNED_CAPACITY.remove(name)
            except KeyError:  # pragma: no cover - already gone
                pass

    def _totals(self, endpoints: Sequence[Endpoint], now: float) -> tuple[int, int]:
        """(in-flight capped at capacity, capacity) over endpoints with fresh metrics."""
        if len(self._learners) > len(endpoints):
            self.forget_missing(endpoints)
        used = total = 0
        for ep in endpoints:
            cap = self.capacity(ep, now)
            if self._fresh(ep, now):
                total += cap
                used += min(self.load(ep), cap)
        return used, total

    # -- the SaturationDetector protocol -----------------------------------------------------
    def saturation(self, endpoints: Sequence[Endpoint], now: float) -> float:
        """Share of the pool's learned slots in use; 1.0 with no fresh endpoint."""
        used, total = self._totals(endpoints, now)
        return used / total if total else 1.0

    def has_room(self, endpoint: Endpoint, now: float) -> bool:
        """Fresh metrics and fewer requests on it than its learned capacity."""
        cap = self.capacity(endpoint, now)
        return self._fresh(endpoint, now) and self.load(endpoint) < cap

    def room_at_dispatch(
        self, endpoint: Endpoint, now: float, affine: bool = False, confirmed: bool = False
    ) -> bool:
        """The scheduler's dispatch-time check: room (:meth:`has_room`), or, for a request
        with affinity to this endpoint (its prefix or LoRA adapter is there), up to
        ``affinityBudget`` requests beyond its capacity. Affinity may then wait briefly for the
        server that has the request's cache (a cache miss elsewhere costs far more than one
        slot's turnover), while requests without it never queue in a full server: the
        ordering stays in the EPP. ``confirmed``: count only the slots the server is known to
        run, not an open capacity probe (for the top band, see ``holdback_ceiling``)."""
        cap = self.capacity(endpoint, now)
        if confirmed:
            cap = self.learner(endpoint).confirmed
        if affine:
            cap += self.params.affinity_budget
        return self._fresh(endpoint, now) and self.load(endpoint) < cap

    def known_room(self, endpoints: Sequence[Endpoint], now: float) -> bool:
        """Some fresh endpoint has a free slot it is known to run, not only an open probe."""
        return any(self.room_at_dispatch(ep, now, confirmed=True) for ep in endpoints)

    def endpoint_saturated(self, endpoint: Endpoint, now: float) -> bool:
        return not self.has_room(endpoint, now)

    def filter(self, endpoints: Sequence[Endpoint], now: float) -> list[Endpoint]:
        """Endpoints with room; all of them when none has (flow control already admitted it)."""
        kept = [ep for ep in endpoints if self.has_room(ep, now)]
        return kept if kept else list(endpoints)

    def holdback_ceiling(
        self, endpoints: Sequence[Endpoint], now: float, top_share: float = 0.0
    ) -> float:
        """The saturation at which bands below the top band stop: the slots the servers are
        known to run less a reserve of ``holdback`` of them (at least one slot), grown to what
        the top band's share of recent dispatches needs (:func:`demand_reserve`); never every
        slot. 1.0 when holdback is off."""
        p = self.params
        if p.holdback <= 0:
            return 1.0
        _, total = self._totals(endpoints, now)
        # The reserve is of slots the servers are known to run. An open capacity probe (one
        # slot above a server's plateau) may be refused: it is no free slot for the top band,
        # and a lower band's request in it does not take one from the reserve.
        in_probes = known = 0
        for ep in endpoints:
            if self._fresh(ep, now):
                cap, confirmed = self.capacity(ep, now), self.learner(ep).confirmed
                load = self.load(ep)
                known += confirmed
                in_probes += min(load, cap) - min(load, confirmed)
        floor = max(1, math.ceil(p.holdback * known))
        demand = demand_reserve(known, top_share, p.holdback_miss_rate, p.holdback_max_idle)
        reserve = min(max(floor, demand), known - 1)
        if total <= 1 or known <= 1 or reserve <= 0:
            return 1.0
        # Lower bands stop once the known slots they may fill are taken: saturation (``used``
        # over ``total``) reaches this when ``used - in_probes`` reaches ``known - reserve``.
        return (known - reserve + in_probes) / total
