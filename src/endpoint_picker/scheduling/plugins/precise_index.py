"""The precise prefix index: request keys recomputed from tokens, and which endpoint holds each.

**Keys.** As llm-d-kv-cache's ``ChunkedTokenDatabase``: a prompt's full blocks of
``block_size`` tokens form a hash chain (no partial last block); block *i*'s key hashes its
parent's key with its own token ids, and the chain starts from a root that hashes the
``hashSeed`` and the model name. The EPP computes these keys itself, from the request's tokens
on the lookup side and from the ``token_ids`` of ``BlockStored`` events on the ingestion side,
so the engine's own hash function and seed never matter: engine hashes are only opaque names
for mapping a removal back to the keys it covered. llm-d hashes CBOR with FNV-64a; we chain
xxh3-64 (the parent key is the hash seed, the token ids are hashed as little-endian uint32),
which costs a fraction as much in Python and is never compared with another process's keys.

**Memory bound.** At most ``size`` keys (llm-d's ``inMemoryConfig.size``), evicted least
recently *written* first, and at most ``pod_cache_size`` endpoints per key
(``podCacheSize``): memory is O(size x pod_cache_size) whatever the servers send.

**Speculative entries** carry an expiry time; a confirmed (event-backed) entry has none, and a
``BlockStored`` confirms a speculative entry in place. Speculative adds wait in a heap by
expiry, swept at each lookup: an entry still carrying the expiry it was added with is dropped
then (one confirmed or renewed since is kept).
"""

from __future__ import annotations

import heapq
import itertools
import math
from array import array
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from itertools import groupby, repeat

import xxhash

_xxh3 = xxhash.xxh3_64_intdigest
CONFIRMED = math.inf


def root_key(hash_seed: str, model: str) -> int:
    """The chain's starting point for ``model`` (llm-d's ``getInitHash``)."""
    return _xxh3(f"{hash_seed}\x00{model}".encode())


def _as_bytes(token_ids: Sequence[int]) -> bytes:
    if isinstance(token_ids, array) and token_ids.typecode == "I":
        return token_ids.tobytes()  # the chunk cache's ids: no per-token conversion
    try:
        return array("I", token_ids).tobytes()
    except OverflowError:  # ids beyond 32 bits (never seen in practice): widen
        return array("Q", token_ids).tobytes()


def block_keys(token_ids: Sequence[int], block_size: int, parent: int) -> list[int]:
    """Keys of the full blocks of ``token_ids``, chained from ``parent``."""
    n = len(token_ids) // block_size
    if n == 0:
        return []
    data = _as_bytes(token_ids[: n * block_size])
    step = len(data) // n
    out: list[int] = []
    for start in range(0, len(data), step):
        parent = _xxh3(data[start : start + step], parent)
        out.append(parent)
    return out


def chain_keys(token_ids: Sequence[int], block_size: int, parent: int) -> list[int]:
    """:func:`block_keys`, reusing what earlier prompts with the same prefix computed.

    Ids from the chunked tokenizer (requests/tokenize_cache.py) carry the cached segments that
    cover their start, each standing for one exact text prefix. A segment memoizes the keys of
    the blocks that *end* inside it (its ``memo``, per block size and chain root), so only the
    blocks after the last memoized segment are hashed; the result equals :func:`block_keys`.
    The memo holds the key ints themselves (a tuple): joining them copies pointers, and the
    lookup then hashes ints that exist already, where an ``array('Q')`` would box each again.
    """
    segments = getattr(token_ids, "segments", ())
    if not segments:
        return block_keys(token_ids, block_size, parent)
    memo_key = (block_size, parent)
    keys: list[int] = []
    reused = 0
    for seg in segments:
        own = seg.memo.get(memo_key) if seg.memo is not None else None
        if own is None:
            break
        keys.extend(own)
        reused += 1
    done = len(keys)
    rest = block_keys(token_ids[done * block_size :], block_size, keys[-1] if keys else parent)
    for seg in segments[reused:]:
        lo, hi = seg.start // block_size, seg.end // block_size
        if seg.memo is None:
            seg.memo = {}
        seg.memo[memo_key] = tuple(rest[lo - done : hi - done])
    keys.extend(rest)
    return keys


class BlockIndex:
    """Request key -> {endpoint name: expiry}; bounded as the module docstring says."""

    def __init__(self, size: int = 100_000_000, pod_cache_size: int = 10) -> None:
        if size < 1 or pod_cache_size < 1:
            raise ValueError("size and pod_cache_size must be >= 1")
        self.size = size
        self.pod_cache_size = pod_cache_size
        self._keys: OrderedDict[int, dict[str, float]] = OrderedDict()  # key -> holders
        # key -> its holders' bits (:meth:`bit`), kept beside the holders so that a lookup
        # reads one small int per key (no holder dict to visit) and compares neighbouring
        # keys' holders as two ints.
        self._masks: dict[int, int] = {}
        self._by_endpoint: dict[str, set[int]] = {}
        # One bit per endpoint that holds keys; a cleared endpoint's bit is reused.
        self._bits: dict[str, int] = {}
        self._names: dict[int, str] = {}
        self._free_bits: list[int] = []
        self.evictions = 0
        self.admissions = 0  # keys written for an endpoint that did not hold them
        # Speculative adds, earliest expiry first (expiry, order, keys, endpoint): see expire().
        self._speculative: list[tuple[float, int, Sequence[int], str]] = []
        self._order = itertools.count()

    def __len__(self) -> int:
        return len(self._keys)

    def endpoint_keys(self, endpoint: str) -> int:
        return len(self._by_endpoint.get(endpoint, ()))

    def bit(self, endpoint: str) -> int:
        """``endpoint``'s bit in a key's holder mask (assigned on first use)."""
        bit = self._bits.get(endpoint)
        if bit is None:
            bit = self._free_bits.pop() if self._free_bits else 1 << len(self._bits)
            self._bits[endpoint] = bit
            self._names[bit] = endpoint
        return bit

    def _drop(self, key: int, holders: dict[str, float], endpoint: str) -> None:
        """``endpoint`` no longer holds ``key``; a key nobody holds leaves the index."""
        del holders[endpoint]
        if holders:
            self._masks[key] &= ~self._bits[endpoint]
        else:
            del self._keys[key]
            del self._masks[key]

    def add(self, keys: Iterable[int], endpoint: str, expiry: float = CONFIRMED) -> None:
        """Record ``endpoint`` as holding ``keys``; a speculative add never downgrades a
        confirmed entry, a confirmed add upgrades a speculative one."""
        owned = self._by_endpoint.setdefault(endpoint, set())
        bit = self.bit(endpoint)
        index, masks = self._keys, self._masks
        if expiry != CONFIRMED:
            keys = keys if isinstance(keys, (list, tuple)) else list(keys)
            heapq.heappush(self._speculative, (expiry, next(self._order), keys, endpoint))
        for key in keys:
            holders = index.get(key)
            if holders is None:
                holders = index[key] = {endpoint: expiry}
                masks[key] = bit
                owned.add(key)
                self.admissions += 1
                if len(index) > self.size:
                    self._evict()
                continue
            index.move_to_end(key)
            old = holders.get(endpoint)
            if old is None:
                if len(holders) >= self.pod_cache_size:
                    dropped = next(iter(holders))
                    del holders[dropped]  # the new holder takes its place below
                    masks[key] &= ~self._bits[dropped]
                    self._by_endpoint.get(dropped, set()).discard(key)
                holders[endpoint] = expiry
                masks[key] |= bit
                owned.add(key)
                self.admissions += 1
            elif expiry > old:
                holders[endpoint] = expiry

    def _evict(self) -> None:
        key, holders = self._keys.popitem(last=False)
        del self._masks[key]
        self.evictions += 1
        for name in holders:
            self._by_endpoint.get(name, set()).discard(key)

    def remove(self, keys: Iterable[int], endpoint: str) -> None:
        owned = self._by_endpoint.get(endpoint)
        for key in keys:
            holders = self._keys.get(key)
            if holders is not None and endpoint in holders:
                self._drop(key, holders, endpoint)
                if owned is not None:
                    owned.discard(key)

    def clear_endpoint(self, endpoint: str) -> None:
        """Forget everything ``endpoint`` holds (AllBlocksCleared, restart, removal)."""
        for key in self._by_endpoint.pop(endpoint, set()):
            holders = self._keys.get(key)
            if holders is not None and endpoint in holders:
                self._drop(key, holders, endpoint)
        bit = self._bits.pop(endpoint, None)
        if bit is not None:  # no key carries it any more: free for the next endpoint
            del self._names[bit]
            self._free_bits.append(bit)

    def expire(self, now: float) -> None:
        """Drop the speculative entries whose TTL has passed (unless confirmed or renewed)."""
        pending = self._speculative
        index = self._keys
        while pending and pending[0][0] <= now:
            expiry, _, keys, endpoint = heapq.heappop(pending)
            holders = [h for h in map(index.get, keys) if h]
            if expiry not in map(dict.get, holders, repeat(endpoint)):
                continue  # every entry confirmed, renewed or gone: nothing to drop (C loops)
            owned = self._by_endpoint.get(endpoint)
            for key, h in zip(keys, map(index.get, keys), strict=True):
                if h is not None and h.get(endpoint) == expiry:
                    self._drop(key, h, endpoint)
                    if owned is not None:
                        owned.discard(key)

    def match(self, keys: Sequence[int], now: float) -> dict[str, int]:
        """Leading blocks of ``keys`` each endpoint holds (llm-d's longest-prefix lookup):
        an endpoint stops counting at its first missing block.

        The per-key work runs in C: one ``map`` reads every key's holder mask (an absent key
        reads 0, which ends every run), and ``groupby`` cuts the masks into runs of equal
        masks; Python only visits the runs (a handful: where an endpoint's share of the
        prefix ends).
        """
        self.expire(now)
        masks: list[int] = list(map(self._masks.get, keys, repeat(0)))
        if not masks or not masks[0]:
            return {}
        active = masks[0]
        out: dict[str, int] = {}
        at = 0
        for mask, run in groupby(masks):  # runs of equal masks: a handful
            lost = active & ~mask
            if lost:
                self._name_bits(lost, at, out)
                active &= mask
                if not active:
                    return out
            at += len(list(run))
        self._name_bits(active, at, out)
        return out

    def _name_bits(self, bits: int, count: int, out: dict[str, int]) -> None:
        while bits:
            low = bits & -bits
            out[self._names[low]] = count
            bits ^= low
