"""Scheduling metrics, with upstream's names, labels and buckets (spec section 7.1).

Defined once at import on the EPP's registry; every scheduler instance shares them, as the
process has one scheduler (tests build many, which is harmless: they only add observations).
"""

from __future__ import annotations

from endpoint_picker.metrics import REGISTRY, Counter, FastHistogram, Gauge, Histogram

# Upstream: 0.0001 ... 0.1 for scheduler and plugin latencies.
_LATENCY_BUCKETS = (0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1)

SCHEDULER_E2E_DURATION = Histogram(
    "inference_extension_scheduler_e2e_duration_seconds",
    "[ALPHA] End-to-end scheduling latency distribution in seconds.",
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
SCHEDULER_ATTEMPTS = Counter(
    "inference_extension_scheduler_attempts",  # exposed as ..._attempts_total
    "[ALPHA] Total number of scheduling attempts.",
    ["status", "target_model_name", "pod_name", "namespace", "port"],
    registry=REGISTRY,
)
PLUGIN_DURATION = Histogram(
    "inference_extension_plugin_duration_seconds",
    "[ALPHA] Plugin processing latency distribution in seconds for each extension point, "
    "plugin type and plugin name.",
    ["extension_point", "plugin_type", "plugin_name"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
DISAGG_DECISIONS = Counter(
    "llm_d_epp_disagg_decision",  # exposed as ..._total, llm-d's name
    "[ALPHA] Total number of disaggregation routing decisions made",
    ["plugin_name", "plugin_type", "model_name", "decision_type"],
    registry=REGISTRY,
)
PREFIX_INDEXER_SIZE = Gauge(
    "inference_extension_prefix_indexer_size",
    "[ALPHA] Size of the prefix indexer.",
    registry=REGISTRY,
)
PREFIX_INDEXER_HIT_RATIO = Histogram(
    "inference_extension_prefix_indexer_hit_ratio",
    "[ALPHA] Ratio of prefix length matched to total prefix length in the cache lookup.",
    buckets=tuple(i / 10 for i in range(11)),
    registry=REGISTRY,
)
PREFIX_INDEXER_HIT_BYTES = Histogram(
    "inference_extension_prefix_indexer_hit_bytes",
    "[ALPHA] Length of the prefix match in number of bytes in the cache lookup.",
    buckets=(0, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536),
    registry=REGISTRY,
)

# Extension point label values, as upstream writes them.
PROFILE_PICKER = "ProfilePicker"
FILTER = "Filter"
SCORER = "Scorer"
PICKER = "Picker"
PROCESS_RESULTS = "ProcessProfilesResults"
PREPARE_DATA = "PrepareData"
PRE_REQUEST = "PreRequest"
RESPONSE_COMPLETE = "ResponseComplete"
RESPONSE_RECEIVED = "ResponseReceived"


def plugin_timer(extension_point: str, plugin_type: str, plugin_name: str) -> FastHistogram:
    """The histogram child for one plugin at one extension point (resolve once, observe often)."""
    return FastHistogram(PLUGIN_DURATION.labels(extension_point, plugin_type, plugin_name))
