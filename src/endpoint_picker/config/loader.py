"""Load an ``EndpointPickerConfig``: parse strictly, validate every plugin, apply upstream's
defaulting, cross-check. One pass over the whole file, collecting every error it can.

Follows upstream's loader (spec 5.3, llm-d-router ``pkg/epp/config/loader``): static defaults
(plugin name := type), each plugin's parameters against its registered model, system defaults
(default profile, profile handler, picker, flow-control policies, parsers, saturation
detector, data layer, the prefix producer), then cross-checks. Nothing is built here (see
:mod:`endpoint_picker.config.build`). Every failure names the file, the field path and the
reason with its fix; several failures raise one :class:`ConfigErrors` listing them all.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import replace
from typing import Any

import yaml
from pydantic import ValidationError

from endpoint_picker.config import registry as r
from endpoint_picker.config.defaults import apply_system_defaults
from endpoint_picker.config.model import (
    ConfigErrors,
    DataSource,
    EppConfig,
    PluginInstance,
    ProfileConfig,
    ProfileRef,
)
from endpoint_picker.config.schema import (
    API_VERSIONS,
    DEFAULT_CONFIG,
    FEATURE_GATES,
    KIND,
    EndpointPickerConfigDoc,
)
from endpoint_picker.errors import ConfigError
from endpoint_picker.flowcontrol.config import SETTINGS_KEYS, FlowControlConfig
from endpoint_picker.params import check_params, param_errors
from endpoint_picker.validation import did_you_mean

log = logging.getLogger(__name__)


class _StrictLoader(yaml.SafeLoader):
    """YAML loader that rejects duplicate keys (upstream's strict decoder does)."""


def _mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    keys: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in keys:
            mark = key_node.start_mark
            raise ConfigError(f"duplicate key {key!r} (line {mark.line + 1})")
        keys.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def _parse(text: str, source: str) -> dict[str, Any]:
    try:
        raw = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass
    except ConfigError as err:
        raise ConfigError(err.reason, file=source) from None
    except yaml.YAMLError as err:
        raise ConfigError(f"invalid YAML: {err}", file=source) from None
    if raw is None:
        return copy.deepcopy(DEFAULT_CONFIG)
    if not isinstance(raw, dict):
        raise ConfigError("the config must be a mapping", file=source)
    # An empty top-level key (``schedulingProfiles:``) is absent, as Go decodes null.
    return {k: v for k, v in raw.items() if v is not None}


def load_config(path: str | None) -> EppConfig:
    """Load the config file at ``path``; ``None`` means the built-in default."""
    if path is None:
        return load_config_text(None, "<default>")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as err:
        raise ConfigError(f"cannot read config file: {err.strerror}", file=path) from None
    return load_config_text(text, path)


def load_config_text(text: str | None, source: str = "<config-text>") -> EppConfig:
    """Load config from text (upstream's ``--config-text``); empty or ``None`` = the default,
    which (unlike a given file) runs flow control."""
    embedded = not (text or "").strip()
    raw = copy.deepcopy(DEFAULT_CONFIG) if embedded else _parse(text or "", source)
    errors: list[ConfigError] = []
    cfg = _load(raw, source, embedded, errors)
    if errors or cfg is None:
        raise ConfigErrors(errors, file=source)
    return cfg


def _load(
    raw: dict[str, Any], source: str, embedded: bool, errors: list[ConfigError]
) -> EppConfig | None:
    try:
        doc: EndpointPickerConfigDoc | None = EndpointPickerConfigDoc.model_validate(raw)
    except ValidationError as exc:
        doc = None
        errors.extend(param_errors(exc, EndpointPickerConfigDoc, ""))
    _check_header(raw, errors)
    plugins = _plugins(raw.get("plugins"), errors)
    if doc is None or errors:
        return None

    profiles = [
        ProfileConfig(p.name, [ProfileRef(ref.plugin_ref, ref.weight) for ref in p.plugins])
        for p in doc.scheduling_profiles
    ]
    gates = _gates(doc.feature_gates)
    fc_raw = dict(doc.flow_control) if doc.flow_control is not None else None
    # Unnamed: learned-capacity-detector with flow control on (this project's default, issue 13);
    # upstream's utilization-detector with flow control off or when a plugin takes its name.
    upstream = "utilization-detector" in plugins or not _flow_control_on(embedded, gates, fc_raw)
    detector = "utilization-detector" if upstream else "learned-capacity-detector"
    fc_detector = (fc_raw or {}).get("saturationDetector")
    if isinstance(fc_detector, dict) and fc_detector.get("pluginRef"):
        detector = str(fc_detector["pluginRef"])  # llm-d-router's place wins
    elif doc.saturation_detector and doc.saturation_detector.plugin_ref:
        detector = doc.saturation_detector.plugin_ref
    parsers = [p.plugin_ref for p in (doc.request_handler.parsers if doc.request_handler else [])]
    parsers_given = bool(parsers)
    if not parsers and doc.parser and doc.parser.plugin_ref:
        parsers = [doc.parser.plugin_ref]
    sources: list[DataSource] | None = None
    if not gates.get("enableLegacyMetrics", False):
        layer = doc.data_layer
        sources = [
            DataSource(s.plugin_ref, [e.plugin_ref for e in s.extractors])
            for s in (layer.sources if layer else [])
        ]
        inject = layer is None or layer.inject_defaults is not False
        if inject and not any(
            plugins.get(s.plugin_ref, None) is not None
            and plugins[s.plugin_ref].type_name == "metrics-data-source"
            for s in sources
        ):
            sources.append(DataSource("metrics-data-source", ["core-metrics-extractor"]))
    cfg = EppConfig(
        source=source,
        api_version=doc.api_version,
        feature_gates=tuple(doc.feature_gates),
        plugins=plugins,
        profiles=profiles,
        saturation_detector=detector,
        parsers=parsers or ["openai-parser"],
        data_sources=sources,
        discovery=doc.data_layer.discovery.plugin_ref
        if doc.data_layer and doc.data_layer.discovery
        else None,
        flow_control_raw=fc_raw,
    )
    try:
        apply_system_defaults(cfg)
    except ConfigError as err:
        errors.append(err)
        return None
    _validate(cfg, errors, "requestHandler.parsers" if parsers_given else "parser")
    _not_implemented_fields(doc, errors)
    try:
        fc = FlowControlConfig.from_dict(fc_raw, plugins=_policy_refs(cfg))
    except ConfigError as err:
        errors.append(err)
        return None
    cfg.flow_control = replace(fc, enabled=_flow_control_on(embedded, gates, fc_raw))
    if fc_raw and not cfg.flow_control.enabled and SETTINGS_KEYS & set(fc_raw):
        log.warning("%s: flowControl settings are ignored: flow control is off", source)
    return cfg


def _check_header(raw: dict[str, Any], errors: list[ConfigError]) -> None:
    api = raw.get("apiVersion")
    if isinstance(api, str) and api not in API_VERSIONS:
        errors.append(
            ConfigError(
                f"apiVersion must be one of {', '.join(API_VERSIONS)}, got {api!r}",
                path="apiVersion",
            )
        )
    kind = raw.get("kind")
    if isinstance(kind, str) and kind != KIND:
        errors.append(ConfigError(f"kind must be {KIND}, got {kind!r}", path="kind"))
    gates = raw.get("featureGates")
    for i, gate in enumerate(gates if isinstance(gates, list) else []):
        if not isinstance(gate, str):
            continue
        name, _, value = gate.partition("=")
        where = f"featureGates[{i}]"
        if name.strip() not in FEATURE_GATES:
            hint = did_you_mean(name, FEATURE_GATES) or f" (known: {', '.join(FEATURE_GATES)})"
            errors.append(ConfigError(f"unknown feature gate {name!r}{hint}", path=where))
        elif value and value.strip().lower() not in ("true", "false", "1", "0", "t", "f"):
            errors.append(ConfigError(f"{value!r} is not true or false", path=where))


def _gates(gates: list[str]) -> dict[str, bool]:
    """Feature gate name -> on/off (``name`` or ``name=bool``, as llm-d-router reads them)."""
    out: dict[str, bool] = {}
    for gate in gates:
        name, _, value = gate.partition("=")
        out[name.strip()] = value.strip().lower() not in ("false", "0", "f")
    return out


def _flow_control_on(embedded: bool, gates: dict[str, bool], fc: dict[str, Any] | None) -> bool:
    """The switch (docs/configuration.md): the embedded default runs flow control; a given
    config follows ``flowControl.enabled`` if written, else the ``flowControl`` gate, else
    whether the ``flowControl`` section holds flow-control settings."""
    if embedded:
        return True
    if fc is not None and isinstance(fc.get("enabled"), bool):
        return bool(fc["enabled"])
    if "flowControl" in gates:
        return gates["flowControl"]
    return bool(fc and SETTINGS_KEYS & set(fc))


def _plugins(raw: Any, errors: list[ConfigError]) -> dict[str, PluginInstance]:
    """Every ``plugins[]`` entry validated against its type's model (all errors collected)."""
    out: dict[str, PluginInstance] = {}
    for i, spec in enumerate(raw if isinstance(raw, list) else []):
        where = f"plugins[{i}]"
        if not isinstance(spec, dict):
            continue  # the document schema reports it
        type_name = spec.get("type")
        if not isinstance(type_name, str) or not type_name:
            if type_name is None or type_name == "":
                errors.append(ConfigError("plugin type is required", path=f"{where}.type"))
            continue
        name = spec.get("name") or type_name
        if not isinstance(name, str):
            continue
        if name in out:
            errors.append(ConfigError(f"duplicate plugin name {name!r}", path=f"{where}.name"))
            continue
        ptype = r.PLUGIN_TYPES.get(type_name)
        if ptype is None:
            errors.append(ConfigError(r.unknown_type_reason(type_name), path=f"{where}.type"))
            continue
        params, errs = check_params(
            ptype.params, spec.get("parameters"), path=f"{where}.parameters"
        )
        errors.extend(errs)
        if params is not None:
            out[name] = PluginInstance(name, type_name, ptype.kinds, params)
    return out


def _validate(cfg: EppConfig, errors: list[ConfigError], parser_path: str) -> None:
    def err(reason: str, path: str) -> None:
        errors.append(ConfigError(reason, path=path))

    names: set[str] = set()
    sched_kinds = {r.FILTER, r.SCORER, r.PICKER}
    for i, profile in enumerate(cfg.profiles):
        where = f"schedulingProfiles[{i}]"
        if not profile.name:
            err("profile name is required", f"{where}.name")
        elif profile.name in names:
            err(f"duplicate profile name {profile.name!r}", f"{where}.name")
        names.add(profile.name)
        pickers = 0
        for j, ref in enumerate(profile.refs):
            p = cfg.plugins.get(ref.plugin_ref)
            rpath = f"{where}.plugins[{j}].pluginRef"
            if p is None:
                err(_undefined(cfg, ref.plugin_ref), rpath)
                continue
            if not p.kinds & sched_kinds:
                # Upstream's SchedulerProfile.AddPlugins skips such a plugin without a word
                # (GIE's own request-attribute-reporter test config lists its parser and
                # reporter in a profile); the plugin still works where it belongs.
                log.warning(
                    "%s: plugin %r (%s) is not a filter, scorer or picker: ignored in the "
                    "profile, as upstream does",
                    rpath,
                    p.name,
                    p.type_name,
                )
            if ref.weight is not None and r.SCORER not in p.kinds:
                err("weight is only valid for scorers", f"{where}.plugins[{j}].weight")
            pickers += r.PICKER in p.kinds
        if pickers > 1:
            err("a profile may have only one picker", f"{where}.plugins")
    for i, p in enumerate(cfg.plugins.values()):
        refs = getattr(p.params, "plugin_refs", None)
        for field, ref in refs() if callable(refs) else []:
            _check_ref(cfg, ref, r.DECIDER, f"plugins[{i}].parameters.{field}", errors)
    handlers = [p for p in cfg.plugins.values() if r.PROFILE_HANDLER in p.kinds]
    if len(handlers) > 1:
        err("multiple profile handlers found; only one is allowed", "plugins")
    elif not handlers:
        err("no profile handler configured (add one to plugins)", "plugins")
    elif handlers[0].type_name == "single-profile-handler" and len(cfg.profiles) > 1:
        err("single-profile-handler supports exactly one profile", "schedulingProfiles")
    for i, name in enumerate(cfg.parsers):
        where = parser_path if parser_path == "parser" else f"{parser_path}[{i}]"
        _check_ref(cfg, name, r.PARSER, f"{where}.pluginRef", errors)
    det_path = (
        "flowControl.saturationDetector.pluginRef"
        if (cfg.flow_control_raw or {}).get("saturationDetector")
        else "saturationDetector.pluginRef"
    )
    _check_ref(cfg, cfg.saturation_detector, r.SATURATION_DETECTOR, det_path, errors)
    for i, src in enumerate(cfg.data_sources or []):
        spath = f"dataLayer.sources[{i}]"
        _check_ref(cfg, src.plugin_ref, r.DATA_SOURCE, f"{spath}.pluginRef", errors)
        for j, ex in enumerate(src.extractors):
            _check_ref(cfg, ex, r.EXTRACTOR, f"{spath}.extractors[{j}].pluginRef", errors)
    if cfg.discovery is not None:
        p = cfg.plugins.get(cfg.discovery)
        reason = (
            _undefined(cfg, cfg.discovery)
            if p is None
            else f"plugin {p.name!r} ({p.type_name}) is not an endpoint discovery plugin"
        )
        err(reason, "dataLayer.discovery.pluginRef")


def _not_implemented_fields(doc: EndpointPickerConfigDoc, errors: list[ConfigError]) -> None:
    """llm-d-router's multi-replica data-layer fields: known, but nothing here runs them."""
    layer = doc.data_layer
    if layer is None:
        return
    given = {
        "peerDiscovery": layer.peer_discovery,
        "crossReplicaSyncerPluginRef": layer.cross_replica_syncer_plugin_ref,
        "crossReplicaSyncInterval": layer.cross_replica_sync_interval,
    }
    for key, value in given.items():
        if value is not None:
            reason = f"llm-d-router's {key} (cross-replica sync) is not implemented here"
            errors.append(ConfigError(reason, path=f"dataLayer.{key}"))


def _undefined(cfg: EppConfig, name: str) -> str:
    hint = did_you_mean(name, cfg.plugins)
    return f"plugin {name!r} is not defined in plugins{hint}"


def _check_ref(cfg: EppConfig, name: str, kind: str, path: str, errors: list[ConfigError]) -> None:
    p = cfg.plugins.get(name)
    if p is None:
        errors.append(ConfigError(_undefined(cfg, name), path=path))
    elif kind not in p.kinds:
        errors.append(ConfigError(f"plugin {name!r} ({p.type_name}) is not a {kind}", path=path))


def _policy_refs(cfg: EppConfig) -> list[dict[str, Any]]:
    """Flow control resolves policy references by plugin name -> type (and validated params)."""
    return [
        {"name": p.name, "type": p.type_name, "parameters": p.params} for p in cfg.plugins.values()
    ]
