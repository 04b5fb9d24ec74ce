"""The ``flowControl:`` block, Kubernetes quantities and Go durations, and detector params."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from endpoint_picker.errors import ConfigError
from endpoint_picker.flowcontrol import (
    SATURATION_DETECTORS,
    ConcurrencyDetector,
    FlowControlConfig,
    UtilizationDetector,
    detector_from_config,
)
from endpoint_picker.units import parse_duration, parse_quantity

UPSTREAM_EXAMPLE = """
maxBytes: 10Gi
maxRequests: 5000
defaultRequestTTL: 60s
defaultPriorityBand:
  maxBytes: 1Gi
  maxRequests: 500
  orderingPolicyRef: fcfs-ordering-policy
  fairnessPolicyRef: global-strict-fairness-policy
priorityBands:
- priority: 100
  maxBytes: 5Gi
  maxRequests: 500
  orderingPolicyRef: edf-ordering-policy
  fairnessPolicyRef: round-robin-fairness-policy
usageLimitPolicyPluginRef: static-usage-limit-policy
"""


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("10Gi", 10 * 2**30),
        ("1G", 10**9),
        ("500M", 500 * 10**6),
        ("1Ki", 1024),
        (1000, 1000),
        ("1e3", 1000),
        ("1.5Ki", 1536),
        ("0", 0),
        ("1500m", 2),
        ("2k", 2000),
    ],
)
def test_quantities(text: object, value: int) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("bad", ["-1Gi", "ten", "10GB", "", True, None, -5, [1]])
def test_bad_quantities(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_quantity(bad)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("60s", 60.0),
        ("1m30s", 90.0),
        ("200ms", 0.2),
        ("1h", 3600.0),
        ("0", 0.0),
        ("1.5s", 1.5),
        (5, 5.0),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["60", "1x", "s", "", "1m 2s", True])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_defaults_match_upstream() -> None:
    for cfg in (
        FlowControlConfig(),
        FlowControlConfig.from_dict(None),
        FlowControlConfig.from_dict({}),
    ):
        assert cfg.enabled is True
        assert (cfg.max_bytes, cfg.max_requests, cfg.default_request_ttl) == (0, 0, 0.0)
        band = cfg.band(7)
        assert band.priority == 7 and band.max_bytes == 1_000_000_000 and band.max_requests == 0
        assert band.ordering_policy == "fcfs-ordering-policy"
        assert band.fairness_policy == "global-strict-fairness-policy"
        assert cfg.ceiling(band) == 1.0
        assert (cfg.flow_gc_timeout, cfg.band_gc_timeout) == (300.0, 600.0)


def test_upstream_example_parses() -> None:
    cfg = FlowControlConfig.from_dict(yaml.safe_load(UPSTREAM_EXAMPLE))
    assert cfg.max_bytes == 10 * 2**30 and cfg.max_requests == 5000
    assert cfg.default_request_ttl == 60.0
    assert cfg.default_priority_band.max_bytes == 2**30
    (band,) = cfg.priority_bands
    assert band.priority == 100 and band.max_bytes == 5 * 2**30
    assert band.ordering_policy == "edf-ordering-policy"
    assert band.fairness_policy == "round-robin-fairness-policy"
    assert cfg.band(100) is band
    assert cfg.band(3).max_requests == 500  # dynamic bands copy the template


def test_plugin_refs_resolve_and_threshold_is_read() -> None:
    plugins: list[dict[str, Any]] = [
        {"name": "rr", "type": "round-robin-fairness-policy"},
        {"name": "limit", "type": "static-usage-limit-policy", "parameters": {"threshold": 0.9}},
    ]
    cfg = FlowControlConfig.from_dict(
        {
            "defaultPriorityBand": {"fairnessPolicyRef": "rr"},
            "usageLimitPolicyPluginRef": "limit",
            "priorityBands": [{"priority": 1, "usageLimit": 0.6}],
        },
        plugins=plugins,
    )
    assert cfg.default_priority_band.fairness_policy == "round-robin-fairness-policy"
    assert cfg.usage_limit_threshold == 0.9
    assert cfg.ceiling(cfg.band(1)) == 0.6 and cfg.ceiling(cfg.band(0)) == 0.9


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ({"maxByte": 1}, "flowControl.maxByte"),
        ({"maxBytes": "-1Gi"}, "flowControl.maxBytes"),
        ({"maxRequests": -1}, "flowControl.maxRequests"),
        ({"defaultRequestTTL": "-1s"}, "flowControl.defaultRequestTTL"),
        ({"defaultRequestTTL": "soon"}, "flowControl.defaultRequestTTL"),
        ({"defaultPriorityBand": {"bogus": 1}}, "flowControl.defaultPriorityBand.bogus"),
        ({"priorityBands": [{"maxBytes": 1}]}, "flowControl.priorityBands[0].priority"),
        (
            {"priorityBands": [{"priority": 1}, {"priority": 1}]},
            "flowControl.priorityBands[1].priority",
        ),
        (
            {"priorityBands": [{"priority": 1, "orderingPolicyRef": "lifo"}]},
            "flowControl.priorityBands[0].orderingPolicyRef",
        ),
        (
            {"priorityBands": [{"priority": 1, "usageLimit": 0}]},
            "flowControl.priorityBands[0].usageLimit",
        ),
        ({"usageLimitPolicyPluginRef": "dynamic"}, "flowControl.usageLimitPolicyPluginRef"),
        ({"enabled": "no"}, "flowControl.enabled"),
        ({"flowGCTimeout": "20m"}, "flowControl.priorityBandGCTimeout"),
        ({"priorityBands": {"priority": 1}}, "flowControl.priorityBands"),
    ],
)
def test_bad_config_names_the_field(raw: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigError) as exc:
        FlowControlConfig.from_dict(raw)
    assert exc.value.path == path
    assert path in str(exc.value)


def test_detector_registry_and_params() -> None:
    assert {
        "utilization-detector": UtilizationDetector,
        "concurrency-detector": ConcurrencyDetector,
    } == SATURATION_DETECTORS
    u = UtilizationDetector.from_params(None)
    assert (u.queue_depth_threshold, u.kv_cache_util_threshold) == (5, 0.8)
    assert (u.metrics_staleness_threshold, u.headroom) == (0.2, 0.0)
    u = UtilizationDetector.from_params(
        {
            "queueDepthThreshold": 10,
            "kvCacheUtilThreshold": 1,
            "metricsStalenessThreshold": "1s",
            "headroom": 0.2,
        }
    )
    assert (
        u.queue_depth_threshold,
        u.kv_cache_util_threshold,
        u.metrics_staleness_threshold,
        u.headroom,
    ) == (10, 1.0, 1.0, 0.2)
    c = detector_from_config(
        "concurrency-detector", {"concurrencyMode": "tokens", "maxTokenConcurrency": 500}
    )
    assert isinstance(c, ConcurrencyDetector) and c.tokens and c.capacity == 500


@pytest.mark.parametrize(
    ("cls", "params", "field"),
    [
        (UtilizationDetector, {"queueDepthThreshold": 0}, "queueDepthThreshold"),
        (UtilizationDetector, {"queueDepthThreshold": 1.5}, "queueDepthThreshold"),
        (UtilizationDetector, {"kvCacheUtilThreshold": 1.2}, "kvCacheUtilThreshold"),
        (UtilizationDetector, {"kvCacheUtilThreshold": 0}, "kvCacheUtilThreshold"),
        (UtilizationDetector, {"metricsStalenessThreshold": "0s"}, "metricsStalenessThreshold"),
        (UtilizationDetector, {"headroom": -0.1}, "headroom"),
        (UtilizationDetector, {"other": 1}, "other"),
        (ConcurrencyDetector, {"concurrencyMode": "bytes"}, "concurrencyMode"),
        (ConcurrencyDetector, {"maxConcurrency": 0}, "maxConcurrency"),
        (ConcurrencyDetector, {"maxTokenConcurrency": -1}, "maxTokenConcurrency"),
        (ConcurrencyDetector, {"headroom": "lots"}, "headroom"),
    ],
)
def test_bad_detector_params(cls: Any, params: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as exc:
        cls.from_params(params)
    assert exc.value.path == f"{cls.type_name}.parameters.{field}"


def test_unknown_detector_type() -> None:
    with pytest.raises(ConfigError, match="unknown saturation detector"):
        detector_from_config("magic-detector")
