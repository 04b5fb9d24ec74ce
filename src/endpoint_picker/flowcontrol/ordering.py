"""Ordering policies (which request of a flow goes first) and the flow queue they drive.

Each policy turns an item into a sort key once, at enqueue. FCFS keeps physical arrival order
in a deque (upstream's ``ListQueue``); EDF and SLO-deadline need a heap (upstream's
``MaxMinHeap``). Removal of a request from the middle of a queue (TTL, client disconnect) is
O(1): the item is finalized and its counts released at once, and the physical slot is
skipped when it reaches the head ("zombie"), with a compaction when zombies dominate.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable
from typing import Protocol

from endpoint_picker.requests.types import SLO_TTFT_HEADER, header_value

from .types import FlowKey, Item

INF = math.inf


class OrderingPolicy(Protocol):
    name: str
    uses_heap: bool

    def order(self, item: Item) -> tuple[float, float, int] | int: ...


class FCFSOrdering:
    """``fcfs-ordering-policy``: first come, first served (arrival order)."""

    name = "fcfs-ordering-policy"
    uses_heap = False

    def order(self, item: Item) -> int:
        return item.seq


class EDFOrdering:
    """``edf-ordering-policy``: earliest TTL deadline first (no TTL = last); ties by arrival."""

    name = "edf-ordering-policy"
    uses_heap = True

    def order(self, item: Item) -> tuple[float, float, int]:
        return (item.deadline, item.enqueue_time, item.seq)


def slo_ttft_ms(headers: dict[str, str]) -> int | None:
    """``x-llm-d-slo-ttft-ms`` (or its alias ``x-slo-ttft-ms``) as an int >= 0; None when
    missing, invalid or negative."""
    raw = header_value(headers, SLO_TTFT_HEADER)
    if raw is None:  # headers are lower-case by contract; fall back to a scan for safety
        lower = {k.lower(): v for k, v in headers.items()}
        raw = header_value(lower, SLO_TTFT_HEADER)
    if raw is None:
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        return None
    return value if value >= 0 else None


class SLODeadlineOrdering:
    """``slo-deadline-ordering-policy``: earliest ``received + x-slo-ttft-ms`` first."""

    name = "slo-deadline-ordering-policy"
    uses_heap = True

    def order(self, item: Item) -> tuple[float, float, int]:
        ms = slo_ttft_ms(item.request.headers)
        deadline = INF if ms is None else item.enqueue_time + ms / 1000.0
        return (deadline, item.enqueue_time, item.seq)


ORDERING_POLICIES: dict[str, Callable[[], OrderingPolicy]] = {
    FCFSOrdering.name: FCFSOrdering,
    EDFOrdering.name: EDFOrdering,
    SLODeadlineOrdering.name: SLODeadlineOrdering,
}


class FlowQueue:
    """One flow's queue with exact live counts (``len``, ``bytes``) and lazy physical removal."""

    __slots__ = ("_dq", "_heap", "bytes", "idle_since", "key", "len")

    def __init__(self, key: FlowKey, uses_heap: bool, now: float) -> None:
        self.key = key
        self.len = 0
        self.bytes = 0
        self.idle_since = now
        self._dq: deque[Item] | None = None if uses_heap else deque()
        self._heap: list[tuple[tuple[float, float, int] | int, Item]] | None = (
            [] if uses_heap else None
        )

    def push(self, item: Item) -> bool:
        """Add ``item``; True when it became the head (fairness policies track heads)."""
        self.len += 1
        self.bytes += item.size
        if self._dq is not None:
            self._dq.append(item)
            return self.len == 1
        assert self._heap is not None
        heapq.heappush(self._heap, (item.order, item))
        return self.peek() is item

    def peek(self) -> Item | None:
        """The live head, dropping finalized items (zombies) on the way."""
        if self.len == 0:
            return None
        if self._dq is not None:
            dq = self._dq
            while dq[0].outcome is not None:
                dq.popleft()
            return dq[0]
        assert self._heap is not None
        heap = self._heap
        while heap[0][1].outcome is not None:
            heapq.heappop(heap)
        return heap[0][1]

    def pop_head(self, now: float) -> Item:
        """Remove and return the live head (the queue must not be empty)."""
        item = self.peek()
        assert item is not None
        if self._dq is not None:
            self._dq.popleft()
        else:
            assert self._heap is not None
            heapq.heappop(self._heap)
        self._release(item, now)
        return item

    def discard(self, item: Item, now: float) -> None:
        """Release a finalized item's counts; its slot is dropped lazily or by compaction."""
        self._release(item, now)
        physical = len(self._dq) if self._dq is not None else len(self._heap or ())
        if physical > 64 and physical > 2 * self.len:
            self._compact()

    def _release(self, item: Item, now: float) -> None:
        self.len -= 1
        self.bytes -= item.size
        if self.len == 0:
            self.idle_since = now
            if self._dq is not None:
                self._dq.clear()
            elif self._heap is not None:
                self._heap.clear()

    def _compact(self) -> None:
        if self._dq is not None:
            self._dq = deque(i for i in self._dq if i.outcome is None)
        elif self._heap is not None:
            self._heap = [e for e in self._heap if e[1].outcome is None]
            heapq.heapify(self._heap)

    def live_items(self) -> list[Item]:
        """Queued items not yet finalized, in no particular order."""
        slots = self._dq if self._dq is not None else [e[1] for e in self._heap or ()]
        return [i for i in slots if i.outcome is None]

    def physical_size(self) -> int:
        """Slots held, zombies included (for tests of memory boundedness)."""
        return len(self._dq) if self._dq is not None else len(self._heap or ())
