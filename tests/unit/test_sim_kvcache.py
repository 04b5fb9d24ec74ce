"""KV cache block accounting: prefix hits, pinning, reservations, LRU eviction."""

from __future__ import annotations

from endpoint_picker.sim.kvcache import KVCache, block_hashes, blocks_for


def toks(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def test_hash_chain_depends_on_prefix_and_seed() -> None:
    a = block_hashes(toks("t", 10), 4, "m")
    assert len(a) == 2  # the partial third block is not hashed
    b = block_hashes([*toks("t", 8), "x", "y"], 4, "m")
    assert a == b  # same full blocks, different tail
    changed_first = block_hashes(["z", *toks("t", 10)[1:]], 4, "m")
    assert changed_first[0] != a[0] and changed_first[1] != a[1]  # chain: parent feeds child
    assert block_hashes(toks("t", 10), 4, "lora-a") != a  # model/adapter seeds the chain


def test_blocks_for_rounds_up() -> None:
    assert [blocks_for(n, 4) for n in (1, 4, 5, 8, 9)] == [1, 1, 2, 2, 3]


def test_prefix_hit_after_release_and_usage_counts_only_pinned() -> None:
    kv = KVCache(num_blocks=16, block_size=4)
    hashes = block_hashes(toks("p", 13), 4, "m")  # 3 full blocks + 1 partial
    first = kv.allocate(hashes, 13, 13 + 4)
    assert first is not None and first.cached_tokens == 0
    assert kv.pinned == 4 and kv.usage == 4 / 16
    kv.release(first)
    assert kv.usage == 0.0 and kv.cached == 3
    again = kv.allocate(hashes, 13, 17)
    assert again is not None and again.cached_tokens == 12
    assert (kv.queries, kv.hits) == (26, 12)


def test_full_hit_still_computes_the_last_block() -> None:
    kv = KVCache(num_blocks=16, block_size=4)
    hashes = block_hashes(toks("p", 8), 4, "m")
    a = kv.allocate(hashes, 8, 9)
    assert a is not None
    kv.release(a)
    b = kv.allocate(hashes, 8, 9)
    assert b is not None and b.cached_tokens == 4  # (8 - 1) // 4 blocks


def test_concurrent_requests_share_pinned_blocks() -> None:
    kv = KVCache(num_blocks=16, block_size=4)
    hashes = block_hashes(toks("p", 8), 4, "m")
    a = kv.allocate(hashes, 8, 8)
    b = kv.allocate(hashes, 8, 8)
    assert a is not None and b is not None
    assert kv.pinned == 2  # shared, not duplicated
    kv.release(a)
    assert kv.pinned == 2 and kv.cached == 0
    kv.release(b)
    assert kv.pinned == 0 and kv.cached == 2


def test_request_that_does_not_fit_is_refused_and_reservations_count() -> None:
    kv = KVCache(num_blocks=10, block_size=4)
    a = kv.allocate(block_hashes(toks("a", 8), 4, "m"), 8, 24)  # 2 pinned + 4 reserved
    assert a is not None and kv.pinned == 2
    assert kv.allocate(block_hashes(toks("b", 8), 4, "m"), 8, 20) is None  # needs 5, 4 left
    kv.grow(a)
    assert kv.pinned == 3 and a.reserved == 3
    c = kv.allocate(block_hashes(toks("c", 8), 4, "m"), 8, 16)
    assert c is not None


def test_lru_eviction_drops_the_oldest_unused_prefix() -> None:
    kv = KVCache(num_blocks=6, block_size=4)
    old = block_hashes(toks("old", 8), 4, "m")
    new = block_hashes(toks("new", 8), 4, "m")
    for hashes in (old, new):
        alloc = kv.allocate(hashes, 8, 8)
        assert alloc is not None
        kv.release(alloc)
    assert kv.cached == 4
    third = kv.allocate(block_hashes(toks("x", 12), 4, "m"), 12, 12)  # needs 3: 2 free + evict 1
    assert third is not None and kv.evictions == 1
    assert kv.match(old) == 1  # the oldest prompt lost a block, its tail (freed first, as vLLM)
    assert kv.match(new) == 2


def test_prefix_caching_off_never_hits() -> None:
    kv = KVCache(num_blocks=8, block_size=4, prefix_caching=False)
    hashes = block_hashes(toks("p", 9), 4, "m")
    a = kv.allocate(hashes, 9, 9)
    assert a is not None
    kv.release(a)
    b = kv.allocate(hashes, 9, 9)
    assert b is not None and b.cached_tokens == 0 and kv.cached == 0
