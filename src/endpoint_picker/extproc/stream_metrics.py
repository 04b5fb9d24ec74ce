"""Opt-in ext_proc stream metrics (``--enable-grpc-stream-metrics``), llm-d-router's names:

- ``llm_d_epp_extproc_streams_inflight``: streams open now;
- ``llm_d_epp_extproc_stream_duration_seconds``: how long each stream stayed open;
- ``llm_d_epp_extproc_streams_total{code}``: streams ended, by gRPC status code in Go's spelling
  (``OK``, ``Canceled``, ``Internal``, ...), as upstream's interceptor records them.

They are registered on the EPP's registry only when the flag is given, as upstream does, so a
default scrape shows none of them.
"""

from __future__ import annotations

import threading
import time

import grpc
from prometheus_client import Counter, Gauge, Histogram

from endpoint_picker.metrics import REGISTRY

_SUBSYSTEM = "llm_d_epp"
BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600)

# grpc-python's StatusCode names -> Go's codes.Code.String() (note Go's "Canceled").
GO_CODE = {
    "OK": "OK",
    "CANCELLED": "Canceled",
    "UNKNOWN": "Unknown",
    "INVALID_ARGUMENT": "InvalidArgument",
    "DEADLINE_EXCEEDED": "DeadlineExceeded",
    "NOT_FOUND": "NotFound",
    "ALREADY_EXISTS": "AlreadyExists",
    "PERMISSION_DENIED": "PermissionDenied",
    "RESOURCE_EXHAUSTED": "ResourceExhausted",
    "FAILED_PRECONDITION": "FailedPrecondition",
    "ABORTED": "Aborted",
    "OUT_OF_RANGE": "OutOfRange",
    "UNIMPLEMENTED": "Unimplemented",
    "INTERNAL": "Internal",
    "UNAVAILABLE": "Unavailable",
    "DATA_LOSS": "DataLoss",
    "UNAUTHENTICATED": "Unauthenticated",
}


class StreamMetrics:
    """The three series; created on first ``enable()`` (once per process)."""

    def __init__(self) -> None:
        self.inflight = Gauge(
            "extproc_streams_inflight",
            "Number of ext_proc gRPC streams currently open.",
            subsystem=_SUBSYSTEM,
            registry=REGISTRY,
        )
        self.duration = Histogram(
            "extproc_stream_duration_seconds",
            "Duration an ext_proc gRPC stream stays open, in seconds.",
            subsystem=_SUBSYSTEM,
            buckets=BUCKETS,
            registry=REGISTRY,
        )
        self.total = Counter(
            "extproc_streams_total",
            "Total ext_proc gRPC streams completed, by gRPC status code.",
            ["code"],
            subsystem=_SUBSYSTEM,
            registry=REGISTRY,
        )

    def started(self) -> float:
        self.inflight.inc()
        return time.perf_counter()

    def finished(self, code: grpc.StatusCode, started_at: float) -> None:
        self.inflight.dec()
        self.duration.observe(time.perf_counter() - started_at)
        self.total.labels(GO_CODE.get(code.name, "Unknown")).inc()


_lock = threading.Lock()
_metrics: StreamMetrics | None = None


def enable() -> StreamMetrics:
    """The process's stream metrics, registered on first use."""
    global _metrics
    with _lock:
        if _metrics is None:
            _metrics = StreamMetrics()
        return _metrics
