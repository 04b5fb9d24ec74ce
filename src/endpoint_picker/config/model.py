"""The effective configuration after defaulting: what the runner and the director read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from endpoint_picker.config.schema import API_VERSION, KIND


@dataclass(slots=True)
class PluginInstance:
    """One entry of ``plugins`` (given or defaulted). ``obj`` is a validated scheduling plugin
    (a template: :func:`build_scheduler` builds fresh ones); ``None`` for plugins owned by
    other parts, which build them from ``parameters``."""

    name: str
    type_name: str
    kinds: frozenset[str]
    parameters: dict[str, Any] | None = None
    obj: Any = None


@dataclass(slots=True)
class ProfileRef:
    plugin_ref: str
    weight: float | None = None


@dataclass(slots=True)
class ProfileConfig:
    name: str
    refs: list[ProfileRef] = field(default_factory=list)


@dataclass(slots=True)
class EppConfig:
    """The loaded ``EndpointPickerConfig``.

    ``flow_control`` is ``endpoint_picker.flowcontrol.config.FlowControlConfig`` (parsed with
    its ``from_dict``); ``flow_control_raw`` is the block as written. Flow control is on by
    default in this project; ``flowControl: {enabled: false}`` turns it off, and the upstream
    ``flowControl`` feature gate is accepted (it changes nothing here).
    """

    source: str
    feature_gates: tuple[str, ...] = ()
    plugins: dict[str, PluginInstance] = field(default_factory=dict)
    profiles: list[ProfileConfig] = field(default_factory=list)
    saturation_detector: str = "utilization-detector"
    parser: str = "openai-parser"
    data_layer: dict[str, Any] | None = None  # None with the enableLegacyMetrics gate
    flow_control_raw: dict[str, Any] | None = None
    flow_control: Any = None

    @property
    def flow_control_enabled(self) -> bool:
        enabled = getattr(self.flow_control, "enabled", None)
        if enabled is None:
            enabled = (self.flow_control_raw or {}).get("enabled", True)
        return bool(enabled)

    def plugin(self, name: str) -> PluginInstance:
        return self.plugins[name]

    @property
    def saturation_detector_plugin(self) -> PluginInstance:
        """The detector flow control (and legacy admission) should use: type and parameters."""
        return self.plugins[self.saturation_detector]

    @property
    def parser_plugin(self) -> PluginInstance:
        return self.plugins[self.parser]

    def to_dict(self) -> dict[str, Any]:
        """The effective config as an ``EndpointPickerConfig`` document (``epp config --show``)."""
        plugins: list[dict[str, Any]] = []
        for p in self.plugins.values():
            entry: dict[str, Any] = {"name": p.name, "type": p.type_name}
            if p.parameters:
                entry["parameters"] = p.parameters
            plugins.append(entry)
        profiles = [
            {
                "name": prof.name,
                "plugins": [
                    {"pluginRef": ref.plugin_ref}
                    | ({"weight": _num(ref.weight)} if ref.weight is not None else {})
                    for ref in prof.refs
                ],
            }
            for prof in self.profiles
        ]
        doc: dict[str, Any] = {"apiVersion": API_VERSION, "kind": KIND}
        if self.feature_gates:
            doc["featureGates"] = list(self.feature_gates)
        doc["plugins"] = plugins
        doc["schedulingProfiles"] = profiles
        doc["saturationDetector"] = {"pluginRef": self.saturation_detector}
        if self.data_layer is not None:
            doc["dataLayer"] = self.data_layer
        doc["flowControl"] = {**(self.flow_control_raw or {}), "enabled": self.flow_control_enabled}
        doc["parser"] = {"pluginRef": self.parser}
        return doc


def _num(x: float) -> int | float:
    return int(x) if float(x).is_integer() else x
