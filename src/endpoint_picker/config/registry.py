"""The plugin registry: type name -> its kinds, its parameter model, and how to build it.

Every plugin type a config may name is registered here, whoever owns it (scheduling, flow
control, data layer, parsers): the loader validates a plugin's ``parameters`` against the
registered model (see :mod:`endpoint_picker.params`) and the builder calls the factory once per
configured plugin with the validated model. A new plugin type is one :func:`register_plugin`
call. ``UPSTREAM_NOT_IMPLEMENTED`` lists upstream's types that are not built here yet, so a
config naming one fails with a message that says so rather than "unknown type".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from endpoint_picker.datalayer.params import MetricsExtractorParams, MetricsSourceParams
from endpoint_picker.flowcontrol.config import StaticUsageLimitParams
from endpoint_picker.flowcontrol.fairness import FAIRNESS_POLICIES
from endpoint_picker.flowcontrol.ordering import ORDERING_POLICIES
from endpoint_picker.flowcontrol.saturation import SATURATION_DETECTORS
from endpoint_picker.params import NoParams, PluginParams
from endpoint_picker.requests import PARSERS
from endpoint_picker.scheduling.plugins import PLUGIN_CLASSES
from endpoint_picker.validation import did_you_mean

Factory = Callable[[str, Any], Any]
"""``factory(name, params)``: the plugin object, from its validated parameter model."""

# Kinds (upstream's extension points, by the interfaces a plugin implements).
FILTER = "filter"
SCORER = "scorer"
PICKER = "picker"
PROFILE_HANDLER = "profile-handler"
ADMITTER = "admitter"  # llm-d's request-control admission plugins (before scheduling)
DECIDER = "decider"  # llm-d's disaggregation deciders, named by disagg-profile-handler
PRE_REQUEST = "pre-request"  # llm-d's request-control PreRequest plugins (header handlers)
PRODUCER = "data-producer"
RESPONSE_HEADER = "response-header-processor"
RESPONSE_BODY = "response-body-processor"
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
    params: type[PluginParams]
    factory: Factory


PLUGIN_TYPES: dict[str, PluginType] = {}


def register_plugin(
    type_name: str,
    kinds: set[str],
    params: type[PluginParams],
    factory: Factory,
) -> None:
    """Make ``type_name`` usable in configs (a later registration replaces an earlier one)."""
    PLUGIN_TYPES[type_name] = PluginType(type_name, frozenset(kinds), params, factory)


def _params_only(name: str, params: Any) -> Any:
    """For plugins whose owner reads the validated parameters (policies, data layer)."""
    return params


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
    # Roles and labels (llm-d): scheduling/plugins/roles.py.
    "prefill-filter": {FILTER},
    "encode-filter": {FILTER},
    "label-selector-filter": {FILTER},
    # Disaggregated scheduling (llm-d): scheduling/plugins/{disagg,deciders}.py.
    "disagg-profile-handler": {PROFILE_HANDLER},
    # llm-d's deprecated forms of it: scheduling/plugins/disagg_legacy.py.
    "pd-profile-handler": {PROFILE_HANDLER},
    "disagg-headers-handler": {PRE_REQUEST},
    "prefill-header-handler": {PRE_REQUEST},
    "prefix-based-pd-decider": {DECIDER},
    "always-disagg-pd-decider": {DECIDER},
    "always-disagg-multimodal-decider": {DECIDER},
    "data-parallel-profile-handler": {PROFILE_HANDLER},
    "load-aware-scorer": {SCORER},
    "probabilistic-admitter": {ADMITTER},
    "session-affinity-scorer": {SCORER, RESPONSE_HEADER},
    "request-attribute-reporter": {RESPONSE_BODY},
    "by-label": {FILTER},  # llm-d's deprecated label filter (scheduling/plugins/bylabel.py)
}
for _type, _kinds in _SCHEDULING_KINDS.items():
    _cls = PLUGIN_CLASSES[_type]
    register_plugin(_type, _kinds, _cls.params_model, _cls.from_config)
_tokens = PLUGIN_CLASSES["token-producer"]  # llm-d's older name for the same plugin
register_plugin("tokenizer", {PRODUCER}, _tokens.params_model, _tokens.from_config)
_selector = PLUGIN_CLASSES["label-selector-filter"]  # llm-d's deprecated name for it
register_plugin("by-label-selector", {FILTER}, _selector.params_model, _selector.from_config)


def _shared(obj: Any) -> Factory:
    """A factory returning ``obj`` (stateless plugins such as parsers)."""
    return lambda name, params: obj


def _detector(cls: Any) -> Factory:
    return lambda name, params: cls.from_config(params)


for _type, _parser in PARSERS.items():
    register_plugin(_type, {PARSER}, NoParams, _shared(_parser))
register_plugin("metrics-data-source", {DATA_SOURCE}, MetricsSourceParams, _params_only)
register_plugin("core-metrics-extractor", {EXTRACTOR}, MetricsExtractorParams, _params_only)
# Saturation detectors are also filters (upstream: they implement Filter); the builder wraps
# the one detector object in a SaturationFilter where a profile lists it.
for _type, _det in SATURATION_DETECTORS.items():
    register_plugin(
        _type,
        {SATURATION_DETECTOR, FILTER},
        _det.params_model,
        _detector(_det),
    )
register_plugin(
    "static-usage-limit-policy", {USAGE_LIMIT_POLICY}, StaticUsageLimitParams, _params_only
)
for _type in ORDERING_POLICIES:
    register_plugin(_type, {ORDERING_POLICY}, NoParams, _params_only)
for _type in FAIRNESS_POLICIES:
    register_plugin(_type, {FAIRNESS_POLICY}, NoParams, _params_only)


UPSTREAM_NOT_IMPLEMENTED: dict[str, str] = {
    # parsers
    "anthropic-parser": "parser",
    "vllmhttp-parser": "parser",
    "vllmgrpc-parser": "parser",
    "sglanghttp-parser": "parser",
    "vertexai-parser": "parser",
    # scheduling: filters, scorers, profile handlers, producers
    "session-affinity-filter": "filter",
    "endpoint-attribute-filter": "filter",
    "prefix-cache-affinity-filter": "filter",
    "slo-headroom-tier-filter": "filter",
    "utilization-filter": "filter",
    "topology-affinity-filter": "filter",
    "multicluster-session-affinity-filter": "filter",
    "context-length-aware": "scorer",
    "precise-prefix-cache-scorer": "scorer",
    "mm-embeddings-cache-scorer": "scorer",
    "endpoint-attribute-scorer": "scorer",
    "latency-scorer": "scorer",
    "header-label-affinity-scorer": "scorer",
    "topology-affinity-scorer": "scorer",
    "predicted-latency-scorer": "scorer",
    "multicluster-queue-scorer": "scorer",
    "multicluster-kv-cache-utilization-scorer": "scorer",
    "multicluster-prefix-cache-scorer": "scorer",
    "header-profile-handler": "profile handler",
    "burst-prefix-cache-producer": "data producer",
    "mm-embeddings-cache-producer": "data producer",
    "inflight-load-producer": "data producer",
    "predicted-latency-producer": "data producer",
    "session-id-producer": "data producer",
    "p2p-source-producer": "data producer",
    "multicluster-approx-prefix-cache-producer": "data producer",
    # request control and admission
    "agent-identity": "request control",
    "latency-slo-admitter": "admission",
    "disaggregatedset-rollout-screener": "request control",
    # flow control
    "priority-holdback-policy": "usage limit policy",
    "soft-reflective-ceiling-policy": "usage limit policy",
    "program-aware-fairness": "fairness policy",
    "sheddable-eviction-filter": "eviction",
    "priority-then-time-eviction-order-policy": "eviction",
    # data layer
    "models-data-source": "data source",
    "models-data-extractor": "extractor",
    "dcgm-data-source": "data source",
    "dcgm-extractor": "extractor",
    "topology-extractor": "extractor",
    "disaggregatedset-rollout-pod-extractor": "extractor",
    "k8s-notification-source": "data source",
    "multicluster-metrics-data-source": "data source",
    "multicluster-metrics-extractor": "extractor",
    "file-discovery": "endpoint discovery",
    "multicluster-file-discovery": "endpoint discovery",
}
"""Upstream plugin types (GIE v1.5.0, llm-d-router) with no implementation here yet: type ->
what it is. A config naming one fails with "not implemented here", distinct from a typo.
Remove a type from this table when its implementation is registered above."""


def unknown_type_reason(type_name: str) -> str:
    """Why ``type_name`` cannot be used, with the fix: not implemented, or a likely typo."""
    what = UPSTREAM_NOT_IMPLEMENTED.get(type_name)
    if what is not None:
        return (
            f"plugin type {type_name!r} (upstream {what}) is not implemented here "
            "(see docs/configuration.md)"
        )
    hint = did_you_mean(type_name, PLUGIN_TYPES)
    if hint:
        return f"unknown plugin type {type_name!r}{hint}"
    return f"unknown plugin type {type_name!r} (known: {', '.join(sorted(PLUGIN_TYPES))})"


def plugin_tables() -> str:
    """Markdown: every registered type with its parameters and defaults, then upstream's types
    not implemented here (``epp config --plugins``; docs/configuration.md quotes it)."""
    lines = ["| type | kinds | parameters (default) |", "|---|---|---|"]
    for name in sorted(PLUGIN_TYPES):
        pt = PLUGIN_TYPES[name]
        params = ", ".join(f"`{k}` ({v})" for k, v in _defaults(pt.params).items())
        lines.append(f"| `{name}` | {', '.join(sorted(pt.kinds))} | {params or '-'} |")
    lines += ["", "| upstream type not implemented here | what it is |", "|---|---|"]
    for name in sorted(UPSTREAM_NOT_IMPLEMENTED):
        lines.append(f"| `{name}` | {UPSTREAM_NOT_IMPLEMENTED[name]} |")
    return "\n".join(lines) + "\n"


def _defaults(model: type[PluginParams]) -> dict[str, str]:
    """Parameter name -> its default as a config would write it. A model with a required
    entry (``request-attribute-reporter``'s one attribute) shows its empty defaults."""
    try:
        defaults = model()
    except ValidationError:
        defaults = model.model_construct()
    return _flat(defaults.model_dump(by_alias=True, mode="json"), "")


def _flat(values: dict[str, Any], prefix: str) -> dict[str, str]:
    """Nested parameter groups (llm-d's ``kvEventsConfig``) as dotted names, one per leaf."""
    out: dict[str, str] = {}
    for key, value in values.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        elif isinstance(value, bool):
            out[prefix + key] = str(value).lower()
        else:
            out[prefix + key] = "none" if value in (None, [], {}) else str(value)
    return out
