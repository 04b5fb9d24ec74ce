"""The fast front's own Prometheus metrics: what the access-log path did with its entries."""

from __future__ import annotations

from endpoint_picker.metrics import REGISTRY, Counter, Gauge

ENTRIES = Counter(
    "endpoint_picker_fastfront_access_log_entries_total",
    "Access-log entries received from Envoy, by outcome (completed, unknown, untagged).",
    ("outcome",),
    registry=REGISTRY,
)
SWEPT = Counter(
    "endpoint_picker_fastfront_swept_total",
    "Picked requests finished by the sweeper because their access-log entry never came.",
    registry=REGISTRY,
)
RELEASED = Counter(
    "endpoint_picker_fastfront_released_total",
    "Picked requests finished because every access-log stream closed (Envoy gone).",
    registry=REGISTRY,
)
PENDING = Gauge(
    "endpoint_picker_fastfront_pending_requests",
    "Picked requests waiting for their access-log entry (in flight, or not yet flushed).",
    registry=REGISTRY,
)

# The outcomes' children, resolved once (``labels()`` per entry costs more than ``inc()``).
ENTRIES_COMPLETED = ENTRIES.labels("completed")
ENTRIES_UNKNOWN = ENTRIES.labels("unknown")
ENTRIES_UNTAGGED = ENTRIES.labels("untagged")
