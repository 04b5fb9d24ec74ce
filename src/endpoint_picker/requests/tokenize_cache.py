"""Tokenize long prompts by cached chunks, so a shared system prompt is tokenized once.

Tokenizing an 8k-token prompt costs milliseconds (docs/precise-prefix.md), while most of it is
usually a system prompt that thousands of requests share. :class:`ChunkedTokenizer` cuts the
text into chunks of about ``chunk_chars`` characters, always at a single space between two
non-space characters, and chooses each cut from the text before it alone, so two prompts that
share a prefix share their leading chunks. Each chunk's ids are cached (bounded LRU, stored as
compact ``array('I')``); only the chunks not seen before, typically the last one, are tokenized.

This is exact when the tokenizer never merges across such a space: the simulator's tokenizer
(a space always ends a token), and byte-level or Metaspace BPE tokenizers, whose pre-tokenizer
splits words with their leading space. It is not exact for a tokenizer that adds trailing
special tokens, or one without a whitespace pre-tokenizer. So the wrapper checks itself: the
first ``verify_first`` prompts, and then one in ``verify_every``, are also tokenized whole, and
at the first difference chunking is switched off for good (with a warning).
"""

from __future__ import annotations

import logging
from array import array
from collections import OrderedDict
from collections.abc import Sequence

from endpoint_picker.requests.tokenize import TokenizerBackend

log = logging.getLogger(__name__)


class ChunkedTokenizer:
    """A :class:`TokenizerBackend` with a chunk cache in front (see the module docstring)."""

    def __init__(
        self,
        backend: TokenizerBackend,
        chunk_chars: int = 2048,
        max_chunks: int = 4096,
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
        self._cache: OrderedDict[tuple[str, bool], array[int]] = OrderedDict()

    def encode_ids(self, ids: Sequence[int]) -> list[int]:
        return self.backend.encode_ids(ids)

    def encode(self, text: str, add_special_tokens: bool = True) -> Sequence[int]:
        """Token ids; an ``array('I')`` when chunked (block keys hash its bytes as they are)."""
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
            if list(ids) != whole:
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
        while True:
            pos = text.find(" ", start + self.chunk_chars)
            while 0 < pos < n - 1 and (text[pos - 1].isspace() or text[pos + 1].isspace()):
                pos = text.find(" ", pos + 1)
            if pos <= 0 or pos >= n - 1:
                return out
            out.append(pos)
            start = pos

    def _encode_chunked(self, text: str, add_special: bool) -> array[int]:
        ids: array[int] = array("I")
        start = 0
        cache = self._cache
        for cut in self.cuts(text):
            chunk = text[start:cut]
            key = (chunk, start == 0)  # the text itself: exact, and str hashing is C
            found = cache.get(key)
            if found is None:
                found = self._tokenize(chunk, add_special and start == 0)
                cache[key] = found
                if len(cache) > self.max_chunks:
                    cache.popitem(last=False)
            else:
                cache.move_to_end(key)
                self.chunk_hits += 1
            ids.extend(found)
            start = cut
        ids.extend(self._tokenize(text[start:], add_special and start == 0))
        return ids

    def _tokenize(self, chunk: str, add_special: bool) -> array[int]:
        return array("I", self.backend.encode(chunk, add_special))
