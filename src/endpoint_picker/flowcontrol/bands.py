"""Priority bands and the registry of flows: capacity, strict-priority selection, GC.

Synchronous (callers pass ``now``), so the dispatch rules are tested without an event loop.
The controller wraps it with futures, timers and metrics.
"""

from __future__ import annotations

from bisect import insort

from .config import FlowControlConfig, PriorityBandConfig
from .fairness import FAIRNESS_POLICIES, FairnessPolicy
from .ordering import ORDERING_POLICIES, FlowQueue, OrderingPolicy
from .types import FlowKey, Item

# Flows are keyed by a client-chosen fairness id: past this many, idle flows are deleted at
# once (not after flowGCTimeout) and, when none is idle, a request opening a new flow is
# rejected as over capacity, so tenants made up per request cannot grow memory without bound.
MAX_FLOWS = 10_000


class PriorityBand:
    """All flows of one priority, with the band's policies, limits and live totals."""

    __slots__ = (
        "bytes",
        "ceiling",
        "config",
        "fairness",
        "flows",
        "idle_since",
        "len",
        "ordering",
        "priority",
        "static",
    )

    def __init__(self, config: PriorityBandConfig, ceiling: float, static: bool, now: float):
        self.priority = config.priority
        self.config = config
        self.ceiling = ceiling
        self.static = static
        self.flows: dict[str, FlowQueue] = {}
        self.ordering: OrderingPolicy = ORDERING_POLICIES[config.ordering_policy]()
        self.fairness: FairnessPolicy = FAIRNESS_POLICIES[config.fairness_policy](self.flows)
        self.len = 0
        self.bytes = 0
        self.idle_since = now


class Hold:
    """Returned by :meth:`FlowRegistry.select` when saturation holds the head of a band."""

    __slots__ = ("band",)

    def __init__(self, band: PriorityBand) -> None:
        self.band = band


class FlowRegistry:
    """Flows and bands of one pool. Counts are exact: a finalized item leaves them at once."""

    def __init__(
        self, config: FlowControlConfig, now: float = 0.0, *, max_flows: int = MAX_FLOWS
    ) -> None:
        self.config = config
        self.max_flows = max_flows
        self.flows = 0  # across all bands
        self.deleted: list[str] = []  # fairness ids of deleted flows, for the owner to drain
        self.bands: dict[int, PriorityBand] = {}
        self._order: list[int] = []  # negated priorities, ascending = highest priority first
        self.len = 0
        self.bytes = 0
        for b in config.priority_bands:
            self._add_band(b, static=True, now=now)

    def _add_band(self, cfg: PriorityBandConfig, static: bool, now: float) -> PriorityBand:
        band = PriorityBand(cfg, self.config.ceiling(cfg), static, now)
        self.bands[cfg.priority] = band
        insort(self._order, -cfg.priority)
        return band

    def band(self, priority: int, now: float) -> PriorityBand:
        """The band for ``priority``, created from the template on first use."""
        band = self.bands.get(priority)
        if band is None:
            band = self._add_band(self.config.band(priority), static=False, now=now)
        return band

    def priorities(self) -> list[int]:
        """Band priorities, highest first."""
        return [-p for p in self._order]

    def has_capacity(self, band: PriorityBand, size: int) -> bool:
        """Upstream's ``hasCapacity``: 0 = unlimited; exactly at capacity is allowed."""
        c = self.config
        if c.max_bytes > 0 and self.bytes + size > c.max_bytes:
            return False
        if c.max_requests > 0 and self.len + 1 > c.max_requests:
            return False
        bc = band.config
        if bc.max_bytes > 0 and band.bytes + size > bc.max_bytes:
            return False
        return not (bc.max_requests > 0 and band.len + 1 > bc.max_requests)

    def enqueue(self, item: Item, now: float) -> bool:
        """Queue ``item`` in its flow, or return False when over a byte or count limit."""
        band = self.band(item.key.priority, now)
        if not self.has_capacity(band, item.size):
            return False
        flow = band.flows.get(item.key.fairness_id)
        if flow is None:
            if self.flows >= self.max_flows and not self._delete_flows(now, idle_for=0.0):
                return False
            flow = FlowQueue(item.key, band.ordering.uses_heap, now)
            band.flows[item.key.fairness_id] = flow
            self.flows += 1
        item.order = band.ordering.order(item)
        band.len += 1
        band.bytes += item.size
        self.len += 1
        self.bytes += item.size
        if flow.push(item):
            band.fairness.activate(flow)
        return True

    def select(self, saturation: float, now: float) -> Item | Hold | None:
        """Dispatch one item: highest non-empty band first, unless saturation is at or above that
        band's ceiling, which holds it (and every lower band) back. Removes the item it returns.

        A band with nothing queued never holds lower bands back, so a per-band ceiling on an idle
        band does not block others.
        """
        for neg in self._order:
            band = self.bands[-neg]
            if band.len == 0:
                continue
            if saturation >= band.ceiling:
                return Hold(band)
            flow = band.fairness.pick()
            if flow is None:  # pragma: no cover - counts say the band has live items
                continue
            item = flow.pop_head(now)
            self._released(band, item)
            if band.len == 0:
                band.idle_since = now
            band.fairness.after_dispatch(flow)
            return item
        return None

    def remove(self, item: Item, now: float) -> None:
        """Release a finalized (evicted) item that is still queued."""
        band = self.bands[item.key.priority]
        flow = band.flows[item.key.fairness_id]
        flow.discard(item, now)
        self._released(band, item)
        if band.len == 0:
            band.idle_since = now

    def _released(self, band: PriorityBand, item: Item) -> None:
        band.len -= 1
        band.bytes -= item.size
        self.len -= 1
        self.bytes -= item.size

    def collect_garbage(self, now: float) -> tuple[int, int]:
        """Delete flows empty for ``flowGCTimeout`` and dynamic bands empty and flow-less for
        ``priorityBandGCTimeout``. Configured bands are never deleted. Returns (flows, bands)."""
        flows_gone = self._delete_flows(now, self.config.flow_gc_timeout)
        bands_gone = 0
        for priority in self.priorities():
            band = self.bands[priority]
            if (
                not band.static
                and not band.flows
                and band.len == 0
                and now - band.idle_since >= self.config.band_gc_timeout
            ):
                del self.bands[priority]
                self._order.remove(-priority)
                bands_gone += 1
        return flows_gone, bands_gone

    def _delete_flows(self, now: float, idle_for: float) -> int:
        """Delete flows empty for at least ``idle_for`` seconds; returns how many."""
        gone = 0
        for band in self.bands.values():
            for fid in [
                f for f, q in band.flows.items() if q.len == 0 and now - q.idle_since >= idle_for
            ]:
                del band.flows[fid]
                self.deleted.append(fid)
                gone += 1
        self.flows -= gone
        return gone

    def flow(self, key: FlowKey) -> FlowQueue | None:
        band = self.bands.get(key.priority)
        return band.flows.get(key.fairness_id) if band else None
