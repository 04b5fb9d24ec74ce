"""The plugin registry: type name -> what the plugin is (its kinds) and how to build it.

Scheduling plugins are built here. Plugins owned by other parts (parsers, data sources,
flow-control policies, saturation detectors) are registered by type so that configs naming
them validate; their raw parameters travel on :class:`~endpoint_picker.config.EppConfig`
to the part that builds them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from endpoint_picker.scheduling.plugins import PLUGIN_CLASSES

Factory = Callable[[str, Mapping[str, Any] | None], Any]

# Kinds (upstream's extension points, by the interfaces a plugin implements).
FILTER = "filter"
SCORER = "scorer"
PICKER = "picker"
PROFILE_HANDLER = "profile-handler"
PRODUCER = "data-producer"
RESPONSE_HEADER = "response-header-processor"
PARSER = "parser"
DATA_SOURCE = "data-source"
EXTRACTOR = "extractor"
ORDERING_POLICY = "ordering-policy"
FAIRNESS_POLICY = "fairness-policy"
USAGE_LIMIT_POLICY = "usage-limit-policy"
SATURATION_DETECTOR = "saturation-detector"


@dataclass(frozen=True, slots=True)
class PluginType:
    type_name: str
    kinds: frozenset[str]
    factory: Factory | None = None  # None: built by its owner from the raw parameters


PLUGIN_TYPES: dict[str, PluginType] = {}


def register_plugin(type_name: str, kinds: set[str], factory: Factory | None = None) -> None:
    """Make ``type_name`` usable in configs (later registrations replace earlier ones)."""
    PLUGIN_TYPES[type_name] = PluginType(type_name, frozenset(kinds), factory)


_SCHEDULING_KINDS = {
    "queue-scorer": {SCORER},
    "kv-cache-utilization-scorer": {SCORER},
    "running-requests-size-scorer": {SCORER},
    "lora-affinity-scorer": {SCORER},
    "token-load-scorer": {SCORER},
    "prefix-cache-scorer": {SCORER},
    "approx-prefix-cache-producer": {PRODUCER},
    "max-score-picker": {PICKER},
    "random-picker": {PICKER},
    "weighted-random-picker": {PICKER},
    "single-profile-handler": {PROFILE_HANDLER},
    "header-based-testing-filter": {FILTER},
    "destination-endpoint-served-verifier": {RESPONSE_HEADER},
    # Precise prefix-cache routing (llm-d): scheduling/plugins/{token_producer,precise}.py.
    "token-producer": {PRODUCER},
    "precise-prefix-cache-producer": {PRODUCER, EXTRACTOR},
    "no-hit-lru-scorer": {SCORER},
    "active-request-scorer": {SCORER},
    "endpoint-notification-source": {DATA_SOURCE},
    "decode-filter": {FILTER},
}
for _type, _kinds in _SCHEDULING_KINDS.items():
    register_plugin(_type, _kinds, PLUGIN_CLASSES[_type].from_params)
register_plugin("tokenizer", {PRODUCER}, PLUGIN_CLASSES["token-producer"].from_params)

for _type in ("openai-parser", "passthrough-parser"):
    register_plugin(_type, {PARSER})
register_plugin("metrics-data-source", {DATA_SOURCE})
register_plugin("core-metrics-extractor", {EXTRACTOR})
# Saturation detectors are also filters (upstream: they implement Filter); the scheduler
# builder wraps flow control's detector objects in a SaturationFilter.
for _type in ("utilization-detector", "concurrency-detector"):
    register_plugin(_type, {SATURATION_DETECTOR, FILTER})
register_plugin("static-usage-limit-policy", {USAGE_LIMIT_POLICY})
_ORDERING = ["fcfs-ordering-policy", "edf-ordering-policy", "slo-deadline-ordering-policy"]
_FAIRNESS = ["global-strict-fairness-policy", "round-robin-fairness-policy"]
try:  # take flow control's own lists when it is there
    from endpoint_picker.flowcontrol.fairness import FAIRNESS_POLICIES
    from endpoint_picker.flowcontrol.ordering import ORDERING_POLICIES

    _ORDERING, _FAIRNESS = list(ORDERING_POLICIES), list(FAIRNESS_POLICIES)
except ImportError:  # pragma: no cover - flow control not installed
    pass
for _type in _ORDERING:
    register_plugin(_type, {ORDERING_POLICY})
for _type in _FAIRNESS:
    register_plugin(_type, {FAIRNESS_POLICY})
