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
are hashed once too. Entries are a bounded LRU (``max_chunks``), ids stored as ``array('I')``.

Two sizes of chunk keep both the number of lookups and the re-tokenized text small: coarse
chunks of ``chunk_chars`` (4 KB) cover the bulk of a prompt in a few lookups; a coarse chunk not
seen after its prefix before (the one where a shared system prompt ends and a new question
begins), and the text after the last coarse cut, are cut again into fine chunks of
``fine_chars`` (256 characters), each cached under the same chain rule. So a new question after
a known system prompt costs tokenizing the question and at most ``fine_chars`` before it.

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
        chunk_chars: int = 4096,
        fine_chars: int = 256,
        max_chunks: int = 16384,
        verify_first: int = 16,
        verify_every: int = 512,
    ) -> None:
        self.backend = backend
        self.name = backend.name
        self.chunk_chars = chunk_chars
        self.fine_chars = min(fine_chars, chunk_chars)
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
        if not self.enabled or len(text) < 4 * self.fine_chars:
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
        """The coarse chunk boundaries of ``text`` (see :func:`cuts`)."""
        return cuts(text, self.chunk_chars, 0, len(text))

    def _lookup(self, parent: int, add_special: bool, chunk: str) -> Segment | None:
        seg = self._cache.get((parent, add_special, chunk))
        if seg is not None:
            self._cache.move_to_end((parent, add_special, chunk))
            self.chunk_hits += 1
        return seg

    def _store(
        self, parent: int, add_special: bool, chunk: str, ids: array[int], start: int
    ) -> Segment:
        seg = self._cache[(parent, add_special, chunk)] = Segment(next(self._serials), ids, start)
        if len(self._cache) > self.max_chunks:
            self._cache.popitem(last=False)
        return seg

    def _fine(
        self, text: str, lo: int, hi: int, parent: int, tokens: int, add_special: bool, last: bool
    ) -> tuple[list[Segment], int]:
        """Segments for ``text[lo:hi]`` cut into fine chunks, each found or tokenized and cached,
        and where they end: at ``hi``, or when ``last`` (the prompt's own tail, never cached) at
        the last fine cut."""
        out: list[Segment] = []
        start = lo
        bounds = cuts(text, self.fine_chars, lo, hi)
        if not last:
            bounds.append(hi)
        for cut in bounds:
            chunk = text[start:cut]
            seg = self._lookup(parent, add_special, chunk)
            if seg is None:
                ids = array("I", self.backend.encode(chunk, add_special and start == 0))
                seg = self._store(parent, add_special, chunk, ids, tokens)
            out.append(seg)
            parent, tokens, start = seg.serial, seg.end, cut
        return out, start

    def _encode_chunked(self, text: str, add_special: bool) -> SegmentedIds:
        """Coarse chunks first; a coarse chunk seen for the first time after this prefix is
        built from fine chunks (so a new question re-tokenizes at most ``fine_chars`` of the
        text before it), and the text after the last coarse cut is cut fine as well."""
        ids = SegmentedIds("I")
        segments: list[Segment] = []
        parent = 0
        start = 0
        tokens = 0
        n = len(text)
        for cut in cuts(text, self.chunk_chars, 0, n):
            chunk = text[start:cut]
            seg = self._lookup(parent, add_special, chunk)
            if seg is None:
                pieces, _ = self._fine(text, start, cut, parent, tokens, add_special, last=False)
                joined: array[int] = array("I")
                for piece in pieces:
                    joined.extend(piece.ids)
                seg = self._store(parent, add_special, chunk, joined, tokens)
            segments.append(seg)
            ids.extend(seg.ids)
            parent, tokens, start = seg.serial, seg.end, cut
        pieces, start = self._fine(text, start, n, parent, tokens, add_special, last=True)
        for seg in pieces:
            segments.append(seg)
            ids.extend(seg.ids)
        ids.extend(array("I", self.backend.encode(text[start:], add_special and start == 0)))
        ids.segments = tuple(segments)
        return ids


def cuts(text: str, step: int, lo: int, hi: int) -> list[int]:
    """Chunk boundaries in ``text[lo:hi]``: each the first single space between non-space
    characters at least ``step`` after the previous one (or ``lo``), and before ``hi - 1``.
    Each depends only on the text before it (and the character after it)."""
    out: list[int] = []
    start = lo
    find = text.find
    end = hi - 1
    while True:
        pos = find(" ", start + step, end)
        while pos > 0 and (text[pos - 1].isspace() or text[pos + 1].isspace()):
            pos = find(" ", pos + 1, end)
        if pos <= 0:
            return out
        out.append(pos)
        start = pos
