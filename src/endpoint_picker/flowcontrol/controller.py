"""The flow controller: admission by strict priority, fairness and saturation-gated dispatch.

``admit(request)`` returns once the request is dispatched, or raises the client-facing error of
its outcome. Dispatch is event-driven: on arrival, on ``notify()`` (request completion, metrics
scrape), on TTL expiry, and on a short re-check timer while a held backlog waits.

One dispatch at a time, and the next one only after the previous one is accounted for: a
dispatched request's task resumes and runs the caller's synchronous ``dispatch`` callback (the
director schedules the request and counts it in flight there) before ``admit`` lets the next
dispatch cycle go. Saturation is therefore never measured between a dispatch and its in-flight
accounting (upstream's section 4.9 bug), and this holds structurally: the callback cannot await,
and nothing the caller does after ``admit`` returns can reorder it.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar, overload

from prometheus_client import Histogram
from prometheus_client.metrics import MetricWrapperBase

from endpoint_picker.clock import SYSTEM_CLOCK, Clock
from endpoint_picker.datalayer.freshness import DEFAULT_STALENESS_THRESHOLD, ready_endpoints
from endpoint_picker.datastore import Endpoint
from endpoint_picker.errors import InferenceError, Internal, ResourceExhausted, ServiceUnavailable
from endpoint_picker.metrics import FAIRNESS_LABELS, FastHistogram
from endpoint_picker.requests.types import DEFAULT_FAIRNESS_ID, TOP_BAND_KEY, InferenceRequest

from . import metrics as m
from .bands import FlowRegistry, Hold
from .config import FlowControlConfig
from .saturation import SaturationDetector
from .types import (
    ERR_CONTEXT_CANCELLED,
    ERR_EVICTED,
    ERR_NOT_RUNNING,
    ERR_REJECTED,
    ERR_TTL_EXPIRED,
    NOT_YET_FINALIZED,
    FlowKey,
    Item,
    Outcome,
)

log = logging.getLogger(__name__)

CAPACITY_MESSAGE = f"{ERR_REJECTED}: queue at capacity"
T = TypeVar("T")
ERR_NO_ENDPOINTS = "no ready endpoints"
# With nothing queued, dispatch cycles (run on every completion and scrape) refresh the pool
# saturation gauge at most this often, so it follows the pool instead of freezing when idle.
IDLE_SATURATION_EVERY = 1.0


class TopShare:
    """The top band's share of recent dispatches: counts that decay with time constant
    ``tau`` seconds. Under overload every top-band request is dispatched and the pool
    dispatches as fast as it completes, so this is the top band's share of the pool's
    turnover, which sizes the holdback reserve (``demand_reserve``)."""

    __slots__ = ("_all", "_at", "_top", "tau")

    def __init__(self, tau: float = 5.0) -> None:
        self.tau = tau
        self._top = self._all = 0.0
        self._at = -math.inf

    def _decay(self, now: float) -> None:
        if now > self._at:
            f = math.exp((self._at - now) / self.tau) if self._at > -math.inf else 0.0
            self._top *= f
            self._all *= f
            self._at = now

    def add(self, top: bool, now: float) -> None:
        self._decay(now)
        self._all += 1.0
        if top:
            self._top += 1.0

    def value(self, now: float) -> float:
        self._decay(now)
        return self._top / self._all if self._all > 1e-9 else 0.0


def outcome_error(outcome: Outcome) -> InferenceError | None:
    """The client-facing error for a non-dispatched outcome (upstream's table, spec 2.7)."""
    if outcome is Outcome.REJECTED_CAPACITY:
        return ResourceExhausted(CAPACITY_MESSAGE)
    if outcome is Outcome.EVICTED_NO_ENDPOINTS:
        return ServiceUnavailable(
            f"no ready endpoint within noEndpointRequestTTL: {ERR_EVICTED}: {ERR_NO_ENDPOINTS}"
        )
    if outcome is Outcome.EVICTED_TTL:
        return ServiceUnavailable(f"request timed out in queue: {ERR_EVICTED}: {ERR_TTL_EXPIRED}")
    if outcome is Outcome.EVICTED_CONTEXT_CANCELLED:
        return ServiceUnavailable(f"client disconnected: {ERR_EVICTED}: {ERR_CONTEXT_CANCELLED}")
    if outcome is Outcome.REJECTED_OTHER:
        return Internal(f"internal flow control error: {ERR_REJECTED}: {ERR_NOT_RUNNING}")
    if outcome is Outcome.EVICTED_OTHER:
        return Internal(f"internal flow control error: {ERR_EVICTED}: {ERR_NOT_RUNNING}")
    return None


class FlowController:
    """Queues requests per flow and releases them one at a time while the pool has room."""

    def __init__(
        self,
        config: FlowControlConfig,
        detector: SaturationDetector,
        endpoints: Callable[[], Sequence[Endpoint]],
        clock: Clock = SYSTEM_CLOCK,
        *,
        pool_name: str = "",
        recheck_interval: float = 0.05,
        ready_threshold: float = DEFAULT_STALENESS_THRESHOLD,
    ) -> None:
        self.config = config
        self.detector = detector
        self.clock = clock
        self.registry = FlowRegistry(config, clock.now())
        self.pool_name = pool_name
        self.recheck_interval = recheck_interval
        self.outcomes: Counter[Outcome] = Counter()  # every finalization, by outcome
        self.saturation = 0.0  # as seen by the last dispatch cycle
        self._endpoints = endpoints
        self.ready_threshold = ready_threshold
        self._empty_since: float | None = None  # when the pool last lost its ready endpoints
        self._saturation_at = -math.inf  # when the saturation gauge was last set
        self._loop: asyncio.AbstractEventLoop | None = None
        self._running = False
        self._seq = 0
        self._unaccounted = 0  # dispatched, caller not yet resumed
        self._pass_pending = False
        self._expiry: list[tuple[float, int, Item]] = []
        self._expiry_timer: asyncio.TimerHandle | None = None
        self._expiry_at = math.inf
        self._recheck_timer: asyncio.TimerHandle | None = None
        self._gc_timer: asyncio.TimerHandle | None = None
        self._children: dict[tuple[object, ...], Any] = {}  # histograms as FastHistogram
        self._dispatch_timer = FastHistogram(m.DISPATCH_CYCLE_DURATION)
        self._share = TopShare()  # the top band's share of recent dispatches, for holdback

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._running = True
        self._gc_timer = self._loop.call_later(self.config.flow_gc_timeout, self._on_gc_timer)

    async def stop(self) -> None:
        """Stop accepting; every queued request is evicted (``EvictedOther``, HTTP 500)."""
        self._running = False
        for timer in (self._expiry_timer, self._recheck_timer, self._gc_timer):
            if timer is not None:
                timer.cancel()
        self._expiry_timer = self._recheck_timer = self._gc_timer = None
        now = self.clock.now()
        for band in self.registry.bands.values():
            for flow in band.flows.values():
                for item in flow.live_items():
                    self._evict(item, Outcome.EVICTED_OTHER, now)
        self._expiry.clear()

    @property
    def running(self) -> bool:
        return self._running

    # -- admission ---------------------------------------------------------------------------
    @overload
    async def admit(self, request: InferenceRequest) -> None: ...

    @overload
    async def admit(self, request: InferenceRequest, dispatch: Callable[[], T]) -> T: ...

    async def admit(
        self, request: InferenceRequest, dispatch: Callable[[], T] | None = None
    ) -> T | None:
        """Wait until ``request`` is dispatched, then return ``dispatch()``; raise its outcome's
        error otherwise.

        ``dispatch`` runs before the next dispatch cycle can measure saturation: it is where the
        caller counts the request in flight. On cancellation (client disconnect) the request
        leaves the queue at once, the outcome ``EvictedContextCancelled`` is recorded and
        ``CancelledError`` propagates.
        """
        key = FlowKey(request.fairness_id or DEFAULT_FAIRNESS_ID, request.priority)
        size_gauge, bytes_gauge = self._flow_gauges(key, request)
        size = request.size_bytes
        size_gauge.inc()
        bytes_gauge.inc(size)
        try:
            await self._admit(request, key)
        finally:
            size_gauge.dec()
            bytes_gauge.dec(size)
        try:
            return None if dispatch is None else dispatch()
        finally:
            self._resumed()

    async def _admit(self, request: InferenceRequest, key: FlowKey) -> None:
        """Return once dispatched (``_resumed`` is then the caller's to call); raise otherwise."""
        t0 = time.perf_counter()
        now = self.clock.now()
        loop = self._loop
        self._seq += 1
        ttl = self.config.default_request_ttl
        deadline = now + ttl if ttl > 0 else math.inf
        if not self._running or loop is None:
            item = Item(request, key, self._seq, now, deadline, None)
            self._finalize(item, Outcome.REJECTED_OTHER, now)
            self._raise(item)
        fut: asyncio.Future[None] = loop.create_future()
        item = Item(request, key, self._seq, now, deadline, fut)
        queued = self.registry.enqueue(item, now)
        enqueue_outcome = NOT_YET_FINALIZED if queued else Outcome.REJECTED_CAPACITY.value
        self._child(
            m.REQUEST_ENQUEUE_DURATION, key.fairness_id, str(key.priority), enqueue_outcome
        ).observe(time.perf_counter() - t0)
        if self.registry.deleted:
            self._forget_flows()
        if not queued:
            self._finalize(item, Outcome.REJECTED_CAPACITY, now)
            self._raise(item)
        if deadline < math.inf:
            heapq.heappush(self._expiry, (deadline, item.seq, item))
            self._arm_expiry(now)
        if self._unaccounted == 0 and not self._pass_pending:
            self._dispatch_cycle()  # fast path: dispatch at once when there is room
        try:
            if item.outcome is None:
                await fut
        except asyncio.CancelledError:
            if item.outcome is None:
                self._evict(item, Outcome.EVICTED_CONTEXT_CANCELLED, self.clock.now())
                self._schedule_pass()  # an emptied band may unblock lower ones
            elif item.outcome is Outcome.DISPATCHED:
                self._resumed()
            raise
        if item.outcome is Outcome.DISPATCHED:
            return
        self._raise(item)

    def _raise(self, item: Item) -> NoReturn:
        assert item.outcome is not None
        err = outcome_error(item.outcome)
        assert err is not None
        raise err

    def _resumed(self) -> None:
        """A dispatched request's caller runs now; the next cycle goes after it has accounted."""
        self._unaccounted -= 1
        if self.registry.len:
            self._schedule_pass()

    def notify(self) -> None:
        """Capacity may have changed (a request completed, metrics were scraped): re-check."""
        self._schedule_pass()

    # -- dispatch ----------------------------------------------------------------------------
    def _schedule_pass(self) -> None:
        if not self._pass_pending and self._running and self._loop is not None:
            self._pass_pending = True
            self._loop.call_soon(self._run_pass)

    def _run_pass(self) -> None:
        self._pass_pending = False
        if self._unaccounted == 0 and self._running:
            self._dispatch_cycle()

    def _dispatch_cycle(self) -> None:
        """One cycle; an exception in it fails what is queued rather than stranding it.

        A detector or policy that raises (a bug, or a value it cannot handle) would otherwise
        leave every queued request waiting for a cycle that never dispatches: each is evicted
        with ``EvictedOther`` (HTTP 500, "internal flow control error") and the controller
        keeps running for the requests that come next.
        """
        try:
            self._cycle()
        except Exception:
            log.exception(
                "flow control dispatch cycle failed; failing %d queued requests", self.registry.len
            )
            self._fail_queued(self.clock.now())

    def _fail_queued(self, now: float) -> None:
        for band in list(self.registry.bands.values()):
            for flow in list(band.flows.values()):
                for item in list(flow.live_items()):
                    if item.outcome is None:
                        self._evict(item, Outcome.EVICTED_OTHER, now)

    def _cycle(self) -> None:
        """Expire what is due, then dispatch at most one request (upstream's dispatchCycle)."""
        t0 = time.perf_counter()
        now = self.clock.now()
        if self._expiry and self._expiry[0][0] <= now:
            self._expire(now)
        if self.registry.len == 0:
            if now - self._saturation_at >= IDLE_SATURATION_EVERY:
                every = self._endpoints()  # the gauge follows the pool while idle
                self._measure(ready_endpoints(every, now, self.ready_threshold) or every, now)
            return
        endpoints = self._ready(now)
        if endpoints is None:
            self._arm_recheck()  # the no-endpoint budget runs out on this clock, not on events
            return
        saturation = self._measure(endpoints, now)
        if self._held_back(endpoints, saturation, now):
            self._arm_recheck()
            self._dispatch_timer.observe(time.perf_counter() - t0)
            return
        picked = self.registry.select(saturation, now)
        if isinstance(picked, Item):
            top = picked.key.priority >= self.registry.priorities()[0]
            self._share.add(top, now)
            picked.request.state[TOP_BAND_KEY] = top  # the room check keeps it out of probes
            self._finalize(picked, Outcome.DISPATCHED, now)
            self._unaccounted += 1
            if picked.future is not None and not picked.future.done():
                picked.future.set_result(None)
        elif isinstance(picked, Hold):
            self._arm_recheck()
        self._dispatch_timer.observe(time.perf_counter() - t0)

    def _held_back(self, endpoints: Sequence[Endpoint], saturation: float, now: float) -> bool:
        """Holdback: when the detector reserves slots for the top band (``holdback_ceiling``,
        the learned-capacity detector does), a lower band's head waits at that ceiling, so a
        slot is free when a higher-priority request arrives. Strict priority is unchanged: the
        head checked is the highest band with anything queued. The detector is told the top
        band's share of recent dispatches, which sizes its reserve.

        The top band itself waits while the only free slots are open capacity probes
        (``known_room``) and lower bands are queued: a probe is usually refused, and a
        request in it waits in that server for one of its few slots, where the next
        completion anywhere in the pool frees a slot sooner. Without a backlog below it the
        top band takes probes as any request does, so capacity is still learned."""
        ceiling_of = getattr(self.detector, "holdback_ceiling", None)
        if ceiling_of is None or saturation < 0.5:
            return False
        bands = self.registry.bands
        order = self.registry.priorities()
        head = next((p for p in order if bands[p].len), None)
        if head is None:
            return False
        if head >= order[0]:
            known_room = getattr(self.detector, "known_room", None)
            lower = any(bands[p].len for p in order[1:])
            return bool(lower and known_room is not None and not known_room(endpoints, now))
        ceiling = ceiling_of(endpoints, now, top_share=self._share.value(now))
        return bool(saturation >= ceiling)

    def _measure(self, endpoints: Sequence[Endpoint], now: float) -> float:
        saturation = self.detector.saturation(endpoints, now)
        self.saturation, self._saturation_at = saturation, now
        self._child(m.POOL_SATURATION, self.pool_name).set(saturation)
        return saturation

    def _ready(self, now: float) -> Sequence[Endpoint] | None:
        """The endpoints dispatch should measure: the ready ones. None while there are none:
        nothing is dispatched then (it could only fail), and requests that waited
        ``noEndpointRequestTTL`` since the pool emptied (or since they came) get 503."""
        every = self._endpoints()
        ready = ready_endpoints(every, now, self.ready_threshold)
        if ready:
            self._empty_since = None
            return ready
        if every and not self._ever_ready(every):
            return every  # never scraped (no data layer, cold start): upstream's behaviour
        if self._empty_since is None:
            self._empty_since = now
        ttl = self.config.no_endpoint_request_ttl
        if ttl > 0:
            cutoff = now - ttl
            for band in list(self.registry.bands.values()):
                for flow in list(band.flows.values()):
                    for item in flow.live_items():
                        if max(item.enqueue_time, self._empty_since) <= cutoff:
                            self._evict(item, Outcome.EVICTED_NO_ENDPOINTS, now)
        return None

    @staticmethod
    def _ever_ready(endpoints: Sequence[Endpoint]) -> bool:
        return any(ep.metrics.update_time > 0 for ep in endpoints)

    def _arm_recheck(self) -> None:
        if self._recheck_timer is None and self._loop is not None:
            self._recheck_timer = self._loop.call_later(self.recheck_interval, self._on_recheck)

    def _on_recheck(self) -> None:
        self._recheck_timer = None
        self._schedule_pass()

    # -- expiry and eviction -----------------------------------------------------------------
    def _expire(self, now: float) -> None:
        heap = self._expiry
        while heap and heap[0][0] <= now:
            item = heapq.heappop(heap)[2]
            if item.outcome is None:
                self._evict(item, Outcome.EVICTED_TTL, now)
        if len(heap) > 64 and len(heap) > 2 * self.registry.len:
            self._expiry = [e for e in heap if e[2].outcome is None]
            heapq.heapify(self._expiry)

    def _arm_expiry(self, now: float) -> None:
        if not self._expiry or self._loop is None:
            return
        due = self._expiry[0][0]
        if due >= self._expiry_at:
            return
        if self._expiry_timer is not None:
            self._expiry_timer.cancel()
        self._expiry_at = due
        self._expiry_timer = self._loop.call_later(max(0.0, due - now), self._on_expiry_timer)

    def _on_expiry_timer(self) -> None:
        self._expiry_timer, self._expiry_at = None, math.inf
        now = self.clock.now()
        self._expire(now)
        self._arm_expiry(now)
        self._schedule_pass()

    def _evict(self, item: Item, outcome: Outcome, now: float) -> None:
        self._finalize(item, outcome, now)
        self.registry.remove(item, now)
        if item.future is not None and not item.future.done():
            item.future.set_result(None)

    def _finalize(self, item: Item, outcome: Outcome, now: float) -> None:
        """Exactly once per request: set the outcome and record the queue duration."""
        assert item.outcome is None, f"{item} finalized twice"
        item.outcome = outcome
        self.outcomes[outcome] += 1
        req = item.request
        self._child(
            m.REQUEST_QUEUE_DURATION,
            item.key.fairness_id,
            str(item.key.priority),
            outcome.value,
            self.pool_name,
            req.incoming_model,
            req.target_model,
        ).observe(max(0.0, now - item.enqueue_time))

    # -- garbage collection ------------------------------------------------------------------
    def collect_garbage(self) -> tuple[int, int]:
        """Delete idle flows and dynamic bands now; returns (flows, bands) deleted."""
        return self.registry.collect_garbage(self.clock.now())

    def _forget_flows(self) -> None:
        """Release the metric series of deleted flows whose fairness id is gone from all bands."""
        deleted, self.registry.deleted = self.registry.deleted, []
        bands = self.registry.bands.values()
        for fid in set(deleted):
            if any(fid in band.flows for band in bands):
                continue
            FAIRNESS_LABELS.release(fid)
            for ck in [k for k in self._children if fid in k[1:]]:
                del self._children[ck]

    def _on_gc_timer(self) -> None:
        self.collect_garbage()
        self._forget_flows()
        if self._running and self._loop is not None:
            self._gc_timer = self._loop.call_later(self.config.flow_gc_timeout, self._on_gc_timer)

    def _flow_gauges(self, key: FlowKey, req: InferenceRequest) -> tuple[Any, Any]:
        labels = (key.fairness_id, str(key.priority), self.pool_name)
        return (
            self._child(m.QUEUE_SIZE, *labels, req.incoming_model, req.target_model),
            self._child(m.QUEUE_BYTES, *labels, req.incoming_model, req.target_model),
        )

    def _child(self, metric: MetricWrapperBase, *labels: str) -> Any:
        """A metric's labelled child, cached: ``labels()`` is the costly part of recording."""
        ck = (id(metric), *labels)
        child = self._children.get(ck)
        if child is None:
            if len(self._children) > 50_000:  # label sets follow tenants; bound the cache
                self._children.clear()
            child = metric.labels(*labels)
            if isinstance(metric, Histogram):
                child = FastHistogram(child)
            self._children[ck] = child
        return child
