"""The EPP's Prometheus registry and its per-request metrics (upstream names and labels).

Each area defines its own metrics on ``REGISTRY`` in its own module (flow control, scheduling,
data layer); this module holds the registry and the request-level metrics the director records.

Label values are made in one place, ``Counter``/``Gauge``/``Histogram.labels`` below, and are
safe by construction: any text becomes valid UTF-8 of bounded length (a lone surrogate from a
JSON body or a header's invalid bytes once made every later scrape fail), and the labels that
clients choose (model names, fairness ids) are bounded: past ``MAX_MODEL_LABELS`` /
``MAX_FAIRNESS_LABELS`` distinct values a new one folds into ``other``, so a client naming a
new model or tenant per request cannot grow the registry without bound. Flow control releases
a fairness id's series when its flow is deleted, which frees its place.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry, disable_created_metrics
from prometheus_client import values as _values
from prometheus_client.metrics import MetricWrapperBase

# Go's client emits no ``*_created`` series; dashboards and alerts written for upstream's EPP
# expect exactly its series, so the Python client's extra ones are turned off process-wide.
disable_created_metrics()  # type: ignore[no-untyped-call]
REGISTRY = CollectorRegistry(auto_describe=True)

# The client's single-process value class; None (plain observe()) if a version lacks it.
_MUTEX_VALUE: type | None = getattr(_values, "MutexValue", None)

_M = ("model_name", "target_model_name")

OTHER = "other"  # the value client-chosen labels fold into past their bound
MAX_LABEL_CHARS = 256
MAX_MODEL_LABELS = 64
MAX_FAIRNESS_LABELS = 128


def label_text(value: object) -> str:
    """``value`` as a label value that always renders: valid UTF-8, at most 256 characters.

    Lone surrogates (JSON ``"\\udcff"``, header bytes decoded with ``surrogateescape``) are
    written as ``\\udcff`` escapes, so the value stays recognisable in the exposition.
    """
    text = value if isinstance(value, str) else str(value)
    if not text.isascii():
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= MAX_LABEL_CHARS else text[:MAX_LABEL_CHARS]


class BoundedValues:
    """The distinct values one kind of label may take: the first ``cap`` seen, then ``other``.

    ``release(value)`` forgets a value and removes its series from every metric, for owners
    that know when a value is gone for good (a deleted flow). ``folded`` counts fold-ins.
    """

    def __init__(self, name: str, cap: int) -> None:
        self.name = name
        self.cap = cap
        self.folded = 0
        self._seen: set[str] = {"", OTHER}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._seen) - 2

    def admit(self, value: str) -> str:
        if value in self._seen:
            return value
        with self._lock:
            if len(self._seen) - 2 >= self.cap:
                self.folded += 1
                return OTHER
            self._seen.add(value)
        return value

    def release(self, value: str) -> None:
        """Forget ``value`` and drop every series that carries it in a label of this kind."""
        value = label_text(value)
        if value in ("", OTHER) or value not in self._seen:
            return
        with self._lock:
            self._seen.discard(value)
        for metric in list(_GUARDED):
            _drop_series(metric, value, self)

    def clear(self) -> None:
        """Forget every value (tests)."""
        with self._lock:
            self._seen = {"", OTHER}


MODEL_LABELS = BoundedValues("model", MAX_MODEL_LABELS)
FAIRNESS_LABELS = BoundedValues("fairness_id", MAX_FAIRNESS_LABELS)
# Label names whose values clients choose, and the bound each one shares.
BOUNDED_LABELS: dict[str, BoundedValues] = {
    "model_name": MODEL_LABELS,
    "target_model_name": MODEL_LABELS,
    "fairness_id": FAIRNESS_LABELS,
}
_GUARDED: list[MetricWrapperBase] = []


def safe_label_values(names: Sequence[str], values: Iterable[object]) -> tuple[str, ...]:
    """What ``labels()`` stores: each value made safe, client-chosen ones bounded."""
    out = []
    for name, value in zip(names, values, strict=True):
        text = label_text(value)
        bound = BOUNDED_LABELS.get(name)
        out.append(bound.admit(text) if bound is not None else text)
    return tuple(out)


def _drop_series(metric: MetricWrapperBase, value: str, bound: BoundedValues) -> None:
    names: Sequence[str] = metric._labelnames
    slots = [i for i, n in enumerate(names) if BOUNDED_LABELS.get(n) is bound]
    if not slots:
        return
    with metric._lock:
        children: dict[Any, Any] = metric._metrics
        for key in [k for k in children if any(k[i] == value for i in slots)]:
            del children[key]


def _labels(metric: Any, values: tuple[object, ...], kwargs: dict[str, object]) -> Any:
    if kwargs and not values:
        if sorted(kwargs) != sorted(metric._labelnames):
            raise ValueError("Incorrect label names")
        values = tuple(kwargs[n] for n in metric._labelnames)
    elif len(values) != len(metric._labelnames):
        raise ValueError("Incorrect label count")
    return safe_label_values(metric._labelnames, values)


def _register(metric: MetricWrapperBase) -> None:
    if metric._labelnames and not metric._labelvalues:  # a parent, not a labelled child
        _GUARDED.append(metric)


class Counter(prometheus_client.Counter):
    """``prometheus_client.Counter`` whose label values are safe and bounded (see module)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _register(self)

    def labels(self, *labelvalues: object, **labelkwargs: object) -> Counter:
        return super().labels(*_labels(self, labelvalues, labelkwargs))

    def remove(self, *labelvalues: Any) -> None:
        super().remove(*(label_text(v) for v in labelvalues))


class Gauge(prometheus_client.Gauge):
    """``prometheus_client.Gauge`` whose label values are safe and bounded (see module)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _register(self)

    def labels(self, *labelvalues: object, **labelkwargs: object) -> Gauge:
        return super().labels(*_labels(self, labelvalues, labelkwargs))

    def remove(self, *labelvalues: Any) -> None:
        super().remove(*(label_text(v) for v in labelvalues))


class Histogram(prometheus_client.Histogram):
    """``prometheus_client.Histogram`` whose label values are safe and bounded (see module)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _register(self)

    def labels(self, *labelvalues: object, **labelkwargs: object) -> Histogram:
        return super().labels(*_labels(self, labelvalues, labelkwargs))

    def remove(self, *labelvalues: Any) -> None:
        super().remove(*(label_text(v) for v in labelvalues))


# Upstream's ladders (pkg/epp/metrics/metrics.go), 32778 (sic) included.
LATENCY_BUCKETS = (
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2, 3, 4, 5, 6, 8, 10, 15, 20,
    30, 45, 60, 120, 180, 240, 300, 360, 480, 600, 900, 1200, 1800, 2700, 3600,
)  # fmt: skip
REQUEST_SIZE_BUCKETS = tuple(float(2**i) for i in range(6, 31))
RESPONSE_SIZE_BUCKETS = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384,
                         32778, 65536)  # fmt: skip
INPUT_TOKEN_BUCKETS = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32778,
                       65536, 131072, 262144, 524288, 1048576)  # fmt: skip
OUTPUT_TOKEN_BUCKETS = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
TPOT_BUCKETS = (
    0.0005, 0.00205, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.125, 0.15, 0.2, 0.3, 0.4, 0.5,
    0.6, 0.8, 1, 1.5, 2, 3, 4.5, 6, 12, 18, 24, 30, 36, 48, 60, 90, 120, 180, 270, 360,
)  # fmt: skip
NTPOT_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)

REQUEST_TOTAL = Counter(
    "inference_objective_request_total",
    "[ALPHA] Counter of inference objective requests broken out for each model and target model.",
    (*_M, "priority"),
    registry=REGISTRY,
)
REQUEST_ERRORS = Counter(
    "inference_objective_request_error_total",
    "[ALPHA] Counter of inference objective requests errors broken out for each model and target "
    "model.",
    (*_M, "error_code"),
    registry=REGISTRY,
)
REQUEST_DURATION = Histogram(
    "inference_objective_request_duration_seconds",
    "[ALPHA] Inference objective response latency distribution in seconds.",
    _M,
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
REQUEST_SIZES = Histogram(
    "inference_objective_request_sizes",
    "[ALPHA] Inference objective requests size distribution in bytes.",
    _M,
    buckets=REQUEST_SIZE_BUCKETS,
    registry=REGISTRY,
)
RESPONSE_SIZES = Histogram(
    "inference_objective_response_sizes",
    "[ALPHA] Inference objective responses size distribution in bytes.",
    _M,
    buckets=RESPONSE_SIZE_BUCKETS,
    registry=REGISTRY,
)
INPUT_TOKENS = Histogram(
    "inference_objective_input_tokens",
    "[ALPHA] Inference objective input token count distribution.",
    _M,
    buckets=INPUT_TOKEN_BUCKETS,
    registry=REGISTRY,
)
OUTPUT_TOKENS = Histogram(
    "inference_objective_output_tokens",
    "[ALPHA] Inference objective output token count distribution.",
    _M,
    buckets=OUTPUT_TOKEN_BUCKETS,
    registry=REGISTRY,
)
CACHED_TOKENS = Histogram(
    "inference_objective_prompt_cached_tokens",
    "[ALPHA] Inference objective prompt cached token count distribution.",
    _M,
    buckets=INPUT_TOKEN_BUCKETS,
    registry=REGISTRY,
)
RUNNING_REQUESTS = Gauge(
    "inference_objective_running_requests",
    "[ALPHA] Inference objective number of running requests in each model.",
    ("model_name",),
    registry=REGISTRY,
)
NTPOT = Histogram(
    "inference_objective_normalized_time_per_output_token_seconds",
    "[ALPHA] Inference objective latency divided by number of output tokens in seconds.",
    _M,
    buckets=NTPOT_BUCKETS,
    registry=REGISTRY,
)
REQUEST_TTFT = Histogram(
    "inference_objective_request_ttft_seconds",
    "[ALPHA] Inference model TTFT distribution in seconds for each model and target model.",
    _M,
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
REQUEST_TPOT = Histogram(
    "inference_objective_request_tpot_seconds",
    "[ALPHA] Inference model TPOT distribution in seconds for each model and target model.",
    _M,
    buckets=TPOT_BUCKETS,
    registry=REGISTRY,
)
REQUEST_GAUGES = Gauge(
    "inference_objective_inference_request_metric",
    "[ALPHA] Consolidated gauge for various inference request metrics including TTFT, TPOT, "
    "SLOs, and prediction durations.",
    (*_M, "type"),
    registry=REGISTRY,
)
SLO_VIOLATIONS = Counter(
    "inference_objective_request_slo_violation_total",
    "[ALPHA] Counter of SLO violations for each model, target model, and violation type.",
    (*_M, "type"),
    registry=REGISTRY,
)
MODEL_REWRITE_DECISIONS = Counter(
    "inference_extension_model_rewrite_decisions_total",
    "[ALPHA] Total number of inference model rewrite decisions.",
    ("model_rewrite_name", "model_name", "target_model"),
    registry=REGISTRY,
)
USAGE_ESTIMATED = Counter(
    "endpoint_picker_usage_estimated_total",
    "Requests whose token usage was estimated because the front could not see the response body.",
    _M,
    registry=REGISTRY,
)
FRONT_REJECTED = Counter(
    "endpoint_picker_front_rejected_total",
    "Requests a front answered itself before the director saw them, by front and reason.",
    ("front", "reason"),
    registry=REGISTRY,
)
INFO = Gauge(
    "inference_extension_info",
    "[ALPHA] General information of the current build of Inference Extension.",
    ("commit", "build_ref"),
    registry=REGISTRY,
)


class FastHistogram:
    """``observe(amount)`` for one histogram child, about 5x cheaper than the client's.

    The client's ``observe`` takes a lock twice and walks the buckets in Python; a request
    records about twenty observations (plugins, flow control, the director), which cost more
    than most of the work they time. Here the bucket is found by bisection and the two values
    are added to directly. That is safe because the EPP records on its event loop's thread
    only (exposition just reads). Where the client's internals are not the ones this knows
    (multiprocess mode, another version), ``observe`` is the client's own.
    """

    __slots__ = ("child", "observe")

    def __init__(self, child: Any) -> None:
        self.child = child
        self.observe: Callable[[float], None] = _fast_observe(child) or child.observe


def _fast_observe(child: Any) -> Callable[[float], None] | None:
    total: Any = getattr(child, "_sum", None)
    buckets: list[Any] = list(getattr(child, "_buckets", ()))
    bounds: list[float] = list(getattr(child, "_upper_bounds", ()))
    if _MUTEX_VALUE is None or not buckets or len(buckets) != len(bounds):
        return None
    values: list[Any] = [total, *buckets]
    if any(
        type(v) is not _MUTEX_VALUE or type(getattr(v, "_value", None)) is not float for v in values
    ):
        return None
    slow = child.observe

    def observe(amount: float) -> None:
        if amount != amount:  # NaN: the client's own rules (no bucket)
            slow(amount)
            return
        total._value += amount
        buckets[bisect_left(bounds, amount)]._value += 1

    return observe
