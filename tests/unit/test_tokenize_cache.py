"""The segment chain of the chunked tokenizer and the block keys memoized on it: both must equal
what tokenizing and hashing the whole prompt gives, whatever prefixes came before."""

from __future__ import annotations

import random
from pathlib import Path

from endpoint_picker.requests.tokenize import HFTokenizer, SimTokenizer, TokenizerBackend
from endpoint_picker.requests.tokenize_cache import ChunkedTokenizer, SegmentedIds
from endpoint_picker.scheduling.plugins.precise_index import (
    BlockIndex,
    block_keys,
    chain_keys,
    root_key,
)

WORDS = ["".join(random.Random(i).choice("abcdefgh") for _ in range(1 + i % 7)) for i in range(300)]


def _bpe(tmp_path: Path) -> HFTokenizer:
    """A byte-level BPE trained here (nothing downloaded), as real models' tokenizers are."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    rng = random.Random(5)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [" ".join(rng.choice(WORDS) for _ in range(100)) for _ in range(100)]
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=600, show_progress=False))
    tok.save(str(tmp_path / "tokenizer.json"))
    return HFTokenizer(str(tmp_path))


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) + rng.choice(",. ") for _ in range(words)).strip()


def _backends(tmp_path: Path) -> list[TokenizerBackend]:
    return [_bpe(tmp_path), SimTokenizer()]


def test_segments_chain_whole_prefixes_and_ids_equal_whole_tokenization(tmp_path: Path) -> None:
    rng = random.Random(1)
    system, other = _text(rng, 1500), _text(rng, 1500)
    for backend in _backends(tmp_path):
        chunked = ChunkedTokenizer(backend, chunk_chars=256, verify_first=0)
        seen: list[SegmentedIds] = []
        made: list[range] = []  # serials of the entries each prompt created
        for prefix in (system, other, system):
            prompt = prefix + " " + _text(rng, 80)
            first = max((s.serial for s in chunked._cache.values()), default=0) + 1
            ids = chunked.encode(prompt, True)
            made.append(range(first, max(s.serial for s in chunked._cache.values()) + 1))
            assert isinstance(ids, SegmentedIds) and ids.segments
            assert list(ids) == list(backend.encode(prompt, True))
            ends = [s.end for s in ids.segments]
            assert ends == sorted(ends) and ids.segments[0].start == 0
            assert all(
                a.end == b.start for a, b in zip(ids.segments, ids.segments[1:], strict=False)
            )
            seen.append(ids)
        # the third prompt found what the first one stored (all but its new question's
        # entries), nothing of the second's
        serials = [s.serial for s in seen[2].segments]
        assert sum(s in made[0] for s in serials) >= len(serials) - 3
        assert not any(s in made[1] for s in serials)
        assert not set(seen[1].segments) & set(seen[0].segments)


def test_same_chunk_after_different_prefixes_is_a_different_segment() -> None:
    chunked = ChunkedTokenizer(SimTokenizer(), chunk_chars=8, verify_first=0)
    a = chunked.encode("alpha beta gamma delta epsilon zeta eta theta", True)
    b = chunked.encode("omega beta gamma delta epsilon zeta eta theta", True)
    assert isinstance(a, SegmentedIds) and isinstance(b, SegmentedIds)
    assert not set(a.segments) & set(b.segments)  # same later chunk text, different prefix


def test_memoized_chain_keys_equal_hashing_the_whole_prompt(tmp_path: Path) -> None:
    rng = random.Random(2)
    systems = [_text(rng, 1200) for _ in range(3)]
    for backend in _backends(tmp_path):
        chunked = ChunkedTokenizer(backend, chunk_chars=200, verify_first=0)
        for block_size in (16, 5):
            root = root_key("", f"m{block_size}")
            for i in range(12):
                prompt = systems[i % 3] + " " + _text(rng, rng.randint(1, 120))
                ids = chunked.encode(prompt, True)
                whole = block_keys(list(backend.encode(prompt, True)), block_size, root)
                assert list(chain_keys(ids, block_size, root)) == whole
                assert list(chain_keys(ids, block_size, root)) == whole  # from the memo alone
            assert isinstance(ids, SegmentedIds)
            assert all(
                s.memo and (block_size, root) in s.memo
                for s in ids.segments  # every segment of the last prompt has its keys memoized
            )
    assert chain_keys([1, 2, 3, 4], 2, 0) == block_keys([1, 2, 3, 4], 2, 0)  # plain ids


def test_match_stops_each_endpoint_at_its_first_missing_or_expired_block() -> None:
    idx = BlockIndex()
    idx.add([1, 2, 3, 4, 5], "a")
    idx.add([1, 2, 3], "b", expiry=10.0)  # speculative
    idx.add([1, 2], "c")
    idx.add([9], "c")
    assert idx.match([1, 2, 3, 4, 5, 6], now=0.0) == {"a": 5, "b": 3, "c": 2}
    idx.add([3], "c", expiry=1.0)  # c holds block 3 speculatively, briefly
    assert idx.match([1, 2, 3], now=0.5) == {"a": 3, "b": 3, "c": 3}
    assert idx.match([1, 2, 3], now=20.0) == {"a": 3, "c": 2}  # both expired entries dropped
    assert idx.endpoint_keys("b") == 0
    assert idx.match([7, 1], now=0.0) == {}
    assert idx.match([], now=0.0) == {}


def test_a_coarse_chunk_found_whole_from_its_fine_chunks_is_stored_again(tmp_path: Path) -> None:
    """When a coarse entry was evicted but its fine chunks were not, the walk finds the whole
    chunk fine chunk by fine chunk, stores the coarse entry again and goes on; the ids stay
    those of whole-prompt tokenization."""
    rng = random.Random(9)
    prompt = _text(rng, 900)
    for backend in _backends(tmp_path):
        chunked = ChunkedTokenizer(backend, chunk_chars=400, fine_chars=50, verify_first=0)
        first = list(chunked.encode(prompt, True))
        coarse = [k for k in chunked._cache if k[3] >= 400]
        assert coarse
        for key in coarse:
            del chunked._cache[key]
        again = chunked.encode(prompt, True)
        assert list(again) == first == list(backend.encode(prompt, True))
        assert sorted(k for k in chunked._cache if k[3] >= 400)  # stored again
        hits = chunked.chunk_hits
        chunked.encode(prompt, True)
        assert chunked.chunk_hits > hits


def test_resuming_at_a_remembered_point_equals_walking(tmp_path: Path) -> None:
    """Prompts resumed at a resume point get what walking the chain gives: the same ids, the
    same segments, the same entries in the same LRU order and the same hit counts, through
    prompts sharing a whole system prompt or part of one, unrelated prompts, LRU evictions and
    entries removed by hand."""
    rng = random.Random(4)
    systems = [_text(rng, rng.randint(100, 700)) for _ in range(3)]
    for backend in _backends(tmp_path):
        for chunk, fine, size in ((300, 40, 10**6), (200, 50, 150)):
            make = {"chunk_chars": chunk, "fine_chars": fine, "max_chunks": size}
            walking = ChunkedTokenizer(backend, verify_first=0, resume_tries=0, **make)
            resuming = ChunkedTokenizer(backend, verify_first=0, **make)
            for _ in range(120):
                system = rng.choice(systems)
                if rng.random() < 0.7:
                    system = (
                        system[: rng.randint(50, len(system))] if rng.random() < 0.3 else system
                    )
                    prompt = system + " " + _text(rng, rng.randint(1, 60))
                else:
                    prompt = _text(rng, rng.randint(1, 300))
                special = rng.random() < 0.8
                a, b = walking.encode(prompt, special), resuming.encode(prompt, special)
                assert list(a) == list(b) == list(backend.encode(prompt, special))
                seg = [(s.serial, s.start, s.end) for s in getattr(a, "segments", ())]
                assert seg == [(s.serial, s.start, s.end) for s in getattr(b, "segments", ())]
                assert list(walking._cache) == list(resuming._cache)
                if rng.random() < 0.05:
                    for c in (walking, resuming):
                        for key in [k for k in c._cache if k[3] >= chunk][:2]:
                            del c._cache[key]
            assert walking.chunk_hits == resuming.chunk_hits
            assert walking.resumes == 0 and resuming.resumes > 10
