"""Load an ``EndpointPickerConfig``: parse strictly, apply upstream's defaulting, validate.

Follows upstream's loader (spec 5.3): static defaults (plugin name := type), instantiate
plugins in order, system defaults (default profile, profile handler, picker, flow-control
policies, parser, saturation detector, data layer, the prefix producer), then cross-checks.
Every failure is a :class:`ConfigError` with the file, the field path and the reason.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import yaml
from pydantic import ValidationError

from endpoint_picker.config import registry as r
from endpoint_picker.config.model import EppConfig, PluginInstance, ProfileConfig, ProfileRef
from endpoint_picker.config.schema import (
    API_VERSION,
    DEFAULT_CONFIG,
    FEATURE_GATES,
    KIND,
    EndpointPickerConfigDoc,
)
from endpoint_picker.errors import ConfigError


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


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


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
    return raw


def load_config(path: str | None) -> EppConfig:
    """Load the config file at ``path``; ``None`` means upstream's built-in default."""
    if path is None:
        return load_config_text(None, "<default>")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as err:
        raise ConfigError(f"cannot read config file: {err.strerror}", file=path) from None
    return load_config_text(text, path)


def load_config_text(text: str | None, source: str = "<config-text>") -> EppConfig:
    """Load config from text (upstream's ``--config-text``); empty or ``None`` = default."""
    raw = copy.deepcopy(DEFAULT_CONFIG) if not (text or "").strip() else _parse(text or "", source)
    try:
        doc = EndpointPickerConfigDoc.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        reason = "unknown field" if first["type"] == "extra_forbidden" else first["msg"]
        raise ConfigError(reason, file=source, path=_loc(tuple(first["loc"]))) from None
    try:
        return _build(doc, source)
    except ConfigError as err:
        if err.file is None:
            err.file = source
        raise ConfigError(err.reason, file=err.file, path=err.path) from None


def _build(doc: EndpointPickerConfigDoc, source: str) -> EppConfig:
    if doc.api_version not in (API_VERSION, "llm-d.ai/v1alpha1"):  # llm-d's group too
        hint = (
            " (upstream's decoder rejects it too)"
            if doc.api_version.endswith("x-k8s.io/v1alpha1")
            else ""
        )
        raise ConfigError(f"apiVersion must be {API_VERSION}{hint}", path="apiVersion")
    if doc.kind != KIND:
        raise ConfigError(f"kind must be {KIND}", path="kind")
    for i, gate in enumerate(doc.feature_gates):
        if gate not in FEATURE_GATES:
            known = ", ".join(FEATURE_GATES)
            raise ConfigError(
                f"unknown feature gate {gate!r} (known: {known})", path=f"featureGates[{i}]"
            )

    plugins: dict[str, PluginInstance] = {}
    for i, spec in enumerate(doc.plugins):
        where = f"plugins[{i}]"
        if not spec.type:
            raise ConfigError("plugin type is required", path=f"{where}.type")
        name = spec.name or spec.type
        if name in plugins:
            raise ConfigError(f"duplicate plugin name {name!r}", path=f"{where}.name")
        plugins[name] = _instance(name, spec.type, spec.parameters, where)

    profiles = [
        ProfileConfig(p.name, [ProfileRef(ref.plugin_ref, ref.weight) for ref in p.plugins])
        for p in doc.scheduling_profiles
    ]
    _system_defaults(plugins, profiles)

    parser = doc.parser.plugin_ref if doc.parser and doc.parser.plugin_ref else "openai-parser"
    if parser not in plugins and parser == "openai-parser":
        plugins[parser] = _instance(parser, parser, None, "parser")
    detector = "utilization-detector"
    if doc.saturation_detector and doc.saturation_detector.plugin_ref:
        detector = doc.saturation_detector.plugin_ref
    if detector not in plugins and detector == "utilization-detector":
        plugins[detector] = _instance(detector, detector, None, "saturationDetector")

    legacy_metrics = "enableLegacyMetrics" in doc.feature_gates
    data_layer: dict[str, Any] | None = None
    if not legacy_metrics:
        if doc.data_layer is None:
            for t in ("metrics-data-source", "core-metrics-extractor"):
                plugins.setdefault(t, _instance(t, t, None, "dataLayer"))
            data_layer = copy.deepcopy(DEFAULT_CONFIG["dataLayer"])
        else:
            data_layer = doc.data_layer.model_dump(by_alias=True)

    cfg = EppConfig(
        source=source,
        feature_gates=tuple(doc.feature_gates),
        plugins=plugins,
        profiles=profiles,
        saturation_detector=detector,
        parser=parser,
        data_layer=data_layer,
        flow_control_raw=doc.flow_control,
    )
    _validate(cfg)
    cfg.flow_control = _flow_control(doc.flow_control, doc)
    return cfg


def _instance(
    name: str, type_name: str, params: Mapping[str, Any] | None, where: str
) -> PluginInstance:
    ptype = r.PLUGIN_TYPES.get(type_name)
    if ptype is None:
        raise ConfigError(f"plugin type {type_name!r} is not registered", path=f"{where}.type")
    obj = None
    if ptype.factory is not None:
        try:
            obj = ptype.factory(name, params)
        except ConfigError as err:
            sub = f".{err.path}" if err.path else ""
            raise ConfigError(err.reason, path=f"{where}.parameters{sub}") from None
    inst = PluginInstance(name, type_name, ptype.kinds, dict(params) if params else None, obj)
    if r.SATURATION_DETECTOR in ptype.kinds:
        from endpoint_picker.config.build import build_detector

        try:  # validate its parameters now, with their path
            build_detector(inst)
        except ConfigError as err:
            sub = err.path.rsplit(".", 1)[-1] if err.path else ""
            sub = "" if sub == "parameters" else sub
            raise ConfigError(err.reason, path=f"{where}.parameters.{sub}".rstrip(".")) from None
    return inst


def _system_defaults(plugins: dict[str, PluginInstance], profiles: list[ProfileConfig]) -> None:
    """Upstream's ``applySystemDefaults`` for scheduling (a)-(c), plus the prefix producer."""
    sched_kinds = {r.FILTER, r.SCORER, r.PICKER}
    if not profiles:  # (a) one profile with every filter, scorer and picker
        refs = [ProfileRef(p.name, None) for p in plugins.values() if p.kinds & sched_kinds]
        profiles.append(ProfileConfig("default", refs))
    handlers = [p for p in plugins.values() if r.PROFILE_HANDLER in p.kinds]
    if len(profiles) == 1 and not handlers:  # (b)
        plugins["single-profile-handler"] = _instance(
            "single-profile-handler", "single-profile-handler", None, "schedulingProfiles"
        )
    pickers = [p for p in plugins.values() if r.PICKER in p.kinds]
    if not pickers:  # (c) a picker for every profile that lacks one
        pickers = [_instance("max-score-picker", "max-score-picker", None, "schedulingProfiles")]
        plugins[pickers[0].name] = pickers[0]
    for profile in profiles:
        kinds = [plugins[ref.plugin_ref].kinds for ref in profile.refs if ref.plugin_ref in plugins]
        if not any(r.PICKER in k for k in kinds):
            profile.refs.append(ProfileRef(pickers[0].name, None))
        for ref in profile.refs:
            p = plugins.get(ref.plugin_ref)
            if p is not None and r.SCORER in p.kinds and ref.weight is None:
                ref.weight = 1.0
    for t in ("fcfs-ordering-policy", "global-strict-fairness-policy", "static-usage-limit-policy"):
        if t in r.PLUGIN_TYPES and t not in plugins:  # (d)
            plugins[t] = _instance(t, t, None, "flowControl")
    uses_prefix = any(  # a scorer naming another producer (llm-d's precise one) needs none
        plugins[ref.plugin_ref].type_name == "prefix-cache-scorer"
        and getattr(plugins[ref.plugin_ref].obj, "producer_name", "")
        in ("", "approx-prefix-cache-producer")
        for profile in profiles
        for ref in profile.refs
        if ref.plugin_ref in plugins
    )
    has_producer = any(p.type_name == "approx-prefix-cache-producer" for p in plugins.values())
    if uses_prefix and not has_producer:
        # Auto-created, as upstream's CreateMissingDataProducers; tuning written on the scorer
        # (upstream's docs) is honoured here instead of being ignored.
        legacy = next(
            (
                p.obj.producer_params
                for p in plugins.values()
                if p.type_name == "prefix-cache-scorer" and p.obj.producer_params
            ),
            None,
        )
        t = "approx-prefix-cache-producer"
        plugins[t] = _instance(t, t, legacy, "plugins")


def _validate(cfg: EppConfig) -> None:
    names: set[str] = set()
    for i, profile in enumerate(cfg.profiles):
        where = f"schedulingProfiles[{i}]"
        if not profile.name:
            raise ConfigError("profile name is required", path=f"{where}.name")
        if profile.name in names:
            raise ConfigError(f"duplicate profile name {profile.name!r}", path=f"{where}.name")
        names.add(profile.name)
        pickers = 0
        for j, ref in enumerate(profile.refs):
            p = cfg.plugins.get(ref.plugin_ref)
            rpath = f"{where}.plugins[{j}].pluginRef"
            if p is None:
                raise ConfigError(
                    f"plugin {ref.plugin_ref!r} is not defined in plugins", path=rpath
                )
            if not p.kinds & {r.FILTER, r.SCORER, r.PICKER}:
                raise ConfigError(
                    f"plugin {p.name!r} ({p.type_name}) is not a filter, scorer or picker",
                    path=rpath,
                )
            if ref.weight is not None and r.SCORER not in p.kinds:
                raise ConfigError(
                    "weight is only valid for scorers", path=f"{where}.plugins[{j}].weight"
                )
            pickers += r.PICKER in p.kinds
        if pickers > 1:
            raise ConfigError("a profile may have only one picker", path=f"{where}.plugins")
    handlers = [p for p in cfg.plugins.values() if r.PROFILE_HANDLER in p.kinds]
    if len(handlers) > 1:
        raise ConfigError("multiple profile handlers found", path="plugins")
    if not handlers:
        raise ConfigError("no profile handler configured", path="plugins")
    if handlers[0].type_name == "single-profile-handler" and len(cfg.profiles) > 1:
        raise ConfigError(
            "single-profile-handler supports exactly one profile", path="schedulingProfiles"
        )
    _check_ref(cfg, cfg.parser, r.PARSER, "parser.pluginRef")
    _check_ref(cfg, cfg.saturation_detector, r.SATURATION_DETECTOR, "saturationDetector.pluginRef")
    if cfg.data_layer is not None:
        sources = cfg.data_layer.get("sources") or []
        if not sources:
            raise ConfigError(
                "data layer enabled but no data sources configured", path="dataLayer.sources"
            )
        for i, src in enumerate(sources):
            _check_ref(cfg, src["pluginRef"], r.DATA_SOURCE, f"dataLayer.sources[{i}].pluginRef")
            for j, ex in enumerate(src.get("extractors") or []):
                _check_ref(
                    cfg,
                    ex["pluginRef"],
                    r.EXTRACTOR,
                    f"dataLayer.sources[{i}].extractors[{j}].pluginRef",
                )


def _check_ref(cfg: EppConfig, name: str, kind: str, path: str) -> None:
    p = cfg.plugins.get(name)
    if p is None:
        raise ConfigError(f"plugin {name!r} is not defined in plugins", path=path)
    if kind not in p.kinds:
        raise ConfigError(f"plugin {name!r} ({p.type_name}) is not a {kind}", path=path)


def _flow_control(raw: dict[str, Any] | None, doc: EndpointPickerConfigDoc) -> Any:
    """Flow control's typed config when ``endpoint_picker.flowcontrol`` is there, else the dict."""
    try:
        from endpoint_picker.flowcontrol.config import FlowControlConfig
    except ImportError:  # pragma: no cover - flow control not installed
        return dict(raw or {})
    plugins = [p.model_dump(by_alias=True) for p in doc.plugins]
    return FlowControlConfig.from_dict(raw, plugins=plugins)
