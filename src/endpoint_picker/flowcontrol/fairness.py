"""Fairness policies: which flow of a priority band dispatches next.

Both keep incremental state so a pick is O(log flows), not a scan of every flow in the band
(upstream scans; with a thousand tenants per band that scan would dominate a dispatch).
A policy is told when a flow's head may have changed (``activate``) and is asked to ``pick``.
"""

from __future__ import annotations

import heapq
from bisect import bisect_right, insort
from collections.abc import Callable, Mapping
from typing import Protocol

from .ordering import FlowQueue


class FairnessPolicy(Protocol):
    name: str

    def activate(self, flow: FlowQueue) -> None:
        """``flow`` is non-empty and its head may be new."""
        ...

    def pick(self) -> FlowQueue | None:
        """A non-empty flow to dispatch from, or None when the band has no live request."""
        ...

    def after_dispatch(self, flow: FlowQueue) -> None:
        """``flow``'s head was just dispatched."""
        ...


class GlobalStrictFairness:
    """``global-strict-fairness-policy``: the flow whose head is globally first by the ordering
    policy (one virtual queue per band).

    A heap of (head order, head seq, flow) entries. Invariant: every non-empty flow has an
    entry whose order is <= its live head's. ``_latest`` remembers the newest entry pushed for
    each flow, so a flow is never pushed twice for the same head: without it, every stale entry
    that surfaced re-pushed a copy of an entry already there, and the heap grew with each
    dispatch (thousands of stale pops per pick under a steady backlog).
    """

    name = "global-strict-fairness-policy"

    def __init__(self, flows: Mapping[str, FlowQueue]) -> None:
        self._heap: list[tuple[object, int, FlowQueue]] = []
        self._latest: dict[FlowQueue, int] = {}
        self._flows = flows

    def activate(self, flow: FlowQueue) -> None:
        head = flow.peek()
        if head is not None and self._latest.get(flow) != head.seq:
            self._latest[flow] = head.seq
            heapq.heappush(self._heap, (head.order, head.seq, flow))

    def pick(self) -> FlowQueue | None:
        heap = self._heap
        while heap:
            _, seq, flow = heap[0]
            live = self._flows.get(flow.key.fairness_id) is flow
            head = flow.peek() if live else None
            if head is not None and head.seq == seq:
                return flow
            heapq.heappop(heap)
            if self._latest.get(flow) == seq:
                # The newest entry of this flow went stale (its head left without a dispatch
                # through this policy): re-enter the flow with its current head, if any.
                del self._latest[flow]
                if live:
                    self.activate(flow)
        return None

    def after_dispatch(self, flow: FlowQueue) -> None:
        self.activate(flow)

    def __len__(self) -> int:
        """Entries in the heap (live and stale): bounded by flows + heads replaced since."""
        return len(self._heap)


class RoundRobinFairness:
    """``round-robin-fairness-policy``: cycle over backlogged flows in fairness-id order,
    starting after the last one picked. The unit of fairness is one dispatch."""

    name = "round-robin-fairness-policy"

    def __init__(self, flows: Mapping[str, FlowQueue]) -> None:
        self._flows = flows
        self._active: list[str] = []  # sorted ids of (possibly) non-empty flows
        self._members: set[str] = set()
        self._last: str | None = None

    def activate(self, flow: FlowQueue) -> None:
        fid = flow.key.fairness_id
        if fid not in self._members:
            self._members.add(fid)
            insort(self._active, fid)

    def pick(self) -> FlowQueue | None:
        active = self._active
        i = bisect_right(active, self._last) if self._last is not None else 0
        while active:
            if i >= len(active):
                i = 0
            fid = active[i]
            flow = self._flows.get(fid)
            if flow is None or flow.len == 0:
                del active[i]
                self._members.discard(fid)
                continue
            self._last = fid
            return flow
        self._last = None
        return None

    def after_dispatch(self, flow: FlowQueue) -> None:
        """Nothing to do: an emptied flow is dropped from the cycle lazily at the next pick."""


FAIRNESS_POLICIES: dict[str, Callable[[Mapping[str, FlowQueue]], FairnessPolicy]] = {
    GlobalStrictFairness.name: GlobalStrictFairness,
    RoundRobinFairness.name: RoundRobinFairness,
}
