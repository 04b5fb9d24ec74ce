"""Upstream's data-layer plugin parameters, declared once, -> :class:`DataLayer` keyword arguments.

Upstream wires ``dataLayer: {sources: [{pluginRef: metrics-data-source, extractors:
[{pluginRef: core-metrics-extractor}]}]}``; the two plugins' ``parameters`` are
``{scheme, path, insecureSkipVerify}`` (:class:`MetricsSourceParams`) and ``{engineLabelKey,
defaultEngine, engineConfigs}`` (:class:`MetricsExtractorParams`). The config registry
validates them; :func:`layer_kwargs` turns the validated models into ``DataLayer`` arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import ValidationInfo, field_validator, model_validator

from endpoint_picker.datalayer.engines import (
    BUILTIN_ENGINES,
    EngineMap,
    EngineSelector,
    merge_engines,
)
from endpoint_picker.datastore import ENGINE_TYPE_LABEL
from endpoint_picker.params import PluginParams, validate_params


class MetricsSourceParams(PluginParams):
    """``metrics-data-source``: where each model server's Prometheus metrics are scraped."""

    scheme: Literal["http", "https"] = "http"
    path: str = "/metrics"
    insecure_skip_verify: bool = True

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        if not v:
            raise ValueError("must be a non-empty path such as /metrics")
        return v if v.startswith("/") else "/" + v


class EngineConfigParams(PluginParams):
    """One ``engineConfigs[]`` entry: an engine's metric names (upstream's spelling)."""

    name: str
    queued_requests_spec: str | None = None
    running_requests_spec: str | None = None
    kv_usage_spec: str | None = None
    lora_spec: str | None = None
    cache_info_spec: str | None = None
    cache_block_size_label_name: str | None = None
    cache_num_blocks_label_name: str | None = None
    cache_block_size_spec: str | None = None
    cache_num_blocks_spec: str | None = None

    def compile(self) -> EngineMap:
        """The compiled map. Raises ValueError (a bad spec or a reserved name)."""
        return EngineMap.from_params(self.model_dump(by_alias=True, exclude_none=True))

    @model_validator(mode="after")
    def _compiles(self) -> EngineConfigParams:
        self.compile()
        return self


class MetricsExtractorParams(PluginParams):
    """``core-metrics-extractor``: which metric map applies to which endpoint."""

    engine_label_key: str = ENGINE_TYPE_LABEL
    engine_configs: list[EngineConfigParams] = []
    default_engine: str = "vllm"  # after engine_configs: its check reads them

    @field_validator("engine_configs")
    @classmethod
    def _unique(cls, v: list[EngineConfigParams]) -> list[EngineConfigParams]:
        names = [e.name for e in v]
        dups = sorted({n for n in names if names.count(n) > 1})
        if dups:
            raise ValueError(f"duplicate engine name {dups[0]!r}")
        return v

    @field_validator("default_engine")
    @classmethod
    def _default_known(cls, v: str, info: ValidationInfo) -> str:
        configured = {e.name for e in info.data.get("engine_configs") or []}
        known = sorted(configured | set(BUILTIN_ENGINES))
        if v and v not in known:
            raise ValueError(f"{v!r} is not a configured engine (known: {', '.join(known)})")
        return v

    def selector(self) -> EngineSelector:
        """Built-in maps plus the configured ones (the default engine is checked at validation)."""
        overrides = {e.name: e.compile() for e in self.engine_configs}
        return EngineSelector(
            merge_engines(overrides),
            default_engine=self.default_engine or "vllm",
            label_key=self.engine_label_key or ENGINE_TYPE_LABEL,
        )


def layer_kwargs(
    source: MetricsSourceParams | None, extractor: MetricsExtractorParams | None
) -> dict[str, Any]:
    """``DataLayer(datastore, **kwargs)`` arguments from the validated plugin parameters."""
    source = source or MetricsSourceParams()
    selector = (extractor or MetricsExtractorParams()).selector()
    return {
        "scheme": source.scheme,
        "path": source.path,
        "insecure_skip_verify": source.insecure_skip_verify,
        "engines": dict(selector.engines),
        "default_engine": selector.default_engine,
        "label_key": selector.label_key,
    }


def from_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validate ``metrics-data-source`` and/or ``core-metrics-extractor`` parameters given as
    one mapping (for code and tests; configs go through the loader). Raises ConfigError."""
    raw = dict(params or {})
    source_keys = set(MetricsSourceParams.model_fields) | {"insecureSkipVerify"}
    src = {k: v for k, v in raw.items() if k in source_keys}
    ext = {k: v for k, v in raw.items() if k not in source_keys}
    return layer_kwargs(
        validate_params(MetricsSourceParams, src),
        validate_params(MetricsExtractorParams, ext),
    )
