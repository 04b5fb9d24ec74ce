"""Tokenize long prompts as a chain of cached segments, so a shared prefix is tokenized once.

Tokenizing an 8k-token prompt costs milliseconds (docs/precise-prefix.md), while most of it is
usually a system prompt that thousands of requests share. As llm-d's prefix store does,
:class:`ChunkedTokenizer` cuts the text into chunks of about ``chunk_chars`` characters, always at
a single space between two non-space characters, and chooses each cut from the text before it
alone, so two prompts that share a prefix share their leading chunks.

The cache is a chain: a chunk's entry (a :class:`Segment`) is found by its parent segment and its
own text, so a segment stands for the *whole* prefix up to its end, not just its chunk. That is
what lets a consumer memoize per segment what depends on the whole prefix: the precise producer
keeps each segment's block keys there (``Segment.memo``), so the keys of a shared system prompt
are hashed once too. Only chunks not seen after the same prefix before, typically the last one
or two, are tokenized. Entries are a bounded LRU (``max_chunks``), ids stored as ``array('I')``.

**Exactness.** Tokenizing chunk by chunk equals tokenizing the whole text when the tokenizer
never merges across such a space: the simulator's tokenizer (a space always ends a token), and
byte-level or Metaspace BPE tokenizers, whose pre-tokenizer splits words with their leading space.
It is not exact for a tokenizer that adds trailing special tokens, or one without a whitespace
pre-tokenizer. So the wrapper checks itself: the first ``verify_first`` prompts, and then one in
``verify_every``, are also tokenized whole, and at the first difference chunking is switched off
for good (with a warning). tests/unit/test_tokenize_cache.py checks the equality on a trained
byte-level BPE and the simulator's tokenizer.
"""

from __future__ import annotations

import itertools
import logging
from array import array
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING

from endpoint_picker.requests.tokenize import TokenizerBackend

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    _IdArray = array[int]
else:
    _IdArray = array


class Segment:
    """One cached chunk after one exact prefix: its ids and where they end in the prompt."""

    __slots__ = ("end", "ids", "memo", "serial", "start")

    def __init__(self, serial: int, ids: array[int], start: int) -> None:
        self.serial = serial  # unique for the cache's lifetime: children are keyed by it
        self.ids = ids
        self.start = start  # tokens before this segment
        self.end = start + len(ids)
        # Block keys of the blocks ending in this segment, per (block size, chain root): the
        # precise producer's memo (precise_index.chain_keys), valid for this exact prefix only.
        self.memo: dict[tuple[int, int], array[int]] | None = None


class SegmentedIds(_IdArray):
    """Token ids (``array('I')``) with the cached segments that cover their start, in order;
    the ids after the last segment's ``end`` were tokenized for this prompt only."""

    segments: tuple[Segment, ...] = ()


class ChunkedTokenizer:
    """A :class:`TokenizerBackend` with a segment cache in front (see the module docstring)."""

    def __init__(
        self,
        backend: TokenizerBackend,
        chunk_chars: int = 1024,
        max_chunks: int = 16384,
        verify_first: int = 16,
        verify_every: int = 512,
    ) -> None:
        self.backend = backend
        self.name = backend.name
        self.chunk_chars = chunk_chars
        self.max_chunks = max_chunks
        self.verify_first = verify_first
        self.verify_every = verify_every
        self.enabled = True
        self.calls = 0
        self.chunk_hits = 0
        self._serials = itertools.count(1)
        self._cache: OrderedDict[tuple[int, bool, str], Segment] = OrderedDict()

    def encode_ids(self, ids: Sequence[int]) -> list[int]:
        return self.backend.encode_ids(ids)

    def encode(self, text: str, add_special_tokens: bool = True) -> Sequence[int]:
        """Token ids; a :class:`SegmentedIds` when chunked."""
        if not self.enabled or len(text) < 2 * self.chunk_chars:
            return self.backend.encode(text, add_special_tokens)
        self.calls += 1
        try:
            ids = self._encode_chunked(text, add_special_tokens)
        except OverflowError:  # ids beyond 32 bits: no compact storage, so no cache
            self.enabled = False
            self._cache.clear()
            return self.backend.encode(text, add_special_tokens)
        if self.calls <= self.verify_first or self.calls % self.verify_every == 0:
            whole = self.backend.encode(text, add_special_tokens)
            if list(ids) != list(whole):
                self.enabled = False
                self._cache.clear()
                log.warning(
                    "tokenizer %s: chunked tokenization differs from whole-prompt tokenization; "
                    "chunk cache off",
                    self.name,
                )
                return whole
        return ids

    def cuts(self, text: str) -> list[int]:
        """Chunk boundaries: each the first single space between non-space characters at
        least ``chunk_chars`` after the previous one (the last chunk runs to the end)."""
        out: list[int] = []
        start = 0
        n = len(text)
        find = text.find
        step = self.chunk_chars
        while True:
            pos = find(" ", start + step)
            while 0 < pos < n - 1 and (text[pos - 1].isspace() or text[pos + 1].isspace()):
                pos = find(" ", pos + 1)
            if pos <= 0 or pos >= n - 1:
                return out
            out.append(pos)
            start = pos

    def _encode_chunked(self, text: str, add_special: bool) -> SegmentedIds:
        ids = SegmentedIds("I")
        segments: list[Segment] = []
        cache = self._cache
        parent = 0
        start = 0
        tokens = 0
        for cut in self.cuts(text):
            chunk = text[start:cut]
            key = (parent, add_special, chunk)  # the text itself: exact, and str hashing is C
            seg = cache.get(key)
            if seg is None:
                chunk_ids = array("I", self.backend.encode(chunk, add_special and start == 0))
                seg = cache[key] = Segment(next(self._serials), chunk_ids, tokens)
                if len(cache) > self.max_chunks:
                    cache.popitem(last=False)
            else:
                cache.move_to_end(key)
                self.chunk_hits += 1
            segments.append(seg)
            ids.extend(seg.ids)
            tokens = seg.end
            parent = seg.serial
            start = cut
        ids.extend(array("I", self.backend.encode(text[start:], add_special and start == 0)))
        ids.segments = tuple(segments)
        return ids
