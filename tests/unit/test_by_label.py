"""``by-label`` (llm-d-router's deprecated label filter): upstream's cases from
``pkg/epp/framework/plugins/scheduling/filter/bylabel/filter_test.go``."""

from __future__ import annotations

from typing import Any

import pytest

from endpoint_picker.config import load_config_text
from endpoint_picker.datastore import Endpoint
from endpoint_picker.errors import ConfigError
from endpoint_picker.requests.types import InferenceRequest
from endpoint_picker.scheduling.plugins import ByLabelFilter

PODS = {
    "nginx-1": {"app": "nginx", "version": "v1.0", "tier": "frontend"},
    "nginx-2": {"app": "nginx", "version": "v1.1", "tier": "frontend"},
    "coredns-1": {"app": "coredns", "tier": "system"},
    "redis-1": {"app": "redis", "tier": "backend", "deprecated": "true"},
    "web-1": {"app": "web", "tier": "frontend", "environment": "production"},
    "no-tier-pod": {"app": "unknown"},
}


def _endpoints() -> list[Endpoint]:
    return [
        Endpoint(name=n, pod_name=n, address=f"10.0.0.{i}", port=8000, labels=labels)
        for i, (n, labels) in enumerate(PODS.items(), 1)
    ]


@pytest.mark.parametrize(
    ("params", "want"),
    [
        ({"label": "app", "validValues": ["nginx"]}, {"nginx-1", "nginx-2"}),
        ({"label": "version", "validValues": ["v1.0"]}, {"nginx-1"}),
        ({"label": "tier", "allowsNoLabel": True}, {"no-tier-pod"}),
        (
            {"label": "tier", "validValues": ["frontend", "backend", "system"]},
            {"nginx-1", "nginx-2", "coredns-1", "redis-1", "web-1"},
        ),
    ],
)
def test_filtering(params: dict[str, Any], want: set[str]) -> None:
    flt = ByLabelFilter.from_params("f", params)
    kept = flt.filter(InferenceRequest(request_id="r", headers={}), _endpoints())
    assert {ep.name for ep in kept} == want


@pytest.mark.parametrize(
    "params",
    [
        {"label": "llm-d.ai/role", "allowsNoLabel": False, "validValues": ["prefill"]},
        {"label": "llm-d.ai/role", "allowsNoLabel": True, "validValues": []},
        {"label": "llm-d.ai/role", "allowsNoLabel": True, "validValues": ["decode", "both"]},
    ],
)
def test_valid_parameters(params: dict[str, Any]) -> None:
    assert ByLabelFilter.from_params("f", params).label == "llm-d.ai/role"


@pytest.mark.parametrize(
    "params",
    [
        {"label": "", "allowsNoLabel": False, "validValues": ["prefill"]},  # empty label
        {"allowsNoLabel": False, "validValues": ["prefill"]},  # no label
        {"label": "llm-d.ai/role", "allowsNoLabel": False, "validValues": []},  # contradictory
        {"label": "llm-d.ai/role", "allowsNoLabel": False},
        {"label": "app", "validValues": "true"},  # a string, not a list
        {"label": "app", "allowsNoLabel": "yes", "validValues": ["true"]},  # not a boolean
    ],
)
def test_invalid_parameters(params: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        ByLabelFilter.from_params("f", params)


def test_an_llmd_config_naming_it_loads() -> None:
    cfg = load_config_text(
        "apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\nplugins:\n"
        "- name: decode-only\n  type: by-label\n  parameters:\n"
        "    label: llm-d.ai/role\n    validValues: [decode, both]\n    allowsNoLabel: true\n"
        "schedulingProfiles:\n- name: default\n  plugins:\n  - pluginRef: decode-only\n"
    )
    assert cfg.plugins["decode-only"].type_name == "by-label"
