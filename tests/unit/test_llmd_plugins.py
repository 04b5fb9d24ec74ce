"""llm-d's precise-config plugins: the precise producer's request path and parameters, the
prefix scorer reading it by name, no-hit-lru, active-request, decode-filter; and llm-d's
example configs loading as they are."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from endpoint_picker.config.loader import load_config, load_config_text
from endpoint_picker.datastore import Endpoint
from endpoint_picker.errors import ConfigError
from endpoint_picker.requests.types import InferenceRequest
from endpoint_picker.scheduling import SchedulingResult
from endpoint_picker.scheduling.framework import ProfileRunResult
from endpoint_picker.scheduling.plugins import (
    ActiveRequestScorer,
    DecodeFilter,
    NoHitLruScorer,
    PrecisePrefixCacheProducer,
    PrefixCacheScorer,
)
from endpoint_picker.scheduling.plugins.precise_index import block_keys, root_key
from endpoint_picker.sim.tokenizer import token_ids

CONFIGS = Path(__file__).parent.parent / "data" / "llm-d-configs"


def ep(name: str, **labels: str) -> Endpoint:
    return Endpoint(name=name, pod_name=name, address="10.0.0.1", port=8000, labels=labels)


def req(prompt: str) -> InferenceRequest:
    return InferenceRequest(
        "r", {}, body={"prompt": prompt}, api="completions", target_model="m", prompt_text=prompt
    )


def chosen(e: Endpoint) -> SchedulingResult:
    return SchedulingResult({"default": ProfileRunResult([e])}, "default", [e])


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def test_precise_producer_feeds_the_scorer_named_for_it() -> None:
    prod = PrecisePrefixCacheProducer.from_params(
        "precise", {"tokenProcessorConfig": {"blockSize": 4}}
    )
    scorer = PrefixCacheScorer.from_params("s", {"prefixMatchInfoProducerName": "precise"})
    approx_scorer = PrefixCacheScorer.from_params("a", None)
    prompt = "one two three four five six seven eight nine"
    keys = block_keys(token_ids(prompt), 4, root_key("", ""))
    prod.index.add(keys[:1], "a")
    prod.index.add(keys, "b")
    r = req(prompt)
    endpoints = [ep("a"), ep("b"), ep("c")]
    prod.prepare(r, endpoints)
    assert scorer.score(r, endpoints) == [0.5, 1.0, 0.0]
    assert approx_scorer.score(r, endpoints) == [0.0, 0.0, 0.0]  # reads the approximate one


def test_speculative_indexing_routes_followers_until_the_ttl() -> None:
    clock = Clock()
    prod = PrecisePrefixCacheProducer.from_params(
        "p", {"speculativeIndexing": True, "speculativeTTL": "2s"}
    )
    prod.clock = clock
    r = req("w " * 40)
    prod.prepare(r, [])
    prod.pre_request(r, chosen(ep("a")))
    follower = req("w " * 40)
    prod.prepare(follower, [])
    assert follower.state[prod.state_key].matches == {"a": 2}
    clock.now += 3
    late = req("w " * 40)
    prod.prepare(late, [])
    assert late.state[prod.state_key].matches == {}


def test_precise_parameters_errors_name_the_path() -> None:
    with pytest.raises(ConfigError) as err:
        PrecisePrefixCacheProducer.from_params("p", {"kvEventsConfig": {"zmqEndpont": "x"}})
    assert err.value.path == "kvEventsConfig.zmqEndpont"
    with pytest.raises(ConfigError, match="'vllm' or 'sglang'"):
        PrecisePrefixCacheProducer.from_params("p", {"kvEventsConfig": {"engineType": "trt"}})
    PrecisePrefixCacheProducer.from_params("p", {"kvEventsConfig": {"engineType": "sglang"}})
    with pytest.raises(ConfigError, match="greater than 0"):
        PrecisePrefixCacheProducer.from_params("p", {"tokenProcessorConfig": {"blockSize": -1}})
    with pytest.raises(ConfigError) as err:
        PrecisePrefixCacheProducer.from_params("p", {"speculativeTTL": "soon"})
    assert err.value.path == "speculativeTTL"
    p = PrecisePrefixCacheProducer.from_params(
        "p",
        {
            "indexerConfig": {"kvBlockIndexConfig": {"inMemoryConfig": {"size": 10}}},
            "tokenProcessorConfig": {"blockSizeTokens": 5, "hashSeed": "42"},
        },
    )
    assert p.index.size == 10 and p.block_size == 5 and p.hash_seed == "42"


def test_no_hit_lru_spreads_cold_requests_and_stays_neutral_when_warm() -> None:
    lru = NoHitLruScorer.from_params("l", {"prefixMatchInfoProducerName": "p", "lruSize": 8})
    endpoints = [ep("a"), ep("b"), ep("c")]
    cold = req("x")
    assert lru.score(cold, endpoints) == [1.0, 1.0, 1.0]
    lru.pre_request(cold, chosen(endpoints[0]))
    cold2 = req("y")
    lru.score(cold2, endpoints)
    lru.pre_request(cold2, chosen(endpoints[1]))
    scores = lru.score(req("z"), endpoints)
    assert scores[2] == 1.0 > scores[0] > scores[1]  # never used, least recent, most recent
    prod = PrecisePrefixCacheProducer.from_params("p", None)
    warm = req("w " * 40)
    prod.index.add(prod.keys_for(warm), "a")
    prod.prepare(warm, endpoints)
    assert lru.score(warm, endpoints) == [0.5, 0.5, 0.5]


def test_active_request_scorer() -> None:
    scorer = ActiveRequestScorer.from_params("a", {"idleThreshold": 1, "maxBusyScore": 0.5})
    endpoints = [ep("a"), ep("b"), ep("c")]
    for e, n in zip(endpoints, (0, 3, 5), strict=True):
        e.inflight_requests = n
    assert scorer.score(req("x"), endpoints) == [1.0, 0.25, 0.0]
    ActiveRequestScorer.from_params("a", {"requestTimeout": "2m"})  # deprecated, accepted


def test_decode_filter_keeps_decoders_and_unlabelled() -> None:
    endpoints = [
        ep("a"),
        ep("b", **{"llm-d.ai/role": "prefill"}),
        ep("c", **{"llm-d.ai/role": "decode"}),
        ep("d", **{"llm-d.ai/role": "both"}),
    ]
    kept = DecodeFilter.from_params("d", None).filter(req("x"), endpoints)
    assert [e.name for e in kept] == ["a", "c", "d"]


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_llmd_precise_configs_load_unchanged(name: str) -> None:
    if name == "precise-prefix.yaml":
        values = yaml.safe_load((CONFIGS / name).read_text())
        cfg = load_config_text(
            values["router"]["epp"]["pluginsCustomConfig"]["precise-baseline-plugins.yaml"]
        )
    else:
        cfg = load_config(str(CONFIGS / name))
    types = {p.type_name for p in cfg.plugins.values()}
    assert "precise-prefix-cache-producer" in types
    assert "approx-prefix-cache-producer" not in types  # the scorer names its producer


def test_scorer_naming_the_approximate_producer_still_tunes_the_auto_created_one() -> None:
    cfg = load_config_text(
        "apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\n"
        "plugins:\n- type: prefix-cache-scorer\n  parameters:\n"
        "    prefixMatchInfoProducerName: approx-prefix-cache-producer\n"
        "    blockSizeTokens: 32\n"
    )
    producer = cfg.plugins["approx-prefix-cache-producer"]
    assert producer.parameters["blockSizeTokens"] == 32
    assert "prefixMatchInfoProducerName" not in producer.parameters  # the scorer's own
