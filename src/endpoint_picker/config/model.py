"""The effective configuration after defaulting: validated, not yet built."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from endpoint_picker.config.schema import API_VERSION, KIND
from endpoint_picker.errors import ConfigError
from endpoint_picker.flowcontrol.config import FlowControlConfig
from endpoint_picker.params import PluginParams


class ConfigErrors(ConfigError):
    """Every problem found in one config file; reads as the first, prints them all."""

    def __init__(self, errors: list[ConfigError], *, file: str | None = None) -> None:
        self.errors = errors
        super().__init__(errors[0].reason, file=file or errors[0].file, path=errors[0].path)

    def __str__(self) -> str:
        lines = [str(ConfigError(e.reason, file=self.file, path=e.path)) for e in self.errors]
        if len(lines) == 1:
            return lines[0]
        head = f"{self.file}: " if self.file else ""
        return f"{head}{len(lines)} errors:\n  " + "\n  ".join(lines)


@dataclass(slots=True)
class PluginInstance:
    """One entry of ``plugins`` (given or defaulted) with its validated parameters."""

    name: str
    type_name: str
    kinds: frozenset[str]
    params: PluginParams

    @property
    def parameters(self) -> dict[str, Any]:
        """The effective parameters as a config would write them (defaults filled in)."""
        dumped: dict[str, Any] = self.params.model_dump(by_alias=True, mode="json")
        return dumped


@dataclass(slots=True)
class ProfileRef:
    plugin_ref: str
    weight: float | None = None


@dataclass(slots=True)
class ProfileConfig:
    name: str
    refs: list[ProfileRef] = field(default_factory=list)


@dataclass(slots=True)
class DataSource:
    plugin_ref: str
    extractors: list[str] = field(default_factory=list)


@dataclass(slots=True)
class EppConfig:
    """The loaded ``EndpointPickerConfig``: every plugin validated, every default applied.

    ``flow_control.enabled`` is the effective switch (see docs/configuration.md: the embedded
    default runs flow control; a config file follows upstream's feature gate or section).
    """

    source: str
    api_version: str = API_VERSION
    feature_gates: tuple[str, ...] = ()
    plugins: dict[str, PluginInstance] = field(default_factory=dict)
    profiles: list[ProfileConfig] = field(default_factory=list)
    saturation_detector: str = "utilization-detector"
    parsers: list[str] = field(default_factory=lambda: ["openai-parser"])
    data_sources: list[DataSource] | None = None  # None with the enableLegacyMetrics gate
    discovery: str | None = None
    flow_control_raw: dict[str, Any] | None = None
    flow_control: FlowControlConfig = field(default_factory=FlowControlConfig)

    @property
    def flow_control_enabled(self) -> bool:
        return self.flow_control.enabled

    @property
    def parser(self) -> str:
        """The parser used for every request (the first of ``requestHandler.parsers``)."""
        return self.parsers[0]

    @property
    def saturation_detector_plugin(self) -> PluginInstance:
        return self.plugins[self.saturation_detector]

    @property
    def parser_plugin(self) -> PluginInstance:
        return self.plugins[self.parser]

    def to_dict(self) -> dict[str, Any]:
        """The effective config as an ``EndpointPickerConfig`` document (``epp config --show``),
        every plugin with its effective parameters."""
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
        doc: dict[str, Any] = {"apiVersion": self.api_version, "kind": KIND}
        if self.feature_gates:
            doc["featureGates"] = list(self.feature_gates)
        doc["plugins"] = plugins
        doc["schedulingProfiles"] = profiles
        if self.data_sources is not None:
            layer: dict[str, Any] = {
                "sources": [
                    {
                        "pluginRef": s.plugin_ref,
                        "extractors": [{"pluginRef": e} for e in s.extractors],
                    }
                    for s in self.data_sources
                ]
            }
            if self.discovery:
                layer["discovery"] = {"pluginRef": self.discovery}
            doc["dataLayer"] = layer
        doc["flowControl"] = {
            **(self.flow_control_raw or {}),
            "enabled": self.flow_control_enabled,
            "saturationDetector": {"pluginRef": self.saturation_detector},
        }
        doc["requestHandler"] = {"parsers": [{"pluginRef": p} for p in self.parsers]}
        return doc


def _num(x: float) -> int | float:
    return int(x) if float(x).is_integer() else x
