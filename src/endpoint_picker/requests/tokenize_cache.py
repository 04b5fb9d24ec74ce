"""Tokenize long prompts as a chain of cached segments, so a shared prefix is tokenized once.

Tokenizing an 8k-token prompt costs milliseconds (docs/precise-prefix.md), while most of it is
usually a system prompt that thousands of requests share. As llm-d's prefix store does,
:class:`ChunkedTokenizer` cuts the text into chunks of about ``chunk_chars`` characters, always at
a single space between two non-space characters, and chooses each cut from the text before it
alone, so two prompts that share a prefix share their leading chunks.

The cache is a chain: a chunk's entry (a :class:`Segment`) is found by its parent segment and its
own text (its xxh3-64 and length: the cache keeps no text), so a segment stands for the *whole*
prefix up to its end, not just its chunk. That is what lets a consumer memoize per segment what
depends on the whole prefix: the precise producer keeps each segment's block keys there
(``Segment.memo``), so the keys of a shared system prompt are hashed once too. Entries are a
bounded LRU (``max_chunks``), ids stored as ``array('I')``. Two different chunks after the same
parent with equal 64-bit hashes and lengths would be confused; the self-check below would see it.

Two sizes of chunk keep both the number of lookups and the re-tokenized text small: coarse
chunks of ``chunk_chars`` (4 KB) cover the bulk of a prompt in a few lookups; a coarse chunk not
seen after its prefix before (the one where a shared system prompt ends and a new question
begins), and the text after the last coarse cut, are cut again into fine chunks of
``fine_chars`` (256 characters), each cached under the same chain rule. So a new question after
a known system prompt costs tokenizing the question and at most ``fine_chars`` before it.
Everything after the first chunk not found is new (its children are keyed by a new segment), so
it is tokenized in one call and cut at the chunk boundaries when the backend can cut its result
(``encode_split``: the fast BPE encoder, requests/tokenize_fast.py), else chunk by chunk.

**Resume points.** Most prompts that share a system prompt diverge from the cache at the same
place: the last fine cut before their own question. Walking the chain up to there costs a
lookup, a digest and a cut search per chunk (about twenty for an 8k-token prompt). So each walk
remembers where it stopped (its *resume point*: the offset, the xxh3-64 of the text before it,
and the chain found up to it), and the next prompt first checks the last few resume points by
one digest of its own text up to each. A match resumes the walk there, with the same result as
walking: the cuts before the point depend only on that text; every entry on the way is looked up
again (and so kept recent in the LRU) and the resume point is dropped when one was evicted; and
when the coarse chunk the point lies in has since been stored whole, the walk takes the normal
way, which would find that coarse entry.

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
import re
from array import array
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, cast

import xxhash

from endpoint_picker.requests.tokenize import TokenizerBackend, check_due

_xxh3 = xxhash.xxh3_64_intdigest

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
        self.memo: dict[tuple[int, int], tuple[int, ...]] | None = None


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
        resume_tries: int = 4,
    ) -> None:
        self.backend = backend
        self.name = backend.name
        self.chunk_chars = chunk_chars
        self.fine_chars = min(fine_chars, chunk_chars)
        self.max_chunks = max_chunks
        self.verify_first = verify_first
        self.verify_every = verify_every
        self.resume_tries = resume_tries  # the most recent resume points a prompt checks
        self.enabled = True
        self.calls = 0
        self.chunk_hits = 0
        self.resumes = 0  # walks resumed from a resume point
        self._serials = itertools.count(1)
        # (parent serial, add special tokens, xxh3-64 of the chunk's UTF-8, its length)
        self._cache: OrderedDict[tuple[int, bool, int, int], Segment] = OrderedDict()
        # Resume points, most recent last: (offset, add special, xxh3-64 of the text before
        # it) -> the walk up to there (see the module docstring).
        self._resume: OrderedDict[tuple[int, bool, int], _Walk] = OrderedDict()

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
        if check_due(self.calls, self.verify_first, self.verify_every):
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

    def _lookup(self, key: tuple[int, bool, int, int]) -> Segment | None:
        seg = self._cache.get(key)
        if seg is not None:
            self._cache.move_to_end(key)
            self.chunk_hits += 1
        return seg

    def _store(self, key: tuple[int, bool, int, int], ids: array[int], start: int) -> Segment:
        seg = self._cache[key] = Segment(next(self._serials), ids, start)
        if len(self._cache) > self.max_chunks:
            self._cache.popitem(last=False)
        return seg

    def _encode_chunked(self, text: str, add_special: bool) -> SegmentedIds:
        """Walk the cached chain (coarse chunks, then fine chunks inside the first coarse chunk
        not found, or inside the tail after the last coarse cut) up to the first miss, from a
        resume point when one matches. A chunk is keyed by its parent, so everything after a
        miss is new: the rest of the text is tokenized at once, in one backend call where the
        backend can cut its result (``encode_split``), and cut into new fine chunks; each new
        coarse chunk is also stored as the join of its fine chunks. The text after the tail's
        last fine cut is this prompt's own and is not cached."""
        n = len(text)
        digest = _digester(text)
        walk = self._resumed(text, digest, add_special)
        if walk is None:
            walk = _Walk()
            coarse = cuts(text, self.chunk_chars, 0, n)
            parent = tokens = start = 0
            for cut in coarse:  # coarse chunks found
                key = (parent, add_special, digest(start, cut), cut - start)
                seg = self._lookup(key)
                if seg is None:
                    break
                walk.segments.append(seg)
                walk.keys.append(key)
                parent, tokens, start = seg.serial, seg.end, cut
            walk.coarse, walk.top = coarse[: len(walk.segments)], (parent, tokens, start)
            resumed_at = -1
        else:
            parent, tokens, start = walk.top
            coarse = walk.coarse + cuts(text, self.chunk_chars, start, n)
            if walk.pieces:
                last = walk.pieces[-1]
                parent, tokens, start = last.serial, last.end, walk.fine[-1]
            resumed_at = start
        k, top = len(walk.coarse), walk.top
        segments: list[Segment] = list(walk.segments)
        # The open chunk (coarse chunk k, or the tail): its fine chunks found.
        pieces: list[Segment] = list(walk.pieces)
        end = coarse[k] if k < len(coarse) else n
        fine = walk.fine + cuts(text, self.fine_chars, start, end)
        found = len(walk.fine)
        for cut in [*fine[found:], end] if end < n else fine[found:]:
            key = (parent, add_special, digest(start, cut), cut - start)
            seg = self._lookup(key)
            if seg is None:
                break
            pieces.append(seg)
            walk.keys.append(key)
            parent, tokens, start = seg.serial, seg.end, cut
            found += 1
        if 0 < start != resumed_at and found < len(fine):  # stopped at a fine cut: remember it
            point = (start, add_special, digest(0, start))
            walk = _Walk(walk.coarse, top, segments[:], pieces[:], fine[:found], walk.keys)
            self._remember(point, walk)
        # Everything from ``start`` is new: every fine cut, and where each coarse chunk ends.
        plan: list[tuple[int, bool]] = [(cut, False) for cut in fine[found:]]
        if k < len(coarse):
            plan.append((coarse[k], True))
            for j in range(k + 1, len(coarse) + 1):  # the later coarse chunks, then the tail
                end = coarse[j] if j < len(coarse) else n
                plan += [(cut, False) for cut in cuts(text, self.fine_chars, coarse[j - 1], end)]
                if j < len(coarse):
                    plan.append((end, True))
        if plan and plan[0][0] == start:  # the open chunk was found whole, fine chunk by fine
            plan.pop(0)
            parent, tokens = self._close(digest, top, pieces, segments, add_special, start)
            top = (parent, tokens, start)
        new = self._tokenize(text, start, [cut for cut, _ in plan], add_special)
        for (cut, closes), ids in zip(plan, new, strict=False):
            key = (parent, add_special, digest(start, cut), cut - start)
            seg = self._store(key, array("I", ids), tokens)
            pieces.append(seg)
            parent, tokens, start = seg.serial, seg.end, cut
            if closes:
                parent, tokens = self._close(digest, top, pieces, segments, add_special, cut)
                top = (parent, tokens, cut)
        segments += pieces
        out = SegmentedIds("I")
        for seg in segments:
            out.extend(seg.ids)
        out.extend(array("I", new[-1]))
        out.segments = tuple(segments)
        return out

    def _resumed(
        self, text: str, digest: Callable[[int, int], int], add_special: bool
    ) -> _Walk | None:
        """The walk up to the latest of the last few resume points that ``text`` shares,
        its entries looked up again (as walking would); None when none applies."""
        n = len(text)
        tried = 0
        for point in reversed(self._resume):
            at, special, _ = point
            if special != add_special or at + 1 >= n:
                continue
            tried += 1
            if tried > self.resume_tries:
                return None
            if _CUT.match(text, at) is None or point != (at, special, digest(0, at)):
                continue
            walk = self._resume[point]
            parent, _, start = walk.top
            # The coarse chunk the point lies in, stored whole since: walking finds that entry.
            nxt = _CUT.search(text, start + self.chunk_chars, n)
            if nxt is not None:
                e = nxt.start()
                if (parent, add_special, digest(start, e), e - start) in self._cache:
                    del self._resume[point]
                    return None
            cache = self._cache
            try:
                for key in walk.keys:
                    cache.move_to_end(key)
            except KeyError:  # an entry on the way was evicted: walk the normal way
                del self._resume[point]
                return None
            self._resume.move_to_end(point)
            self.chunk_hits += len(walk.keys)
            self.resumes += 1
            return replace(walk, keys=list(walk.keys))
        return None

    def _remember(self, point: tuple[int, bool, int], walk: _Walk) -> None:
        self._resume[point] = walk
        self._resume.move_to_end(point)
        if len(self._resume) > RESUME_POINTS:
            self._resume.popitem(last=False)

    def _close(
        self,
        digest: Callable[[int, int], int],
        top: tuple[int, int, int],
        pieces: list[Segment],
        segments: list[Segment],
        add_special: bool,
        end: int,
    ) -> tuple[int, int]:
        """Store the coarse chunk that starts at ``top`` (parent, tokens, offset) and ends at
        ``end`` as the join of its fine ``pieces``, which move to ``segments`` (their key
        memos serve the next prompt that shares only part of this chunk); the coarse entry's
        serial and end are the next chunk's parent and start."""
        parent, tokens, start = top
        joined: array[int] = array("I")
        for piece in pieces:
            joined.extend(piece.ids)
        seg = self._store((parent, add_special, digest(start, end), end - start), joined, tokens)
        segments += pieces
        pieces.clear()
        return seg.serial, seg.end

    def _tokenize(
        self, text: str, start: int, bounds: list[int], add_special: bool
    ) -> list[Sequence[int]]:
        """Ids of ``text[start:]`` cut at ``bounds`` (absolute offsets): one piece per bound,
        then the rest. One backend call when it can cut (``encode_split``), else one a piece."""
        split = getattr(self.backend, "encode_split", None)
        if split is not None and bounds:
            pieces = split(text[start:], [b - start for b in bounds], add_special and start == 0)
            if pieces is not None:
                return cast("list[Sequence[int]]", pieces)
        out: list[Sequence[int]] = []
        for lo, hi in zip([start, *bounds], [*bounds, len(text)], strict=True):
            out.append(self.backend.encode(text[lo:hi], add_special and lo == 0))
        return out


RESUME_POINTS = 64  # resume points kept (each checked costs a prompt one digest of its text)


@dataclass(slots=True)
class _Walk:
    """A walk of the chain up to a point: the coarse cuts found (one per coarse segment), the
    open coarse chunk's start ``top`` (parent serial, tokens, offset), the coarse segments and
    the fine pieces found in the open chunk with their cuts, and the cache keys of every entry
    found, in walk order."""

    coarse: list[int] = field(default_factory=list)
    top: tuple[int, int, int] = (0, 0, 0)
    segments: list[Segment] = field(default_factory=list)
    pieces: list[Segment] = field(default_factory=list)
    fine: list[int] = field(default_factory=list)
    keys: list[tuple[int, bool, int, int]] = field(default_factory=list)


def cuts(text: str, step: int, lo: int, hi: int) -> list[int]:
    """Chunk boundaries in ``text[lo:hi]``: each the first single space between non-space
    characters at least ``step`` after the previous one (or ``lo``), and before ``hi - 1``.
    Each depends only on the text before it (and the character after it)."""
    out: list[int] = []
    search = _CUT.search
    start = lo
    while (found := search(text, start + step, hi)) is not None:
        start = found.start()
        out.append(start)
    return out


# A single space between two non-space characters (the lookbehind sees before ``pos``; the
# lookahead stops at ``endpos``).
_CUT = re.compile(r"(?<=\S) (?=\S)")


def _digester(text: str) -> Callable[[int, int], int]:
    """``digest(a, b)``: the xxh3-64 of ``text[a:b]`` in UTF-8 (ASCII text: no copies)."""
    if text.isascii():
        view = memoryview(text.encode("ascii"))
        return lambda a, b: _xxh3(view[a:b])
    return lambda a, b: _xxh3(text[a:b].encode("utf-8", "surrogatepass"))
