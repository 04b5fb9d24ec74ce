"""The precise block index and key recomputation: chains, bounds, speculative TTL, lookup."""

from __future__ import annotations

import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from endpoint_picker.scheduling.plugins.precise_index import BlockIndex, block_keys, root_key


def test_keys_chain_full_blocks_from_the_root() -> None:
    root = root_key("seed", "m")
    assert root == xxhash.xxh3_64_intdigest(b"seed\x00m")
    keys = block_keys([1, 2, 3, 4, 5, 6, 7, 8, 9], 4, root)
    assert len(keys) == 2  # the trailing partial block has no key
    first = xxhash.xxh3_64_intdigest(
        (1).to_bytes(4, "little") + b"".join(t.to_bytes(4, "little") for t in (2, 3, 4)), root
    )
    assert keys[0] == first
    # a chain continued from a parent equals the whole chain
    assert block_keys([5, 6, 7, 8], 4, keys[0]) == keys[1:]
    # different seed or model: different keys; same tokens: same keys
    assert block_keys([1, 2, 3, 4], 4, root_key("other", "m")) != keys[:1]
    assert block_keys([1, 2, 3, 4], 4, root_key("seed", "m2")) != keys[:1]
    assert block_keys([1, 2, 3], 4, root) == []


def test_keys_handle_ids_beyond_32_bits() -> None:
    assert len(block_keys([2**40, 1], 2, 0)) == 1


def test_match_counts_leading_blocks_per_endpoint() -> None:
    idx = BlockIndex()
    idx.add([1, 2, 3], "a")
    idx.add([1, 3], "b")  # b lacks block 2: it stops there, though it holds block 3
    assert idx.match([1, 2, 3, 4], now=0.0) == {"a": 3, "b": 1}
    assert idx.match([9, 1], now=0.0) == {}
    idx.remove([2], "a")
    assert idx.match([1, 2, 3], now=0.0) == {"a": 1, "b": 1}


def test_size_bounds_keys_lru_by_write() -> None:
    idx = BlockIndex(size=3)
    idx.add([1, 2, 3], "a")
    idx.add([1], "b")  # touches key 1
    idx.add([4], "a")  # evicts key 2, the least recently written
    assert len(idx) == 3 and idx.evictions == 1
    assert idx.match([1, 2], 0.0) == {"a": 1, "b": 1}
    assert idx.endpoint_keys("a") == 3  # 1, 3, 4


def test_pod_cache_size_bounds_endpoints_per_key() -> None:
    idx = BlockIndex(pod_cache_size=2)
    for name in ("a", "b", "c"):
        idx.add([7], name)
    assert set(idx.match([7], 0.0)) == {"b", "c"}
    assert idx.endpoint_keys("a") == 0


def test_speculative_entries_expire_and_confirmation_wins() -> None:
    idx = BlockIndex()
    idx.add([1, 2], "a", expiry=10.0)
    assert idx.match([1, 2], now=5.0) == {"a": 2}
    assert idx.match([1, 2], now=11.0) == {}
    assert len(idx) == 0  # expired: the keys went with their only holder
    idx.add([1], "b", expiry=10.0)
    idx.add([1], "b")  # BlockStored confirms
    idx.add([1], "b", expiry=1.0)  # a later speculative add never downgrades
    assert idx.match([1], now=100.0) == {"b": 1}


def test_clear_endpoint_drops_only_its_entries() -> None:
    idx = BlockIndex()
    idx.add([1, 2], "a")
    idx.add([1], "b")
    idx.clear_endpoint("a")
    assert idx.match([1, 2], 0.0) == {"b": 1}
    assert len(idx) == 1


def _reference_match(
    entries: dict[int, dict[str, float]], keys: list[int], now: float
) -> dict[str, int]:
    """The lookup's definition, written out: each endpoint's run of leading keys it holds
    (entries whose expiry has passed do not count), for endpoints holding the first key."""
    out: dict[str, int] = {}
    first = {e for e, exp in entries.get(keys[0], {}).items() if exp > now} if keys else set()
    for name in first:
        n = 0
        while n < len(keys) and entries.get(keys[n], {}).get(name, 0.0) > now:
            n += 1
        out[name] = n
    return out


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["add", "spec", "remove", "clear", "match"]),
            st.sampled_from(["a", "b", "c", "d"]),
            st.lists(st.integers(0, 7), max_size=6),
        ),
        max_size=40,
    )
)
def test_match_agrees_with_the_definition_over_any_history(
    ops: list[tuple[str, str, list[int]]],
) -> None:
    """Masks are kept in step with the holders through adds, speculative adds that expire,
    removals, pod-cache drops, evictions (6 keys at most, of 8) and clears (a cleared
    endpoint's bit is reused)."""
    idx = BlockIndex(size=6, pod_cache_size=3)
    now = 0.0
    for op, name, keys in ops:
        now += 1.0
        if op == "add":
            idx.add(keys, name)
        elif op == "spec":
            idx.add(keys, name, expiry=now + 2.5)
        elif op == "remove":
            idx.remove(keys, name)
        elif op == "clear":
            idx.clear_endpoint(name)
        else:
            probe = sorted(set(keys)) or [0]
            got = idx.match(probe, now)
            entries = {k: dict(h) for k, h in idx._keys.items()}
            assert got == _reference_match(entries, probe, now)
            assert idx._masks.keys() == idx._keys.keys()
            for k, h in idx._keys.items():
                assert h and idx._masks[k] == sum(idx.bit(e) for e in h)
