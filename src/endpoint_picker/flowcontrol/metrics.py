"""Flow control's Prometheus metrics: upstream's names, labels and buckets (spec section 7.1)."""

from __future__ import annotations

from endpoint_picker.metrics import REGISTRY, Gauge, Histogram

_FLOW_LABELS = ("fairness_id", "priority", "inference_pool", "model_name", "target_model_name")

QUEUE_DURATION_BUCKETS = (
    0.0001,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
FAST_BUCKETS = (0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1)

QUEUE_SIZE = Gauge(
    "inference_extension_flow_control_queue_size",
    "[ALPHA] Number of requests currently inside flow control (queued or being enqueued).",
    _FLOW_LABELS,
    registry=REGISTRY,
)
QUEUE_BYTES = Gauge(
    "inference_extension_flow_control_queue_bytes",
    "[ALPHA] Bytes of requests currently inside flow control (queued or being enqueued).",
    _FLOW_LABELS,
    registry=REGISTRY,
)
REQUEST_QUEUE_DURATION = Histogram(
    "inference_extension_flow_control_request_queue_duration_seconds",
    "[ALPHA] Time a request spent in flow control, by final outcome.",
    ("fairness_id", "priority", "outcome", "inference_pool", "model_name", "target_model_name"),
    buckets=QUEUE_DURATION_BUCKETS,
    registry=REGISTRY,
)
REQUEST_ENQUEUE_DURATION = Histogram(
    "inference_extension_flow_control_request_enqueue_duration_seconds",
    "[ALPHA] Time to enqueue a request, by enqueue outcome (NotYetFinalized when queued).",
    ("fairness_id", "priority", "outcome"),
    buckets=FAST_BUCKETS,
    registry=REGISTRY,
)
DISPATCH_CYCLE_DURATION = Histogram(
    "inference_extension_flow_control_dispatch_cycle_duration_seconds",
    "[ALPHA] Time of one dispatch cycle.",
    buckets=FAST_BUCKETS,
    registry=REGISTRY,
)
POOL_SATURATION = Gauge(
    "inference_extension_flow_control_pool_saturation",
    "[ALPHA] Pool saturation seen by the last dispatch cycle (>= 1.0 is saturated).",
    ("inference_pool",),
    registry=REGISTRY,
)
