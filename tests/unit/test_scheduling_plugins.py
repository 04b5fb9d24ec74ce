"""Each scheduling plugin against upstream's formulas (spec section 5.2)."""

from __future__ import annotations

import random

import pytest

from endpoint_picker.datastore import Endpoint, Metrics
from endpoint_picker.errors import ConfigError
from endpoint_picker.requests.types import DESTINATION_NAMESPACE, InferenceRequest
from endpoint_picker.scheduling.plugins import (
    DestinationEndpointServedVerifier,
    HeaderBasedTestingFilter,
    KVCacheUtilizationScorer,
    LoraAffinityScorer,
    MaxScorePicker,
    QueueScorer,
    RandomPicker,
    RunningRequestsSizeScorer,
    SaturationFilter,
    TokenLoadScorer,
    WeightedRandomPicker,
)


def ep(name: str, ip: str = "10.0.0.1", port: int = 8000, **metrics: object) -> Endpoint:
    return Endpoint(name=name, pod_name=name, address=ip, port=port, metrics=Metrics(**metrics))  # type: ignore[arg-type]


def req(model: str = "m", **headers: str) -> InferenceRequest:
    return InferenceRequest(request_id="r1", headers=dict(headers), target_model=model)


def test_queue_scorer_min_max() -> None:
    eps = [
        ep("a", waiting_queue_size=0),
        ep("b", waiting_queue_size=5),
        ep("c", waiting_queue_size=10),
    ]
    assert QueueScorer().score(req(), eps) == [1.0, 0.5, 0.0]


def test_queue_and_running_scorers_all_equal_is_one_and_empty_is_empty() -> None:
    eps = [ep("a", waiting_queue_size=3), ep("b", waiting_queue_size=3)]
    assert QueueScorer().score(req(), eps) == [1.0, 1.0]
    assert QueueScorer().score(req(), []) == []
    eps = [ep("a", running_requests_size=4), ep("b", running_requests_size=2)]
    assert RunningRequestsSizeScorer().score(req(), eps) == [0.0, 1.0]
    assert RunningRequestsSizeScorer().score(req(), []) == []


def test_kv_cache_scorer_is_one_minus_usage() -> None:
    eps = [ep("a", kv_cache_usage_percent=0.25), ep("b", kv_cache_usage_percent=1.0)]
    assert KVCacheUtilizationScorer().score(req(), eps) == [0.75, 0.0]


def test_scorers_use_stale_snapshot_as_is() -> None:
    # Upstream's default profile does not filter stale endpoints: a snapshot from long ago
    # scores exactly like a fresh one; staleness is the saturation detector's business.
    stale = ep("a", waiting_queue_size=2, kv_cache_usage_percent=0.5, update_time=1.0)
    fresh = ep("b", waiting_queue_size=2, kv_cache_usage_percent=0.5, update_time=10_000.0)
    assert KVCacheUtilizationScorer().score(req(), [stale, fresh]) == [0.5, 0.5]
    assert QueueScorer().score(req(), [stale, fresh]) == [1.0, 1.0]


def test_lora_affinity_levels() -> None:
    active = ep("a", active_models=frozenset({"lora"}), max_active_models=1)
    room = ep("b", active_models=frozenset({"x"}), max_active_models=4)
    waiting = ep(
        "c", active_models=frozenset({"x"}), waiting_models=frozenset({"lora"}), max_active_models=2
    )
    full = ep("d", active_models=frozenset({"x", "y"}), max_active_models=2)
    assert LoraAffinityScorer().score(req("lora"), [active, room, waiting, full]) == [
        1.0,
        0.8,
        0.6,
        0.0,
    ]


def test_token_load_scorer() -> None:
    s = TokenLoadScorer(queue_threshold_tokens=1000)
    a, b, c = ep("a"), ep("b"), ep("c")
    a.inflight_tokens, b.inflight_tokens, c.inflight_tokens = 0, 250, 5000
    assert s.score(req(), [a, b, c]) == [1.0, 0.75, 0.0]
    assert TokenLoadScorer.from_params("t", {"queueThresholdTokens": 0}).threshold == 4194304
    with pytest.raises(ConfigError) as err:
        TokenLoadScorer.from_params("t", {"queueThreshold": 5})
    assert err.value.path == "queueThreshold"


def test_max_score_picker_best_and_random_ties() -> None:
    eps = [ep("a"), ep("b"), ep("c")]
    assert MaxScorePicker().pick(req(), eps, [0.1, 0.9, 0.5]) == [eps[1]]
    picker = MaxScorePicker(rng=random.Random(7))
    chosen = {picker.pick(req(), eps, [1.0, 1.0, 0.2])[0].name for _ in range(200)}
    assert chosen == {"a", "b"}
    assert MaxScorePicker().pick(req(), [], []) == []


def test_max_score_picker_fallbacks_in_score_order() -> None:
    eps = [ep("a"), ep("b"), ep("c"), ep("d")]
    picked = MaxScorePicker(max_endpoints=3).pick(req(), eps, [0.1, 0.9, 0.5, 0.7])
    assert [e.name for e in picked] == ["b", "d", "c"]
    assert MaxScorePicker.from_params("p", {"maxNumOfEndpoints": -2}).max_endpoints == 1


def test_random_picker_ignores_scores() -> None:
    eps = [ep("a"), ep("b")]
    picker = RandomPicker(max_endpoints=5, rng=random.Random(1))
    assert sorted(e.name for e in picker.pick(req(), eps, [1.0, 0.0])) == ["a", "b"]
    seen = {
        RandomPicker(rng=random.Random(i)).pick(req(), eps, [1.0, 0.0])[0].name for i in range(50)
    }
    assert seen == {"a", "b"}


def test_weighted_random_picker_follows_weights() -> None:
    eps = [ep("a"), ep("b"), ep("c")]
    picker = WeightedRandomPicker(rng=random.Random(3))
    counts = {"a": 0, "b": 0, "c": 0}
    for _ in range(3000):
        counts[picker.pick(req(), eps, [3.0, 1.0, 0.0])[0].name] += 1
    assert counts["c"] == 0  # score 0 -> key 0, never above a positive key
    assert 0.65 < counts["a"] / 3000 < 0.85  # A-Res: P(a first) = 3/4
    two = WeightedRandomPicker(max_endpoints=2, rng=random.Random(3)).pick(req(), eps, [3, 1, 0])
    assert {e.name for e in two} == {"a", "b"}
    # All scores <= 0: behaves as random-picker.
    assert len(WeightedRandomPicker(max_endpoints=2).pick(req(), eps, [0.0, 0.0, -1.0])) == 2


def test_header_based_testing_filter() -> None:
    a = ep("a", "10.0.0.1", 3000)
    a2 = ep("a2", "10.0.0.1", 3001)
    b = ep("b", "10.0.0.2", 3000)
    v6 = ep("v6", "fd00::1", 3000)
    eps = [a, a2, b, v6]
    f = HeaderBasedTestingFilter()
    sel = "test-epp-endpoint-selection"
    assert f.filter(req(), eps) == []
    assert f.filter(req(**{sel: "  "}), eps) == []
    assert f.filter(req(**{sel: "10.0.0.2, 10.0.0.1:3000"}), eps) == [b, a]
    assert f.filter(req(**{sel: "10.0.0.1:3001,10.0.0.1:3000"}), eps) == [a2]  # one per IP
    assert f.filter(req(**{sel: "[fd00::1]:3000"}), eps) == [v6]
    assert f.filter(req(**{sel: "fd00::1"}), eps) == [v6]
    assert f.filter(req(**{sel: "[fd00::1]"}), eps) == [v6]
    assert f.filter(req(**{sel: "10.9.9.9"}), eps) == []


class FakeDetector:
    """A fake saturation detector: saturated when queue >= 5 (the real ones are flow control's)."""

    def endpoint_saturated(self, endpoint: Endpoint, now: float) -> bool:
        return endpoint.metrics.waiting_queue_size >= 5


def test_saturation_filter_fail_open_and_closed() -> None:
    busy, idle = ep("busy", waiting_queue_size=9), ep("idle", waiting_queue_size=0)
    open_f = SaturationFilter(FakeDetector(), type_name="utilization-detector", fail_open=True)
    closed = SaturationFilter(FakeDetector(), type_name="concurrency-detector", fail_open=False)
    assert open_f.filter(req(), [busy, idle]) == [idle]
    assert open_f.filter(req(), [busy]) == [busy]
    assert closed.filter(req(), [busy]) == []
    assert open_f.name == "utilization-detector"


def test_destination_endpoint_served_verifier() -> None:
    v = DestinationEndpointServedVerifier()
    headers: dict[str, str] = {}
    v.process_response_headers(req(), headers, {})
    assert headers["x-conformance-test-served-endpoint"] == "fail: missing envoy lb metadata"
    v.process_response_headers(req(), headers, {DESTINATION_NAMESPACE: {}})
    assert headers["x-conformance-test-served-endpoint"] == (
        "fail: missing destination endpoint served metadata"
    )
    served = {DESTINATION_NAMESPACE: {"x-gateway-destination-endpoint-served": "10.0.0.1:3000"}}
    v.process_response_headers(req(), headers, served)
    assert headers["x-conformance-test-served-endpoint"] == "10.0.0.1:3000"
