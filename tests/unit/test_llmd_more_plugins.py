"""llm-d's load-aware-scorer, data-parallel-profile-handler and probabilistic-admitter, against
the behaviour llm-d documents; the last two also through the director."""

from __future__ import annotations

import pytest

from endpoint_picker.config.build import build, build_scheduler
from endpoint_picker.config.loader import load_config_text
from endpoint_picker.datastore import Endpoint
from endpoint_picker.errors import ConfigError, ResourceExhausted
from endpoint_picker.requests.types import InferenceRequest
from endpoint_picker.scheduling.framework import FORWARD_HEADERS_KEY
from endpoint_picker.scheduling.plugins import LoadAwareScorer, ProbabilisticAdmitter
from endpoint_picker.scheduling.plugins.admitter import ProbabilisticAdmitterParams


def ep(name: str, queue: int = 0, kv: float = 0.0, port: int = 8000) -> Endpoint:
    e = Endpoint(name=name, pod_name=name, address="10.0.0.9", port=port)
    e.metrics.waiting_queue_size = queue
    e.metrics.kv_cache_usage_percent = kv
    return e


def req(priority: int = 0) -> InferenceRequest:
    r = InferenceRequest("r", {}, body={"prompt": "x"}, api="completions", target_model="m")
    r.priority = priority
    return r


def test_load_aware_scores_half_when_idle_down_to_zero_at_threshold() -> None:
    scorer = LoadAwareScorer.from_params("l", {"threshold": 10})
    scores = scorer.score(req(), [ep("a"), ep("b", 5), ep("c", 10), ep("d", 50)])
    assert scores == [0.5, 0.25, 0.0, 0.0]
    default = LoadAwareScorer.from_params("l")
    assert default.params.threshold == 128
    assert default.score(req(), [ep("a", 64)]) == [0.25]
    assert LoadAwareScorer.from_params("l", {"threshold": 0}).threshold == 128  # as llm-d


def admitter(draw: float) -> ProbabilisticAdmitter:
    return ProbabilisticAdmitter("p", ProbabilisticAdmitterParams(), rand=lambda: draw)


def test_probabilistic_admitter_sheds_only_sheddable_requests_by_saturation() -> None:
    idle, busy = [ep("a"), ep("b")], [ep("a", queue=5), ep("b", kv=0.8)]
    assert admitter(0.0).probability(idle) == 0.0
    assert admitter(0.0).probability(busy) == 1.0  # saturation 1: 1**5 * 300, capped
    half = [ep("a", queue=5), ep("b")]  # saturation 0.5: 0.5**5 * 300 = 9.4 -> 1
    assert admitter(0.0).probability(half) == 1.0
    low = [ep("a", queue=1), ep("b")]  # saturation 0.1: 1e-5 * 300 = 0.003
    assert admitter(0.0).probability(low) == pytest.approx(0.003)
    with pytest.raises(ResourceExhausted, match="probabilistic-admitter"):
        admitter(0.0).admit_request(req(-1), low)
    admitter(0.0).admit_request(req(0), busy)  # priority >= 0 always passes
    admitter(0.9).admit_request(req(-1), low)  # 0.9 > 0.003: admitted
    with pytest.raises(ConfigError, match="> 0"):
        ProbabilisticAdmitter.from_params("p", {"k": 0})


DP_CONFIG = """
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: queue-scorer
- type: data-parallel-profile-handler
  parameters:
    primaryPort: 8000
- type: probabilistic-admitter
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: queue-scorer
"""


def test_data_parallel_handler_sends_to_primary_port_with_rank_header() -> None:
    scheduler = build_scheduler(load_config_text(DP_CONFIG))
    ranks = [ep("r0", queue=3, port=8000), ep("r1", port=8001)]
    request = req()
    result = scheduler.schedule(request, ranks)
    assert result.primary.name == "r1"
    assert result.destination_port == 8000
    scheduler.pre_request(request, result)
    assert request.state[FORWARD_HEADERS_KEY] == {"x-data-parallel-host-port": "10.0.0.9:8001"}
    with pytest.raises(ConfigError, match="primaryPort"):
        load_config_text(DP_CONFIG.replace("primaryPort: 8000", "primaryPort: 70000"))


def test_admitter_is_wired_into_the_scheduler() -> None:
    built = build(load_config_text(DP_CONFIG))
    assert [a.type_name for a in built.scheduler.admitters] == ["probabilistic-admitter"]
