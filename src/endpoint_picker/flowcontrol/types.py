"""Flow control's core vocabulary: flows, outcomes, and the queued item.

A flow is a (fairness id, priority) pair with its own queue. Every request that enters flow
control ends with exactly one :class:`Outcome`; the outcome's value is upstream's
``QueueOutcome.String()`` and is used as the ``outcome`` metric label.
"""

from __future__ import annotations

import asyncio
from enum import StrEnum
from typing import NamedTuple

from endpoint_picker.requests.types import InferenceRequest

# Upstream's sentinel error texts (pkg/epp/flowcontrol/types/errors.go).
ERR_REJECTED = "request rejected pre-queue"
ERR_EVICTED = "request evicted from queue"
ERR_TTL_EXPIRED = "request TTL expired"
ERR_CONTEXT_CANCELLED = "request context cancelled"
ERR_NOT_RUNNING = "flow controller is not running"


class FlowKey(NamedTuple):
    """One flow: a tenant (fairness id) at one priority. Upstream's ``FlowKey{ID, Priority}``."""

    fairness_id: str
    priority: int

    def __str__(self) -> str:
        return f"{self.fairness_id}:{self.priority}"


class Outcome(StrEnum):
    """How a request left flow control (upstream's ``QueueOutcome`` names)."""

    DISPATCHED = "Dispatched"
    REJECTED_CAPACITY = "RejectedCapacity"
    REJECTED_OTHER = "RejectedOther"
    EVICTED_TTL = "EvictedTTL"
    EVICTED_NO_ENDPOINTS = "EvictedNoEndpoints"  # llm-d-router's name (noEndpointRequestTTL)
    EVICTED_CONTEXT_CANCELLED = "EvictedContextCancelled"
    EVICTED_OTHER = "EvictedOther"

    @property
    def kind(self) -> str:
        """The house's coarse outcome: dispatched, rejected, expired, cancelled or failed."""
        return _KINDS[self]


_KINDS = {
    Outcome.DISPATCHED: "dispatched",
    Outcome.REJECTED_CAPACITY: "rejected",
    Outcome.REJECTED_OTHER: "failed",
    Outcome.EVICTED_TTL: "expired",
    Outcome.EVICTED_NO_ENDPOINTS: "expired",
    Outcome.EVICTED_CONTEXT_CANCELLED: "cancelled",
    Outcome.EVICTED_OTHER: "failed",
}

NOT_YET_FINALIZED = "NotYetFinalized"


class Item:
    """A request waiting in a flow queue. ``outcome`` is set exactly once (finalization).

    ``order`` is the ordering policy's sort key, computed once at enqueue; ``seq`` breaks ties
    and makes every key unique, so heaps never compare items themselves.
    """

    __slots__ = (
        "deadline",
        "enqueue_time",
        "future",
        "key",
        "order",
        "outcome",
        "request",
        "seq",
        "size",
    )

    def __init__(
        self,
        request: InferenceRequest,
        key: FlowKey,
        seq: int,
        enqueue_time: float,
        deadline: float,
        future: asyncio.Future[None] | None,
    ) -> None:
        self.request = request
        self.key = key
        self.seq = seq
        self.size = request.size_bytes
        self.enqueue_time = enqueue_time
        self.deadline = deadline  # TTL deadline in clock time; inf = none
        self.future = future
        self.order: tuple[float, float, int] | int = seq
        self.outcome: Outcome | None = None

    @property
    def finalized(self) -> bool:
        return self.outcome is not None

    def __repr__(self) -> str:
        return f"Item({self.request.request_id!r}, {self.key}, {self.outcome})"
