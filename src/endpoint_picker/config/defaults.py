"""Upstream's ``applySystemDefaults``: the plugins and wiring a config gets when it omits them.

(a) no profiles -> one ``default`` profile with every filter, scorer and picker; (b) one
profile and no handler -> ``single-profile-handler``; (c) no picker -> ``max-score-picker``,
added to every profile without one, and scorers without a weight get 1; (d) the default
flow-control policies; the parsers, the ``utilization-detector`` and the metrics data source
when referenced but not defined; and a profile that uses ``prefix-cache-scorer`` gets an
``approx-prefix-cache-producer`` (upstream's ``CreateMissingDataProducers``), tuned by any
parameters written on the scorer, unless the scorer names another producer
(``prefixMatchInfoProducerName``, llm-d's precise one).
"""

from __future__ import annotations

from typing import Any

from endpoint_picker.config import registry as r
from endpoint_picker.config.model import EppConfig, PluginInstance, ProfileConfig, ProfileRef
from endpoint_picker.errors import ConfigError

DEFAULT_POLICIES = ("fcfs-ordering-policy", "global-strict-fairness-policy")
DEFAULT_USAGE_LIMIT = "static-usage-limit-policy"
PREFIX_SCORER = "prefix-cache-scorer"
PREFIX_PRODUCER = "approx-prefix-cache-producer"


def _add(cfg: EppConfig, type_name: str, params: Any = None) -> PluginInstance:
    ptype = r.PLUGIN_TYPES[type_name]
    inst = PluginInstance(type_name, type_name, ptype.kinds, params or ptype.params())
    cfg.plugins[type_name] = inst
    return inst


def _ensure(cfg: EppConfig, name: str, path: str) -> None:
    """Define plugin ``name`` with its type's defaults when a reference names an undefined
    built-in type (upstream registers such defaults by type name)."""
    if name not in cfg.plugins and name in r.PLUGIN_TYPES:
        _add(cfg, name)
    elif name not in cfg.plugins and name in r.UPSTREAM_NOT_IMPLEMENTED:
        raise ConfigError(r.unknown_type_reason(name), path=path)


def apply_system_defaults(cfg: EppConfig) -> None:
    plugins, profiles = cfg.plugins, cfg.profiles
    sched_kinds = {r.FILTER, r.SCORER, r.PICKER}
    if not profiles:  # (a)
        refs = [ProfileRef(p.name, None) for p in plugins.values() if p.kinds & sched_kinds]
        profiles.append(ProfileConfig("default", refs))
    handlers = [p for p in plugins.values() if r.PROFILE_HANDLER in p.kinds]
    if len(profiles) == 1 and not handlers:  # (b)
        _add(cfg, "single-profile-handler")
    pickers = [p for p in plugins.values() if r.PICKER in p.kinds]
    if not pickers:  # (c)
        pickers = [_add(cfg, "max-score-picker")]
    for profile in profiles:
        kinds = [plugins[ref.plugin_ref].kinds for ref in profile.refs if ref.plugin_ref in plugins]
        if not any(r.PICKER in k for k in kinds):
            profile.refs.append(ProfileRef(pickers[0].name, None))
        for ref in profile.refs:
            p = plugins.get(ref.plugin_ref)
            if p is not None and r.SCORER in p.kinds and ref.weight is None:
                ref.weight = 1.0
    for t in (*DEFAULT_POLICIES, DEFAULT_USAGE_LIMIT):  # (d)
        if t not in plugins:
            _add(cfg, t)
    for i, name in enumerate(cfg.parsers):
        _ensure(cfg, name, f"requestHandler.parsers[{i}].pluginRef")
    if cfg.saturation_detector in ("utilization-detector", "learned-capacity-detector"):
        _ensure(cfg, cfg.saturation_detector, "flowControl.saturationDetector.pluginRef")
    for src in cfg.data_sources or []:
        if src.plugin_ref == "metrics-data-source":
            _ensure(cfg, src.plugin_ref, "dataLayer.sources")
            for ex in src.extractors:
                if ex == "core-metrics-extractor":
                    _ensure(cfg, ex, "dataLayer.sources")
    _prefix_producer(cfg)


def _reads_approx(p: PluginInstance) -> bool:
    """A ``prefix-cache-scorer`` that reads the approximate producer's match info: one naming
    another producer (``prefixMatchInfoProducerName``, llm-d's precise one) needs none."""
    producer = getattr(p.params, "prefix_match_info_producer_name", "")
    return p.type_name == PREFIX_SCORER and producer in ("", PREFIX_PRODUCER)


def _prefix_producer(cfg: EppConfig) -> None:
    scorers = [
        cfg.plugins[ref.plugin_ref]
        for profile in cfg.profiles
        for ref in profile.refs
        if ref.plugin_ref in cfg.plugins and _reads_approx(cfg.plugins[ref.plugin_ref])
    ]
    if not scorers or any(p.type_name == PREFIX_PRODUCER for p in cfg.plugins.values()):
        return
    # Tuning written on the scorer (upstream's docs put it there) tunes the auto-created
    # producer instead of being silently ignored.
    tuned = next(
        (t for t in (_tuning(s.params) for s in scorers) if t.model_fields_set),
        None,
    )
    _add(cfg, PREFIX_PRODUCER, tuned)


def _tuning(params: Any) -> Any:
    """The producer's parameters written on a scorer (its own ones left out)."""
    split = getattr(params, "producer_params", None)
    return split() if split is not None else params
