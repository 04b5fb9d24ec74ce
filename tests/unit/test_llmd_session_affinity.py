"""llm-d's session-affinity-scorer: both strategies, the P/D profile pin, and the response
token through the scheduler's response-header hook."""

from __future__ import annotations

import base64

import pytest

from endpoint_picker.config.build import build_scheduler
from endpoint_picker.config.loader import load_config_text
from endpoint_picker.datastore import Endpoint
from endpoint_picker.errors import ConfigError
from endpoint_picker.requests.types import InferenceRequest
from endpoint_picker.scheduling.framework import ProfileRunResult, SchedulingResult
from endpoint_picker.scheduling.plugins import SessionAffinityScorer
from endpoint_picker.scheduling.plugins.session import SessionAffinityParams


def ep(name: str) -> Endpoint:
    return Endpoint(name=name, pod_name=name, address="10.0.0.1", port=8000, namespace="ns")


def req(**headers: str) -> InferenceRequest:
    return InferenceRequest("r", headers, body={"prompt": "x"}, api="completions")


def token(name: str) -> str:
    return base64.b64encode(f"ns/{name}".encode()).decode()


def result(*eps: Endpoint, prefill: Endpoint | None = None) -> SchedulingResult:
    runs: dict[str, ProfileRunResult | None] = {"decode": ProfileRunResult(list(eps))}
    if prefill is not None:
        runs["prefill"] = ProfileRunResult([prefill])
    return SchedulingResult(runs, "decode", list(eps))


POOL = [ep("a"), ep("b"), ep("c")]


def test_encoded_header_scores_the_named_pod_and_writes_the_token() -> None:
    scorer = SessionAffinityScorer.from_params("s")
    assert scorer.score(req(**{"x-session-token": token("b")}), POOL) == [0.0, 1.0, 0.0]
    assert scorer.score(req(), POOL) == [0.0, 0.0, 0.0]
    assert scorer.score(req(**{"x-session-token": "%%%"}), POOL) == [0.0, 0.0, 0.0]
    r = req()
    scorer.pre_request(r, result(POOL[2]))
    headers: dict[str, str] = {}
    scorer.process_response_headers(r, headers, {})
    assert headers == {"x-session-token": token("c")}


def test_profile_name_pins_the_prefill_pick_under_its_own_header() -> None:
    scorer = SessionAffinityScorer.from_params(
        "sp",
        {"profileName": "prefill", "encodedEndpointHeaderConfig": {"header": "X-Session-P"}},
    )
    r = req()
    scorer.pre_request(r, result(POOL[0], prefill=POOL[1]))
    headers: dict[str, str] = {}
    scorer.process_response_headers(r, headers, {})
    assert headers == {"x-session-p": token("b")}


def test_session_id_binds_refreshes_and_expires() -> None:
    now = [0.0]
    params = SessionAffinityParams.model_validate(
        {"strategy": "session_id", "sessionIdConfig": {"evictionTtlSeconds": 10}}
    )
    scorer = SessionAffinityScorer("s", params, clock=lambda: now[0])
    r = req(**{"x-session-id": "s1"})
    assert scorer.score(r, POOL) == [0.0, 0.0, 0.0]  # unbound: no preference
    scorer.pre_request(r, result(POOL[0]))
    now[0] = 8.0
    assert scorer.score(r, POOL) == [1.0, 0.0, 0.0]
    assert scorer.score(req(**{"x-session-id": "other"}), POOL) == [0.0, 0.0, 0.0]
    scorer.pre_request(r, result(POOL[1]))  # routed elsewhere: rebinds
    now[0] = 17.0
    assert scorer.score(r, POOL) == [0.0, 1.0, 0.0]
    now[0] = 40.0
    assert scorer.score(r, POOL) == [0.0, 0.0, 0.0]  # expired
    headers: dict[str, str] = {}
    scorer.process_response_headers(r, headers, {})
    assert headers == {}  # nothing written to the client


def test_session_id_attribute_source_and_validation() -> None:
    scorer = SessionAffinityScorer.from_params(
        "s",
        {
            "strategy": "session_id",
            "sessionIdConfig": {"sources": [{"header": "x-sid"}, {"attribute": "agent-identity"}]},
        },
    )
    r = req()
    r.state["agent-identity"] = "agent-7"
    assert scorer.session_id(r) == "agent-7"
    assert scorer.session_id(req(**{"x-sid": "h"})) == "h"
    with pytest.raises(ConfigError, match="exactly one"):
        SessionAffinityScorer.from_params(
            "s", {"sessionIdConfig": {"sources": [{"header": "a", "attribute": "b"}]}}
        )
    with pytest.raises(ConfigError, match="must be one of"):
        SessionAffinityScorer.from_params("s", {"strategy": "cookie"})


def test_scheduler_writes_the_token_on_the_response() -> None:
    text = """
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: session-affinity-scorer
- type: queue-scorer
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: session-affinity-scorer
    weight: 10
  - pluginRef: queue-scorer
"""
    scheduler = build_scheduler(load_config_text(text))
    r = req(**{"x-session-token": token("c")})
    res = scheduler.schedule(r, POOL)
    assert res.primary.name == "c"
    scheduler.pre_request(r, res)
    headers: dict[str, str] = {}
    scheduler.process_response_headers(r, headers, {})
    assert headers["x-session-token"] == token("c")
