"""token-producer: local tokenizer.json (built here, nothing downloaded), discovery, the chat
template, the simulator's tokenizer, idempotence; and its parameters' errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from endpoint_picker.errors import ConfigError
from endpoint_picker.requests.tokenize import HFTokenizer, SimTokenizer, find_tokenizer
from endpoint_picker.requests.tokenize_cache import ChunkedTokenizer
from endpoint_picker.requests.types import InferenceRequest
from endpoint_picker.scheduling.plugins.token_producer import (
    TOKENS_KEY,
    TokenizedPrompt,
    TokenProducer,
)
from endpoint_picker.sim.tokenizer import render_chat, token_id, tokenize

CORPUS = ["the quick brown fox jumps over the lazy dog", "hello world <|user|> <|assistant|>"]


def build_tokenizer(path: Path) -> Path:
    """A tiny word-level tokenizer.json (the tokenizers package, trained on two lines)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(CORPUS, trainers.WordLevelTrainer(special_tokens=["[UNK]"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(path))
    return path


def request(body: dict[str, object], api: str = "completions") -> InferenceRequest:
    return InferenceRequest("r", {}, body=body, api=api, target_model="m", prompt_text="x")


def test_hf_tokenizer_from_a_local_file(tmp_path: Path) -> None:
    path = build_tokenizer(tmp_path / "tokenizer.json")
    producer = TokenProducer.from_params("tp", {"tokenizerPath": str(tmp_path)})
    assert isinstance(producer.backend, ChunkedTokenizer)
    assert isinstance(producer.backend.backend, HFTokenizer)
    req = request({"prompt": "the lazy dog"})
    producer.prepare(req, [])
    tp = req.state[TOKENS_KEY]
    assert isinstance(tp, TokenizedPrompt)
    assert tp.token_ids == HFTokenizer(str(path)).encode("the lazy dog", True)
    assert len(tp.token_ids) == 3
    # idempotent: a second producer (or a retry) does not tokenize again
    req.state[TOKENS_KEY] = TokenizedPrompt([7], "other")
    producer.prepare(req, [])
    assert req.state[TOKENS_KEY].token_ids == [7]


def test_tokenizer_discovery_follows_llmds_local_layouts(tmp_path: Path) -> None:
    hub = tmp_path / "hf" / "hub" / "models--org--name" / "snapshots" / "abc" / "tokenizer.json"
    build_tokenizer(hub)
    assert find_tokenizer("org/name", {"HF_HOME": str(tmp_path / "hf")}) == str(hub)
    local = build_tokenizer(tmp_path / "models" / "my-model" / "tokenizer.json")
    env = {"LOCAL_TOKENIZER_DIR": str(tmp_path / "models"), "HF_HOME": str(tmp_path / "none")}
    assert find_tokenizer("my-model", env) == str(local)
    assert find_tokenizer("absent", env) is None


def test_the_simulators_tokenizer_matches_what_the_simulator_stores() -> None:
    producer = TokenProducer.from_params("tp", {"modelName": "no/such-model"})
    assert isinstance(producer.backend, ChunkedTokenizer)
    assert isinstance(producer.backend.backend, SimTokenizer)
    messages = [{"role": "user", "content": "Hello, world!"}]
    req = request({"messages": messages}, api="chat/completions")
    producer.prepare(req, [])
    expected = [token_id(t) for t in tokenize(render_chat(messages))]
    assert req.state[TOKENS_KEY].token_ids == expected
    ids = request({"prompt": [5, 6, 7]})
    producer.prepare(ids, [])  # token-id prompts: the simulator turns them into "5", "6", "7"
    assert ids.state[TOKENS_KEY].token_ids == [token_id(s) for s in ("5", "6", "7")]


def test_llmd_parameters_are_accepted_and_typos_are_errors() -> None:
    factory = TokenProducer.from_params  # validates raw parameters, then the registry's factory
    factory("tp", {"modelName": "m", "vllm": {"url": "http://localhost:8000", "timeout": "5s"}})
    with pytest.raises(ConfigError) as err:
        factory("tp", {"modelname": "m"})
    assert err.value.path == "modelname"
    with pytest.raises(ConfigError) as err:
        factory("tp", {"vllm": {"ur": "x"}})
    assert err.value.path == "vllm.ur"
    with pytest.raises(ConfigError, match="cannot load tokenizer"):
        factory("tp", {"tokenizerPath": "/nonexistent/tokenizer.json"})


def test_chunked_tokenization_equals_whole_and_reuses_shared_chunks(tmp_path: Path) -> None:
    import random

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    rng = random.Random(5)
    words = ["".join(rng.choice("abcdefgh") for _ in range(rng.randint(1, 7))) for _ in range(300)]
    corpus = [" ".join(rng.choice(words) for _ in range(100)) for _ in range(100)]
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=600, show_progress=False))
    tok.save(str(tmp_path / "tokenizer.json"))
    system = " ".join(rng.choice(words) + "," for _ in range(2000))
    for backend in (HFTokenizer(str(tmp_path)), SimTokenizer()):
        chunked = ChunkedTokenizer(backend, chunk_chars=512, verify_first=0, verify_every=10**9)
        for q in range(5):
            prompt = system + f"  question {q}:  " + " ".join(rng.choice(words) for _ in range(50))
            assert list(chunked.encode(prompt, True)) == backend.encode(prompt, True)
        assert chunked.enabled and chunked.chunk_hits > 4 * len(chunked.cuts(system)) - 8


def test_chunking_switches_itself_off_when_it_would_differ() -> None:
    class Merging(SimTokenizer):
        name = "merging"

        def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
            return [len(text)]  # a "tokenizer" that merges everything: chunks can never match

    chunked = ChunkedTokenizer(Merging(), chunk_chars=16)
    text = "word " * 40
    assert list(chunked.encode(text)) == [len(text)]  # verified, found different, whole used
    assert not chunked.enabled
    assert list(chunked.encode(text)) == [len(text)]
