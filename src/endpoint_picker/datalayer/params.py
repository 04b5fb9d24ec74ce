"""Upstream's data-layer plugin parameters -> :class:`DataLayer` keyword arguments.

Upstream wires ``dataLayer: {sources: [{pluginRef: metrics-data-source, extractors:
[{pluginRef: core-metrics-extractor}]}]}``; the two plugins' ``parameters`` are
``{scheme, path, insecureSkipVerify}`` and ``{engineLabelKey, defaultEngine, engineConfigs}``.
The config loader passes them here (separately or merged) and gets validated kwargs back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from endpoint_picker.datalayer.engines import selector_from_params
from endpoint_picker.errors import ConfigError

SOURCE_PARAMS = frozenset({"scheme", "path", "insecureSkipVerify"})
EXTRACTOR_PARAMS = frozenset({"engineLabelKey", "defaultEngine", "engineConfigs"})


def from_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validate ``metrics-data-source`` and/or ``core-metrics-extractor`` parameters.

    Returns keyword arguments for ``DataLayer(datastore, **kwargs)``: ``scheme``, ``path``,
    ``insecure_skip_verify``, ``engines`` (overrides only), ``default_engine``, ``label_key``.
    Raises :class:`ConfigError` naming the parameter path.
    """
    params = dict(params or {})
    unknown = set(params) - SOURCE_PARAMS - EXTRACTOR_PARAMS
    if unknown:
        raise ConfigError(f"unknown field(s) {sorted(unknown)}", path="parameters")
    scheme = params.get("scheme", "http")
    if scheme not in ("http", "https"):
        raise ConfigError(f"must be http or https, got {scheme!r}", path="parameters.scheme")
    path = params.get("path", "/metrics")
    if not isinstance(path, str) or not path:
        raise ConfigError("expected a non-empty string", path="parameters.path")
    insecure = params.get("insecureSkipVerify", True)
    if not isinstance(insecure, bool):
        raise ConfigError("expected a boolean", path="parameters.insecureSkipVerify")
    selector = selector_from_params({k: v for k, v in params.items() if k in EXTRACTOR_PARAMS})
    return {
        "scheme": scheme,
        "path": path if path.startswith("/") else "/" + path,
        "insecure_skip_verify": insecure,
        "engines": dict(selector.engines),
        "default_engine": selector.default_engine,
        "label_key": selector.label_key,
    }
