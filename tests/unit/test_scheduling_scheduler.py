"""The scheduler end to end: profiles, errors, metrics, and upstream's integration cases."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import generate_latest

from endpoint_picker.config import build_scheduler, load_config, load_config_text
from endpoint_picker.datastore import Endpoint, Metrics
from endpoint_picker.errors import ResourceExhausted
from endpoint_picker.metrics import REGISTRY
from endpoint_picker.requests.types import InferenceRequest
from endpoint_picker.scheduling import Scheduler, SchedulerProfile, WeightedScorer
from endpoint_picker.scheduling.plugins import (
    HeaderBasedTestingFilter,
    MaxScorePicker,
    QueueScorer,
    SaturationFilter,
    SingleProfileHandler,
)

# Upstream's hermetic test config: queue, kv-cache, prefix and LoRA scorers, weight 1 each.
HERMETIC = """
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: queue-scorer
- type: kv-cache-utilization-scorer
- type: prefix-cache-scorer
- type: lora-affinity-scorer
"""


def ep(name: str, **metrics: Any) -> Endpoint:
    return Endpoint(
        name=name,
        pod_name=name,
        address=f"10.0.0.{len(name)}",
        port=8000,
        metrics=Metrics(**metrics),
    )


def req(model: str = "my-model", prompt: str = "hello", rid: str = "r") -> InferenceRequest:
    return InferenceRequest(rid, {}, target_model=model, prompt_text=prompt)


def test_default_profile_lowest_queue_and_kv_wins() -> None:
    sched = build_scheduler(load_config(None))
    eps = [
        ep("pod0", waiting_queue_size=3, kv_cache_usage_percent=0.2),
        ep("pod1", waiting_queue_size=0, kv_cache_usage_percent=0.1),
        ep("pod2", waiting_queue_size=10, kv_cache_usage_percent=0.2),
    ]
    assert sched.schedule(req(), eps).endpoints == [eps[1]]


def test_active_lora_wins() -> None:
    sched = build_scheduler(load_config_text(HERMETIC))
    eps = [
        ep(
            "pod0",
            waiting_queue_size=0,
            kv_cache_usage_percent=0.2,
            active_models=frozenset({"foo", "bar"}),
            max_active_models=2,
        ),
        ep(
            "pod1",
            waiting_queue_size=0,
            kv_cache_usage_percent=0.1,
            active_models=frozenset({"foo", "sql-lora-1fdg2"}),
            max_active_models=2,
        ),
        ep(
            "pod2",
            waiting_queue_size=10,
            kv_cache_usage_percent=0.2,
            active_models=frozenset({"foo", "bar"}),
            max_active_models=2,
        ),
    ]
    assert sched.schedule(req("sql-lora-1fdg2"), eps).primary is eps[1]


def test_lora_affinity_beats_higher_kv() -> None:
    sched = build_scheduler(load_config_text(HERMETIC))
    eps = [
        ep(
            "pod0",
            waiting_queue_size=0,
            kv_cache_usage_percent=0.2,
            active_models=frozenset({"foo", "bar"}),
            max_active_models=2,
        ),
        ep(
            "pod1",
            waiting_queue_size=0,
            kv_cache_usage_percent=0.9,
            active_models=frozenset({"foo", "sql-lora-1fdg2"}),
            max_active_models=2,
        ),
        ep(
            "pod2",
            waiting_queue_size=10,
            kv_cache_usage_percent=0.2,
            active_models=frozenset({"foo", "bar"}),
            max_active_models=2,
        ),
    ]
    assert sched.schedule(req("sql-lora-1fdg2"), eps).primary is eps[1]


def _warm(sched: Scheduler, target: Endpoint, prompt: str) -> None:
    """Send one request with ``prompt`` to ``target`` so the prefix index records it."""
    r = req(prompt=prompt, rid="warm")
    result = sched.schedule(r, [target])
    sched.pre_request(r, result)


def test_longest_prefix_wins_unless_saturated() -> None:
    sched = build_scheduler(load_config(None))
    prompt = "Summarise the following contract. " * 120  # ~4 KB
    a, b, c = (
        ep(n, waiting_queue_size=1, kv_cache_usage_percent=0.3) for n in ("aa", "bbb", "cccc")
    )
    _warm(sched, b, prompt)
    assert sched.schedule(req(prompt=prompt + " and more"), [a, b, c]).primary is b
    # The same endpoint, now saturated (deep queue, almost full KV cache), loses.
    b.metrics.waiting_queue_size, b.metrics.kv_cache_usage_percent = 20, 0.97
    assert sched.schedule(req(prompt=prompt + " and more"), [a, b, c]).primary is not b


class FakeUtilizationDetector:
    """A fake of flow control's utilization detector: queue >= 5 or kv >= 0.8 or stale."""

    def endpoint_saturated(self, endpoint: Endpoint, now: float) -> bool:
        m = endpoint.metrics
        return m.age(now) > 0.2 or m.waiting_queue_size >= 5 or m.kv_cache_usage_percent >= 0.8


def test_saturation_filter_removes_prefix_holder_and_stale_endpoints() -> None:
    from endpoint_picker.clock import FakeClock
    from endpoint_picker.scheduling.plugins import ApproxPrefixCacheProducer, PrefixCacheScorer

    clock = FakeClock(100.0)
    prefix = PrefixCacheScorer()
    producer = ApproxPrefixCacheProducer()
    det = SaturationFilter(
        FakeUtilizationDetector(), type_name="utilization-detector", fail_open=True, clock=clock
    )
    profile = SchedulerProfile(
        "default", filters=[det], scorers=[WeightedScorer(prefix, 3)], picker=MaxScorePicker()
    )
    sched = Scheduler([profile], SingleProfileHandler(), plugins=[producer])
    prompt = "p" * 4096
    a, b = ep("aa", update_time=100.0), ep("bbb", update_time=100.0)
    _warm(sched, b, prompt)
    assert sched.schedule(req(prompt=prompt), [a, b]).primary is b
    b.metrics.update_time = 50.0  # stale: the detector calls it saturated
    assert sched.schedule(req(prompt=prompt), [a, b]).primary is a


def test_fallbacks_and_empty_candidates() -> None:
    cfg = load_config_text(
        HERMETIC.replace(
            "- type: lora-affinity-scorer",
            "- type: max-score-picker\n  parameters: {maxNumOfEndpoints: 3}",
        )
    )
    sched = build_scheduler(cfg)
    eps = [ep("p" * (i + 1), waiting_queue_size=i) for i in range(5)]
    result = sched.schedule(req(), eps)
    assert [e.metrics.waiting_queue_size for e in result.endpoints] == [0, 1, 2]
    assert result.profile_results["default"] is not None
    with pytest.raises(ResourceExhausted, match="failed to find target endpoint"):
        sched.schedule(req(), [])


def test_filter_leaving_nothing_is_resource_exhausted() -> None:
    profile = SchedulerProfile(
        "conformance", filters=[HeaderBasedTestingFilter()], picker=MaxScorePicker()
    )
    sched = Scheduler([profile], SingleProfileHandler())
    with pytest.raises(ResourceExhausted) as err:
        sched.schedule(req(), [ep("a")])
    assert err.value.http_status == 429
    assert "failed to run scheduler profile 'conformance'" in err.value.msg


def test_plugin_and_scheduler_metrics_are_recorded() -> None:
    profile = SchedulerProfile(
        "p", scorers=[WeightedScorer(QueueScorer("my-queue"), 1)], picker=MaxScorePicker()
    )
    Scheduler([profile], SingleProfileHandler()).schedule(req("metrics-model"), [ep("a")])
    text = generate_latest(REGISTRY).decode()
    assert (
        'inference_extension_plugin_duration_seconds_count{extension_point="Scorer",plugin_name="my-queue",plugin_type="queue-scorer"}'
        in text
    )
    assert (
        'inference_extension_scheduler_attempts_total{namespace="default",pod_name="a",port="8000",status="success",target_model_name="metrics-model"} 1.0'  # noqa: E501
        in text
    )
    assert "inference_extension_scheduler_e2e_duration_seconds_bucket" in text


def test_scores_outside_unit_interval_are_clamped() -> None:
    class Wild:
        type_name = name = "wild"

        def score(self, request: InferenceRequest, endpoints: list[Endpoint]) -> list[float]:
            return [5.0, -3.0]

    profile = SchedulerProfile(
        "p",
        scorers=[WeightedScorer(Wild(), 2), WeightedScorer(QueueScorer(), 1.5)],
        picker=MaxScorePicker(),
    )
    a, b = ep("a", waiting_queue_size=9), ep("b", waiting_queue_size=0)
    # a: clamp(5)=1 x2 + 0 = 2.0; b: clamp(-3)=0 + 1 x1.5 = 1.5 -> a wins.
    assert Scheduler([profile], SingleProfileHandler()).schedule(req(), [a, b]).primary is a


def test_remove_endpoint_reaches_the_prefix_index() -> None:
    sched = build_scheduler(load_config(None))
    a = ep("aa")
    _warm(sched, a, "x" * 2000)
    producer = sched.removal_plugins[0]
    assert producer.index.size > 0  # type: ignore[attr-defined]
    sched.remove_endpoint(a)
    assert producer.index.size == 0  # type: ignore[attr-defined]
