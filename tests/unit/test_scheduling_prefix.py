"""The approximate prefix index: hashing, matching, per-endpoint LRU bound, autotune."""

from __future__ import annotations

import struct
from typing import Any

import xxhash

from endpoint_picker.datastore import Endpoint, Metrics
from endpoint_picker.requests.types import InferenceRequest
from endpoint_picker.scheduling import SchedulingResult
from endpoint_picker.scheduling.framework import PrefixMatch, ProfileRunResult
from endpoint_picker.scheduling.plugins import ApproxPrefixCacheProducer, PrefixCacheScorer
from endpoint_picker.scheduling.plugins.prefix import STATE_KEY, PrefixConfig
from endpoint_picker.scheduling.plugins.prefix_index import PrefixIndex, block_hashes


def ep(name: str, **metrics: Any) -> Endpoint:
    return Endpoint(
        name=name, pod_name=name, address="10.0.0.1", port=8000, metrics=Metrics(**metrics)
    )


def req(prompt: str, model: str = "m", salt: str = "") -> InferenceRequest:
    return InferenceRequest("r", {}, target_model=model, prompt_text=prompt, cache_salt=salt)


def chosen(e: Endpoint) -> SchedulingResult:
    return SchedulingResult({"default": ProfileRunResult([e])}, "default", [e])


def test_block_hashes_are_upstreams_chain() -> None:
    text = b"a" * 64 + b"b" * 64 + b"c" * 10
    hashes = block_hashes(text, 64, 256, "model", "salt")
    assert len(hashes) == 3  # two full blocks and the trailing partial one
    prev = xxhash.xxh64_intdigest(b"modelsalt")
    for i, chunk in enumerate((text[:64], text[64:128], text[128:])):
        prev = xxhash.xxh64_intdigest(chunk + struct.pack("<Q", prev))
        assert hashes[i] == prev
    assert block_hashes(b"short", 64, 256, "m", "") == []
    assert len(block_hashes(b"x" * 6400, 64, 10, "m", "")) == 10  # truncated to maxBlocks
    # Model and salt seed the chain: same text, different tenants, no shared blocks.
    assert block_hashes(text, 64, 256, "m", "s1")[0] != block_hashes(text, 64, 256, "m", "s2")[0]


def test_longest_prefix_scores_highest() -> None:
    prod, scorer = ApproxPrefixCacheProducer(), PrefixCacheScorer()
    a, b, c = ep("a"), ep("b"), ep("c")
    system = "You are a helpful assistant. " * 20  # ~580 chars: 9 blocks of 64
    r1 = req(system + "first question " * 10)
    prod.prepare(r1, [a, b, c])
    assert scorer.score(r1, [a, b, c]) == [0.0, 0.0, 0.0]  # nothing cached yet
    prod.pre_request(r1, chosen(a))
    r2 = req(system[:300] + "unrelated " * 50)
    prod.prepare(r2, [a, b, c])
    prod.pre_request(r2, chosen(b))
    r3 = req(system + "first question " * 10)
    prod.prepare(r3, [a, b, c])
    scores = scorer.score(r3, [a, b, c])
    assert scores[0] == 1.0 and 0.0 < scores[1] < scores[0] and scores[2] == 0.0


def test_hash_once_per_request() -> None:
    prod = ApproxPrefixCacheProducer()
    r = req("z" * 1000)
    prod.prepare(r, [ep("a")])
    first = r.state[STATE_KEY]
    assert isinstance(first, PrefixMatch)
    prod.prepare(r, [ep("a")])
    assert r.state[STATE_KEY].hashes is first.hashes


def test_autotune_block_size_and_capacity() -> None:
    prod = ApproxPrefixCacheProducer()
    tuned = ep("a", cache_block_size=32, cache_num_blocks=7)
    r = req("q" * 1280)
    prod.prepare(r, [tuned])
    assert r.state[STATE_KEY].block_size_tokens == 32 and r.state[STATE_KEY].total == 10
    prod.pre_request(r, chosen(tuned))
    assert prod.index.capacity("a") == 7 and prod.index.size == 7
    fixed = ApproxPrefixCacheProducer(config=PrefixConfig(auto_tune=False, block_size_tokens=8))
    r = req("q" * 1280)
    fixed.prepare(r, [tuned])
    assert r.state[STATE_KEY].block_size_tokens == 8 and r.state[STATE_KEY].total == 40


def test_index_memory_is_bounded_by_lru_capacity() -> None:
    index = PrefixIndex(default_capacity=100)
    for i in range(2000):
        index.add([i * 10 + k for k in range(10)], f"ep{i % 3}")
    assert index.size == 300  # 3 endpoints x capacity 100
    assert index.hash_count() <= 300  # no hash outlives its last LRU entry
    index.remove_server("ep0")
    assert index.size == 200 and index.hash_count() <= 200
    index.retain(["ep1"])
    assert index.servers() == ["ep1"] and index.hash_count() == 100


def test_eviction_keeps_leading_blocks() -> None:
    index = PrefixIndex(default_capacity=4)
    index.add([1, 2, 3, 4, 5, 6], "a")  # chain longer than capacity: keep its first blocks
    assert index.match([1, 2, 3, 4, 5, 6]) == {"a": 4}


def test_remove_endpoint_drops_its_state() -> None:
    prod = ApproxPrefixCacheProducer()
    a = ep("a")
    r = req("w" * 640)
    prod.prepare(r, [a])
    prod.pre_request(r, chosen(a))
    assert prod.index.size == 10
    prod.remove_endpoint(a)
    assert prod.index.size == 0 and prod.index.hash_count() == 0


def test_scorer_without_state_or_match_is_zero() -> None:
    assert PrefixCacheScorer().score(req("x"), [ep("a"), ep("b")]) == [0.0, 0.0]
    assert PrefixCacheScorer().score(req("x"), []) == []
