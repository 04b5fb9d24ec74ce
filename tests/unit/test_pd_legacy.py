"""llm-d's deprecated P/D plugins: ``pd-profile-handler`` and the header handlers
(``disagg-headers-handler``, ``prefill-header-handler``), against llm-d's behaviour and with
its own deprecated e2e config unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest

from endpoint_picker.config.build import build_scheduler
from endpoint_picker.config.loader import load_config, load_config_text
from endpoint_picker.datastore import Endpoint
from endpoint_picker.errors import ConfigError
from endpoint_picker.pd_headers import DATA_PARALLEL_HEADER, ENCODERS_HEADER, PREFILLER_HEADER
from endpoint_picker.requests.types import InferenceRequest
from endpoint_picker.scheduling.framework import (
    FORWARD_HEADERS_KEY,
    ProfileRunResult,
    SchedulingResult,
)
from endpoint_picker.scheduling.plugins import DisaggHeadersHandler, PdProfileHandler

UPSTREAM = Path(__file__).resolve().parents[1] / "data" / "upstream-configs" / "llm-d-router"
ROLE = "llm-d.ai/role"


def ep(name: str, role: str, ip: str) -> Endpoint:
    return Endpoint(name=name, pod_name=name, address=ip, port=8000, labels={ROLE: role})


def req(prompt: str) -> InferenceRequest:
    return InferenceRequest(
        "r1", {}, body={"prompt": prompt}, api="completions", target_model="m", prompt_text=prompt
    )


POOL = [ep("p1", "prefill", "10.0.0.1"), ep("d1", "decode", "10.0.0.2")]


def test_llmd_deprecated_pd_config_runs_unchanged() -> None:
    """llm-d's test/e2e deprecatedPdConfig: pd-profile-handler + prefill-header-handler."""
    cfg = load_config(str(UPSTREAM / "test__e2e__configs_test__deprecatedPdConfig.yaml"))
    scheduler = build_scheduler(cfg)
    long = req("a long document to read " * 40)
    result = scheduler.schedule(long, POOL)
    scheduler.pre_request(long, result)
    assert result.primary.name == "d1"
    assert long.state[FORWARD_HEADERS_KEY][PREFILLER_HEADER] == "10.0.0.1:8000"
    short = req("hi")
    result = scheduler.schedule(short, POOL)
    scheduler.pre_request(short, result)
    assert result.primary.name == "d1"
    assert PREFILLER_HEADER not in short.state[FORWARD_HEADERS_KEY]


PD_HANDLER = """
apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: prefill-filter
- type: decode-filter
- type: max-score-picker
- type: always-disagg-pd-decider
- type: pd-profile-handler
  parameters: {deciderPluginName: always-disagg-pd-decider, decodeProfile: dec,
               prefillProfile: pre, primaryPort: 9000, prefixPluginType: prefix-cache-scorer}
schedulingProfiles:
- name: pre
  plugins: [{pluginRef: prefill-filter}, {pluginRef: max-score-picker}]
- name: dec
  plugins: [{pluginRef: decode-filter}, {pluginRef: max-score-picker}]
"""


def test_pd_profile_handler_parameters_and_primary_port() -> None:
    scheduler = build_scheduler(load_config_text(PD_HANDLER))
    request = req("x")
    result = scheduler.schedule(request, POOL)
    scheduler.pre_request(request, result)
    assert result.primary_profile_name == "dec" and result.primary.name == "d1"
    assert result.destination_port == 9000  # llm-d: the decode pod's primary port ...
    headers = request.state[FORWARD_HEADERS_KEY]
    assert headers[DATA_PARALLEL_HEADER] == "10.0.0.2:8000"  # ... the rank in the header
    assert headers[PREFILLER_HEADER] == "10.0.0.1:8000"


def test_pd_profile_handler_defaults_and_errors() -> None:
    handler = PdProfileHandler.from_params("pd")
    assert handler.params.profiles.decode == "decode"
    assert handler.params.deciders.prefill == "prefix-based-pd-decider"
    # The default decider name must be a configured decider, as in llm-d.
    bad = PD_HANDLER.replace("deciderPluginName: always-disagg-pd-decider, ", "")
    with pytest.raises(ConfigError, match="prefix-based-pd-decider"):
        load_config_text(bad)
    with pytest.raises(ConfigError, match="primaryPort"):
        load_config_text(PD_HANDLER.replace("primaryPort: 9000", "primaryPort: 70000"))


def test_headers_handler_sets_and_clears_both_headers() -> None:
    handler = DisaggHeadersHandler.from_params("h", {"prefillProfile": "pre"})
    request = req("x")
    request.state[FORWARD_HEADERS_KEY] = {PREFILLER_HEADER: "stale:1", ENCODERS_HEADER: "stale:2"}
    p1, d1 = POOL
    e1 = ep("e1", "encode", "10.0.0.3")
    e2 = ep("e2", "encode", "10.0.0.4")
    results: dict[str, ProfileRunResult | None] = {
        "pre": ProfileRunResult([p1]),
        "decode": ProfileRunResult([d1]),
        "encode": ProfileRunResult([e1, e2]),
    }
    handler.pre_request(request, SchedulingResult(results, "decode", [d1]))
    assert request.state[FORWARD_HEADERS_KEY] == {
        PREFILLER_HEADER: "10.0.0.1:8000",
        ENCODERS_HEADER: "10.0.0.3:8000,10.0.0.4:8000",
    }
    handler.pre_request(request, SchedulingResult({"decode": results["decode"]}, "decode", [d1]))
    assert request.state[FORWARD_HEADERS_KEY] == {}
