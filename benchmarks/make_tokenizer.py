"""Build a local BPE tokenizer directory for inference-perf, with no download.

inference-perf always loads a Hugging Face tokenizer (its datagens and its token counting need
one), and offline ``AutoTokenizer.from_pretrained("m")`` fails. This trains a byte-level BPE
(8192 tokens) on the Shakespeare text inference-perf itself ships and saves it as a
``PreTrainedTokenizerFast`` directory that ``tokenizer.pretrained_model_name_or_path`` can name.

Run it with the benchmark venv's Python (it needs ``tokenizers`` and ``transformers``, which
inference-perf installs): ``benchmarks/out/venv-bench/bin/python benchmarks/make_tokenizer.py
OUT_DIR``. ``benchmarks/routing.py`` does so on demand.
"""

from __future__ import annotations

import sys
from pathlib import Path

VOCAB_SIZE = 8192


def corpus_path() -> Path:
    """The Shakespeare text inside the installed inference-perf package."""
    import inference_perf  # type: ignore[import-not-found]  # the bench venv only

    path = Path(inference_perf.__file__).parent / "assets" / "shakespeare.txt"
    if not path.exists():
        raise SystemExit(f"error: {path} not found; is inference-perf installed in this venv?")
    return path


def build(out_dir: Path) -> None:
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast  # type: ignore[import-not-found]

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train([str(corpus_path())], trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|endoftext|>",
        bos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        model_max_length=10**6,  # inference-perf truncates when counting at the max length
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(out_dir))
    ids = fast("Hello world")["input_ids"]
    print(f"saved {out_dir} vocab={fast.vocab_size} 'Hello world' -> {ids}")


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: make_tokenizer.py OUT_DIR", file=sys.stderr)
        return 2
    build(Path(argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
