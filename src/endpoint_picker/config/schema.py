"""The ``EndpointPickerConfig`` document as typed models: upstream's keys, nothing else.

Strict like upstream's decoder (``serializer.EnableStrict``): an unknown key anywhere is an
error naming its path. Both of upstream's apiVersions are accepted (GIE's
``inference.networking.x-k8s.io/v1alpha1``, deprecated there, and llm-d-router's
``llm-d.ai/v1alpha1``), with llm-d-router's fields (``requestHandler``,
``flowControl.saturationDetector``, ``dataLayer.discovery``). Plugin ``parameters`` stay raw
here and are validated against each type's registered model; the ``flowControl`` block is
parsed by flow control's own reader.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

API_VERSION = "inference.networking.x-k8s.io/v1alpha1"
LLMD_API_VERSION = "llm-d.ai/v1alpha1"
API_VERSIONS = (API_VERSION, LLMD_API_VERSION)
KIND = "EndpointPickerConfig"

# Upstream's registered gates: GIE v1.5.0's (``dataLayer`` is a deprecated no-op there too)
# and llm-d-router's. A gate may be written ``name`` or ``name=true|false`` (llm-d-router).
FEATURE_GATES = ("dataLayer", "enableLegacyMetrics", "flowControl", "haPopulateNonLeaderDatastore")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, strict=True)


class PluginSpec(_Strict):
    name: str = ""
    type: str = ""
    parameters: Any = None  # validated against the type's registered model


class ProfilePluginRef(_Strict):
    plugin_ref: str = Field(alias="pluginRef")
    weight: float | None = None


class SchedulingProfileSpec(_Strict):
    name: str = ""
    plugins: list[ProfilePluginRef] = Field(default_factory=list)


class PluginRef(_Strict):
    plugin_ref: str = Field("", alias="pluginRef")


class DataSourceSpec(_Strict):
    plugin_ref: str = Field(alias="pluginRef")
    extractors: list[PluginRef] = Field(default_factory=list)


class DataLayerSpec(_Strict):
    inject_defaults: bool | None = Field(None, alias="injectDefaults")
    sources: list[DataSourceSpec] = Field(default_factory=list)
    discovery: PluginRef | None = None
    # llm-d-router's multi-replica fields: recognised, so the error says "not implemented".
    peer_discovery: Any = Field(None, alias="peerDiscovery")
    cross_replica_syncer_plugin_ref: Any = Field(None, alias="crossReplicaSyncerPluginRef")
    cross_replica_sync_interval: Any = Field(None, alias="crossReplicaSyncInterval")


class RequestHandlerSpec(_Strict):
    parsers: list[PluginRef] = Field(default_factory=list)


class EndpointPickerConfigDoc(_Strict):
    api_version: str = Field(alias="apiVersion")
    kind: str
    feature_gates: list[str] = Field(default_factory=list, alias="featureGates")
    plugins: list[PluginSpec] = Field(default_factory=list)
    scheduling_profiles: list[SchedulingProfileSpec] = Field(
        default_factory=list, alias="schedulingProfiles"
    )
    saturation_detector: PluginRef | None = Field(None, alias="saturationDetector")
    data_layer: DataLayerSpec | None = Field(None, alias="dataLayer")
    flow_control: dict[str, Any] | None = Field(None, alias="flowControl")
    request_handler: RequestHandlerSpec | None = Field(None, alias="requestHandler")
    parser: PluginRef | None = None


DEFAULT_CONFIG: dict[str, Any] = {
    "apiVersion": API_VERSION,
    "kind": KIND,
    "plugins": [
        {"type": "queue-scorer"},
        {"type": "kv-cache-utilization-scorer"},
        {"type": "prefix-cache-scorer"},
        {"type": "metrics-data-source"},
        {"type": "core-metrics-extractor"},
    ],
    "schedulingProfiles": [
        {
            "name": "default",
            "plugins": [
                {"pluginRef": "queue-scorer", "weight": 2},
                {"pluginRef": "kv-cache-utilization-scorer", "weight": 2},
                {"pluginRef": "prefix-cache-scorer", "weight": 3},
            ],
        }
    ],
    "dataLayer": {
        "sources": [
            {
                "pluginRef": "metrics-data-source",
                "extractors": [{"pluginRef": "core-metrics-extractor"}],
            }
        ]
    },
}
"""Upstream's ``loadDefaultConfig``: what runs when no config file or text is given."""
