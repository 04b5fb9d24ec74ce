"""KV-event ingestion without sockets: vLLM's encoding, key recomputation, sequence rules."""

from __future__ import annotations

import msgpack

from endpoint_picker.datalayer.kvevents import KVEventIngester, parse_topic
from endpoint_picker.scheduling.plugins.precise_index import BlockIndex, block_keys, root_key
from endpoint_picker.sim.kvcache import KVCache
from endpoint_picker.sim.kvcache import block_hashes as engine_hashes
from endpoint_picker.sim.kvevents import (
    all_blocks_cleared,
    block_removed,
    block_stored,
    encode_batch,
)

TOPIC = b"kv@10.0.0.1:8000@m"


def batch(*events: list[object]) -> bytes:
    return encode_batch(list(events), 1.0)


def ingester(block_size: int = 4, size: int = 1000) -> KVEventIngester:
    return KVEventIngester(BlockIndex(size), block_size, "seed")


def keys(tokens: list[int], block_size: int = 4, model: str = "m") -> list[int]:
    return block_keys(tokens, block_size, root_key("seed", model))


def test_payload_is_msgspec_array_like() -> None:
    raw = msgpack.unpackb(batch(block_stored([11], None, [1, 2], 2)), raw=False)
    assert raw[0] == 1.0 and raw[2] is None
    assert raw[1] == [["BlockStored", [11], None, [1, 2], 2, None, "GPU", None]]
    assert parse_topic(TOPIC) == ("10.0.0.1:8000", "m")
    assert parse_topic(b"kv-events") == ("", "")


def test_stored_blocks_get_the_epps_keys_whatever_the_engine_hashes() -> None:
    ing = ingester()
    tokens = list(range(12))
    ing.receive("a", TOPIC, 0, batch(block_stored([901, 902], None, tokens[:8], 4)))
    ing.receive("a", TOPIC, 1, batch(block_stored([903], 902, tokens[8:], 4)))
    assert ing.index.match(keys(tokens), 0.0) == {"a": 3}
    assert ing.request_model("m") == "m" and ing.request_model("other") == ""


def test_engine_block_size_may_differ_from_the_epps() -> None:
    tokens = list(range(16))
    ing = ingester(block_size=8)
    stored = [block_stored([1, 2], None, tokens[:8], 4), block_stored([3, 4], 2, tokens[8:], 4)]
    ing.receive("a", TOPIC, 0, batch(*stored))
    assert ing.index.match(keys(tokens, 8), 0.0) == {"a": 2}
    ing.receive("a", TOPIC, 1, batch(block_removed([4])))  # the block that completed key 2
    assert ing.index.match(keys(tokens, 8), 0.0) == {"a": 1}


def test_removed_and_cleared() -> None:
    ing = ingester()
    tokens = list(range(8))
    ing.receive("a", TOPIC, 0, batch(block_stored([1, 2], None, tokens, 4)))
    ing.receive("b", TOPIC, 0, batch(block_stored([5, 6], None, tokens, 4)))
    ing.receive("a", TOPIC, 1, batch(block_removed([2])))
    assert ing.index.match(keys(tokens), 0.0) == {"a": 1, "b": 2}
    ing.receive("b", TOPIC, 1, batch(all_blocks_cleared()))
    assert ing.index.match(keys(tokens), 0.0) == {"a": 1}
    assert ing.stats.cleared == 1


def test_orphan_block_is_skipped() -> None:
    ing = ingester()
    ing.receive("a", TOPIC, 0, batch(block_stored([3], 999, [1, 2, 3, 4], 4)))
    assert len(ing.index) == 0 and ing.stats.orphans == 1


def test_gap_keeps_state_restart_drops_it() -> None:
    ing = ingester()
    tokens = list(range(8))
    assert ing.receive("a", TOPIC, 5, batch(block_stored([1], None, tokens[:4], 4))) == "first"
    assert ing.receive("a", TOPIC, 9, batch(block_stored([2], 1, tokens[4:], 4))) == "gap"
    assert ing.stats.gaps == 1
    assert ing.index.match(keys(tokens), 0.0) == {"a": 2}
    # seq going back: the server restarted with an empty cache
    assert ing.receive("a", TOPIC, 0, batch(block_stored([7], None, [9, 9, 9, 9], 4))) == (
        "restart"
    )
    assert ing.index.match(keys(tokens), 0.0) == {}
    assert ing.index.match(keys([9, 9, 9, 9]), 0.0) == {"a": 1}


def test_malformed_payloads_are_counted_not_raised() -> None:
    ing = ingester()
    ing.receive("a", TOPIC, 0, b"\xc1not msgpack")
    ing.receive("a", TOPIC, 1, batch(["Unknown"], ["BlockStored", "x"]))
    assert ing.stats.errors == 3


def test_simulator_cache_events_round_trip_into_the_index() -> None:
    """The simulator's KVCache emits what vLLM emits; applied to the index, they say exactly
    which leading blocks of each prompt the cache still holds, evictions included."""
    ing = ingester(block_size=2)
    sent: list[list[object]] = []
    kv = KVCache(num_blocks=5, block_size=2)
    kv.sink = sent.append

    def engine(toks: list[int]) -> list[int]:  # the engine's own hashes, another seed
        return engine_hashes([str(t) for t in toks], 2, "engine-seed")

    prompts = [[1, 2, 3, 4, 5], [1, 2, 3, 4, 6, 7, 8], [9, 9, 8, 8, 7], [1, 2, 5, 5, 5]]
    for toks in prompts:
        alloc = kv.allocate(engine(toks), len(toks), len(toks), toks)
        assert alloc is not None
        kv.release(alloc)
    ing.receive("a", b"kv@a@m", 0, batch(*sent))
    assert "BlockRemoved" in [e[0] for e in sent]  # 5 blocks: the pressure evicted some
    held = set(kv.cached_hashes())
    for toks in prompts:
        expect = 0
        for h in engine(toks):
            if h not in held:
                break
            expect += 1
        assert ing.index.match(keys(toks, 2), 0.0).get("a", 0) == expect


def test_chains_split_over_events_match_the_request_side_keys() -> None:
    # Random chains stored a few engine blocks per event, with engine blocks of 2, 4 and 8
    # tokens against the EPP's 4 (the usual case, equal sizes, takes a path of its own): the
    # index holds exactly the keys a request with those tokens computes, and removing every
    # engine block leaves nothing.
    import random

    rng = random.Random(11)
    for engine in (2, 4, 8):
        ing = ingester(block_size=4)
        seq = 0
        for chain in range(20):
            tokens = [rng.randrange(1 << 31) for _ in range(engine * rng.randrange(2, 12))]
            hashes = [chain * 1000 + i for i in range(len(tokens) // engine)]
            parent = None
            at = 0
            while at < len(hashes):
                n = rng.randrange(1, 4)
                part = hashes[at : at + n]
                toks = tokens[at * engine : (at + len(part)) * engine]
                ing.receive("a", TOPIC, seq, batch(block_stored(part, parent, toks, engine)))
                seq, parent, at = seq + 1, part[-1], at + len(part)
            want = keys(tokens)
            assert ing.index.match(want, 0.0) == {"a": len(want)}, (engine, chain)
            ing.receive("a", TOPIC, seq, batch(block_removed(hashes)))
            seq += 1
            assert ing.index.match(want, 0.0) == {}
        assert len(ing.index) == 0
