"""A faster encoder for byte-level BPE ``tokenizer.json`` files, checked against the original.

The ``tokenizers`` package encodes about 3 MB of text a second on one core here (2.5 us a
token), so the new question after a cached system prompt costs more than the rest of precise
prefix routing together (docs/precise-prefix.md). Byte-level BPE (GPT-2, Llama 3, Qwen, Mistral
Tekken, and most current models) is one regular expression that cuts the text into pieces, then
the BPE merges on each piece's UTF-8 bytes; tiktoken's Rust core does exactly that about five
times faster. :func:`fast_encoder` builds such an encoder from the same ``tokenizer.json``,
when the file is of that shape:

- model ``BPE``, with no dropout, no subword prefix or suffix, no byte fallback;
- no normalizer, or ``NFC`` (applied here before encoding);
- pre-tokenizer ``ByteLevel`` (its GPT-2 expression) or ``Split`` by a regular expression
  followed by ``ByteLevel`` without its own expression, never adding a prefix space;
- added tokens (special or not) matched as written: no ``lstrip``, ``rstrip`` or
  ``single_word``;
- a post-processor that only puts fixed tokens before and after (a BOS, say).

Merge ranks follow the file's ``merges`` order; tiktoken's output is mapped back to the file's
ids when they differ (a table lookup per token). Anything else returns None, and the caller
keeps the ``tokenizers`` package.

**The two disagree in corner cases** (a merged string reachable by two merges, a vocabulary
entry no merge produces, NFC across an added token), so the result is not taken on trust:
:class:`~endpoint_picker.requests.tokenize.HFTokenizer` compares the two on its first prompts and
then on one in ``verify_every``, and at the first difference uses the original for good.
"""

from __future__ import annotations

import logging
import unicodedata
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from itertools import accumulate, pairwise
from typing import Any

log = logging.getLogger(__name__)

# The expression of ``ByteLevel`` with ``use_regex`` (GPT-2's).
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


@lru_cache(maxsize=1)
def byte_level_chars() -> dict[str, int]:
    """ByteLevel's printable stand-in for each byte, mapped back to the byte."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    keep += range(ord("®"), ord("ÿ") + 1)
    out = {chr(b): b for b in keep}
    extra = 0
    for b in range(256):
        if b not in keep:
            out[chr(256 + extra)] = b
            extra += 1
    return out


class FastBPE:
    """tiktoken over a ``tokenizer.json``'s vocabulary; ``encode`` as HFTokenizer's."""

    def __init__(
        self,
        encoding: Any,
        to_id: list[int] | None,
        before: list[int],
        after: list[int],
        nfc: bool,
        lengths: list[int],
    ) -> None:
        self._encode: Callable[..., list[int]] = encoding.encode
        self._ordinary: Callable[[str], list[int]] = encoding.encode_ordinary
        self._specials = encoding.special_tokens_set
        # Matching added tokens costs tiktoken twice the time: only done for a text holding
        # the first character of one.
        self._starts = sorted({token[0] for token in self._specials if token})
        self._to_id = to_id
        self._before = before
        self._after = after
        self._nfc = nfc
        self._lengths = lengths  # UTF-8 bytes per id

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        if self._nfc:
            text = unicodedata.normalize("NFC", text)
        if any(c in text for c in self._starts):
            ranks = self._encode(text, allowed_special=self._specials)
        else:
            ranks = self._ordinary(text)
        ids = ranks if self._to_id is None else list(map(self._to_id.__getitem__, ranks))
        if add_special_tokens and (self._before or self._after):
            return [*self._before, *ids, *self._after]
        return ids

    def encode_split(
        self, text: str, cuts: Sequence[int], add_special_tokens: bool
    ) -> list[list[int]] | None:
        """``text`` encoded once and cut at the character offsets ``cuts`` (increasing, inside
        it): what encoding each piece alone gives, for a tokenizer that never merges across
        them, with one call's overhead. None when a cut falls inside a token."""
        if self._nfc and not unicodedata.is_normalized("NFC", text):
            return None
        ids = self.encode(text, False)
        if text.isascii():
            offsets: Iterable[int] = cuts
        else:
            offsets = accumulate(
                len(text[a:b].encode()) for a, b in zip([0, *cuts], cuts, strict=False)
            )
        ends = list(accumulate(map(self._lengths.__getitem__, ids)))
        out: list[list[int]] = []
        prev = 0
        for off in offsets:
            j = bisect_left(ends, off, prev)
            if j == len(ends) or ends[j] != off:
                return None
            out.append(ids[prev : j + 1])
            prev = j + 1
        out.append(ids[prev:])
        if add_special_tokens and (self._before or self._after):
            out[0][:0] = self._before
            out[-1].extend(self._after)
        return out


def fast_encoder(spec: dict[str, Any], original: Any) -> tuple[FastBPE | None, str]:
    """A :class:`FastBPE` for the parsed ``tokenizer.json`` ``spec`` (``original``: the same
    file loaded by ``tokenizers``, to read its post-processor off), or None and why not."""
    try:
        import tiktoken
    except ImportError:
        return None, "tiktoken is not installed"
    shape = _shape(spec)
    if isinstance(shape, str):
        return None, shape
    pattern, nfc = shape
    model = spec["model"]
    chars = byte_level_chars()
    vocab: dict[str, int] = model["vocab"]
    added = {t["content"]: int(t["id"]) for t in spec.get("added_tokens") or []}
    if any(
        t.get("lstrip") or t.get("rstrip") or t.get("single_word")
        for t in spec.get("added_tokens") or []
    ):
        return None, "an added token strips spaces or matches single words"

    def raw(token: str) -> bytes | None:
        try:
            return bytes(chars[c] for c in token)
        except KeyError:
            return None

    # tiktoken merges the adjacent pair whose product has the lowest rank, the file the pair
    # listed first in ``merges``: ranks must order the products as ``merges`` does. A single
    # byte's rank is only its output. When the file's ids already order the products so
    # (vocabularies built by BPE training, tiktoken-born ones), the ids are the ranks;
    # otherwise ranks follow ``merges`` and ``to_id`` maps them back.
    raws = {token: raw(token) for token in vocab}  # each entry's bytes (None: not byte-level)
    singles: dict[bytes, int] = {}
    for token, tid in vocab.items():
        b = raws[token]
        if b is not None and len(b) == 1 and token not in added:
            singles[b] = tid
    if len(singles) != 256:
        return None, "the vocabulary lacks some of the 256 byte tokens"
    products: dict[bytes, int] = {}
    for merge in model.get("merges") or []:
        left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
        product = vocab.get(left + right)
        b = raws.get(left + right)
        if product is None or b is None:
            return None, f"merge {left!r} {right!r} makes no vocabulary entry"
        products.setdefault(b, product)
    ids = list(products.values())
    to_id: list[int] | None = None
    if all(a < b for a, b in pairwise(ids)) and not (set(ids) & set(singles.values())):
        ranks = {**singles, **products}
        special_ranks = dict(added)
    else:
        ranks = {b: b[0] for b in singles}
        to_id = [0] * 256
        for b, tid in singles.items():
            to_id[b[0]] = tid
        for b, tid in products.items():
            ranks[b] = len(to_id)
            to_id.append(tid)
        special_ranks = {}
        for content, tid in added.items():
            special_ranks[content] = len(to_id)
            to_id.append(tid)
    try:
        encoding = tiktoken.Encoding(
            "tokenizer.json",
            pat_str=pattern,
            mergeable_ranks=ranks,
            special_tokens=special_ranks,
        )
    except Exception as err:  # tiktoken raises ValueError or a Rust panic's own type
        return None, f"tiktoken refused the vocabulary: {err}"
    before, after = _post_tokens(original)
    if before is None or after is None:
        return None, "the post-processor does more than add fixed tokens"
    lengths = [0] * (max([*vocab.values(), *added.values()]) + 1)
    for token, tid in vocab.items():
        lengths[tid] = len(raws[token] or b"")
    for content, tid in added.items():
        lengths[tid] = len(content.encode())
    return FastBPE(encoding, to_id, before, after, nfc, lengths), ""


def _shape(spec: dict[str, Any]) -> tuple[str, bool] | str:
    """(pre-tokenizer expression, NFC?) when ``spec`` is a byte-level BPE of the supported
    shape (see the module docstring), else why not."""
    model = spec.get("model") or {}
    if model.get("type") != "BPE":
        return f"model {model.get('type')!r} is not BPE"
    if model.get("dropout") or model.get("continuing_subword_prefix"):
        return "BPE with dropout or a subword prefix"
    if model.get("end_of_word_suffix") or model.get("byte_fallback"):
        return "BPE with an end-of-word suffix or byte fallback"
    norm = spec.get("normalizer")
    if norm is not None and norm.get("type") != "NFC":
        return f"normalizer {norm.get('type')!r}"
    pre = spec.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers") if pre.get("type") == "Sequence" else [pre]
    if not steps or steps[-1].get("type") != "ByteLevel" or steps[-1].get("add_prefix_space"):
        return "the pre-tokenizer is not byte-level (without a prefix space)"
    if len(steps) == 1 and steps[0].get("use_regex", True):
        return GPT2_PATTERN, norm is not None
    if len(steps) == 2 and not steps[1].get("use_regex", True):
        split = steps[0]
        regex = (split.get("pattern") or {}).get("Regex")
        if (
            split.get("type") == "Split"
            and regex
            and split.get("behavior") == "Isolated"
            and not split.get("invert")
        ):
            return regex, norm is not None
    return "the pre-tokenizer is not one expression then ByteLevel"


def _post_tokens(original: Any) -> tuple[list[int] | None, list[int] | None]:
    """The fixed ids the post-processor puts before and after a text, or None, None."""
    probe = "a b"
    plain = original.encode(probe, add_special_tokens=False).ids
    full = original.encode(probe, add_special_tokens=True).ids
    for i in range(len(full) - len(plain) + 1):
        if full[i : i + len(plain)] == plain:
            before, after = full[:i], full[i + len(plain) :]
            empty = original.encode("", add_special_tokens=True).ids
            return (before, after) if empty == before + after else (None, None)
    return None, None
