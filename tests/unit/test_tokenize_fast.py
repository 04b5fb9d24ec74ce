"""The fast byte-level BPE encoder: equal to the ``tokenizers`` package on the shapes it takes,
refused for the others, cut at chunk boundaries as one call, and switched off at a difference."""

from __future__ import annotations

import itertools
import json
import logging
import random
from pathlib import Path
from typing import Any

import pytest

from endpoint_picker.requests.tokenize import HFTokenizer
from endpoint_picker.requests.tokenize_cache import ChunkedTokenizer, cuts

# Llama 3's pre-tokenizer expression (a Split before ByteLevel, as Llama 3 and Qwen ship it).
LLAMA3 = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
TEXTS = [
    "Hello, world! It's 2026-12-02; we've got 3.14 apples\n\n  and   tabs\t here.",
    "Ünïcödé 日本語のテキスト 😀 emoji — dashes… “quotes” 12345 67.89",
    "<|eot_id|>hello<|begin_of_text|> x <|eot_id|>",
    "  multiple   spaces\n\n\tand trailing ",
    "e\u0301 combining, then NFC",
    "",
    "x",
]


def _corpus() -> list[str]:
    rng = random.Random(3)
    words = ["the", "routing", "of", "requests", "cache", "prefix", "Über", "naïve", "42", "3.5"]
    lines = [
        " ".join(rng.choice(words) for _ in range(30)) + rng.choice(".!?\n") for _ in range(300)
    ]
    return lines + TEXTS * 3


def _train(tmp_path: Path, name: str, split: bool, nfc: bool = False, bos: bool = False) -> Path:
    """A byte-level BPE trained here, GPT-2 shaped (ByteLevel's own expression) or Llama 3
    shaped (Split, then ByteLevel without one); optionally NFC and a BOS post-processor."""
    from tokenizers import (
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )

    tok = Tokenizer(models.BPE(ignore_merges=split))
    if nfc:
        tok.normalizer = normalizers.NFC()
    if split:
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(LLAMA3), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1500,
        special_tokens=["<|begin_of_text|>", "<|eot_id|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer)
    if bos:
        bos_id = tok.token_to_id("<|begin_of_text|>")
        tok.post_processor = processors.TemplateProcessing(
            single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", bos_id)]
        )
    out = tmp_path / name
    out.mkdir()
    tok.save(str(out / "tokenizer.json"))
    return out / "tokenizer.json"


def _agrees(hf: HFTokenizer, texts: list[str]) -> None:
    assert hf.fast is not None, hf.fast_reason
    for text in texts:
        for special in (True, False):
            expected = list(hf._tok.encode(text, add_special_tokens=special).ids)
            assert hf.fast.encode(text, special) == expected, (text, special)


@pytest.mark.parametrize(
    ("split", "nfc", "bos"), [(False, False, False), (True, False, True), (True, True, True)]
)
def test_fast_encoder_equals_the_tokenizers_package(
    tmp_path: Path, split: bool, nfc: bool, bos: bool
) -> None:
    path = _train(tmp_path, "t", split, nfc, bos)
    _agrees(HFTokenizer(str(path)), _corpus()[:60] + TEXTS)


def test_ids_out_of_merge_order_are_mapped_back(tmp_path: Path) -> None:
    """A file whose ids do not follow its merges (reordered here) still encodes as the
    package does: ranks follow the merges, and the output is mapped to the file's ids."""
    path = _train(tmp_path, "t", split=True)
    spec = json.loads(path.read_text())
    vocab: dict[str, int] = spec["model"]["vocab"]
    added = {t["id"] for t in spec["added_tokens"]}
    movable = sorted(i for i in vocab.values() if i not in added)
    shuffled = movable[:]
    random.Random(1).shuffle(shuffled)
    remap = dict(zip(movable, shuffled, strict=True))
    spec["model"]["vocab"] = {t: remap.get(i, i) for t, i in vocab.items()}
    path.write_text(json.dumps(spec))
    hf = HFTokenizer(str(path))
    assert hf.fast is not None and hf.fast._to_id is not None  # the mapped path
    _agrees(hf, _corpus()[:40] + TEXTS)


def _edit(path: Path, change: Any) -> Path:
    spec = json.loads(path.read_text())
    change(spec)
    path.write_text(json.dumps(spec))
    return path


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda s: s.update(normalizer={"type": "Lowercase"}), "normalizer 'Lowercase'"),
        (lambda s: s["pre_tokenizer"].update(add_prefix_space=True), "not byte-level"),
        (lambda s: s["model"].update(dropout=0.1), "dropout"),
        (lambda s: s["added_tokens"][0].update(lstrip=True), "strips spaces"),
        (lambda s: s.update(pre_tokenizer={"type": "Whitespace"}), "not byte-level"),
    ],
)
def test_other_shapes_keep_the_tokenizers_package(tmp_path: Path, change: Any, reason: str) -> None:
    hf = HFTokenizer(str(_edit(_train(tmp_path, "t", split=False), change)))
    assert hf.fast is None and reason in hf.fast_reason


def test_encode_split_equals_encoding_each_piece(tmp_path: Path) -> None:
    hf = HFTokenizer(str(_train(tmp_path, "t", split=True, bos=True)))
    assert hf.fast is not None
    rng = random.Random(4)
    for _ in range(30):
        text = " ".join(rng.choice(_corpus()) for _ in range(6))
        bounds = cuts(text, rng.randint(20, 200), 0, len(text))
        pieces = hf.fast.encode_split(text, bounds, True)
        assert pieces is not None
        edges = [0, *bounds, len(text)]
        expected = [hf.encode(text[a:b], a == 0) for a, b in itertools.pairwise(edges)]
        assert pieces[:-1] == expected[:-1]
        assert pieces[-1] == expected[-1]
    assert hf.fast.encode_split("routing requests", [3], False) is None  # inside a token


def test_chunk_cache_over_the_fast_encoder_equals_whole_prompts(tmp_path: Path) -> None:
    """The chunk cache's one-call path (encode_split) against the package on whole prompts."""
    hf = HFTokenizer(str(_train(tmp_path, "t", split=True, bos=True)), verify_first=10**9)
    chunked = ChunkedTokenizer(hf, chunk_chars=300, fine_chars=60, verify_first=0)
    rng = random.Random(6)
    system = " ".join(_corpus()[:40])
    for i in range(20):
        prompt = (system if i % 2 else " ".join(_corpus()[40:70])) + " " + rng.choice(_corpus())
        got = list(chunked.encode(prompt, True))
        assert got == list(hf._tok.encode(prompt, add_special_tokens=True).ids)
    assert hf.fast is not None  # it never differed
    assert chunked.chunk_hits > 0


class WrongEncoder:
    """A fake fast encoder that answers one id off (what a vocabulary corner case would do)."""

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return [1, 2, 3]

    def encode_split(self, text: str, cuts: list[int], add_special_tokens: bool) -> list[list[int]]:
        return [[1]] * (len(cuts) + 1)


def test_a_difference_switches_the_fast_encoder_off(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hf = HFTokenizer(str(_train(tmp_path, "t", split=False)), verify_first=2, verify_every=4)
    hf.fast = WrongEncoder()  # type: ignore[assignment]
    expected = list(hf._tok.encode("hello world", add_special_tokens=True).ids)
    with caplog.at_level(logging.WARNING):
        assert hf.encode("hello world") == expected  # checked, differs: the package's answer
    assert hf.fast is None and "differed" in hf.fast_reason
    assert "fast encoder differs" in caplog.text
    assert hf.encode("hello world") == expected  # for good
    hf.fast = WrongEncoder()  # type: ignore[assignment]
    hf.calls = 0
    assert hf.encode_split("hello world", [5], True) is None  # a checked split that differs
    assert hf.fast is None
