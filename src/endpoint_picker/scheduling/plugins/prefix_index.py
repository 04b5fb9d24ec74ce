"""The approximate prefix-cache index: which endpoint probably holds which prompt blocks.

``hash -> set(endpoint names)`` plus one LRU of hashes per endpoint. An endpoint's LRU has a
fixed capacity (its KV-cache block count, or a default), and evicting a hash from it removes
the endpoint from that hash's set, so memory is bounded by the sum of the capacities: the map
never holds a hash that no LRU holds.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from collections.abc import Iterable, Sequence

import xxhash

_PACK_U64 = struct.Struct("<Q").pack
_xxh64 = xxhash.xxh64_intdigest


def block_hashes(
    text: bytes, block_chars: int, max_blocks: int, model: str, cache_salt: str
) -> list[int]:
    """Chained xxhash64 of ``text`` in ``block_chars`` blocks (upstream's ``hashPrompt``).

    ``h_0 = H(model + cache_salt)``, ``h_i = H(block_i + le_u64(h_{i-1}))``; a trailing partial
    block is hashed too; text shorter than one block gives no hashes. The chain makes a match
    on block i imply a match on every block before it, and the seed keeps models (LoRA
    adapters) and cache salts (tenants) apart.
    """
    if block_chars <= 0 or len(text) < block_chars:
        return []
    if max_blocks > 0:
        text = text[: max_blocks * block_chars]
    prev = _xxh64((model + cache_salt).encode())
    out: list[int] = []
    append = out.append
    for i in range(0, len(text), block_chars):
        prev = _xxh64(text[i : i + block_chars] + _PACK_U64(prev))
        append(prev)
    return out


class PrefixIndex:
    """hash -> endpoints, with a bounded LRU of hashes per endpoint."""

    def __init__(self, default_capacity: int = 31250) -> None:
        self.default_capacity = default_capacity
        self._servers: dict[int, set[str]] = {}
        self._lrus: dict[str, OrderedDict[int, None]] = {}
        self._capacity: dict[str, int] = {}
        self._size = 0

    @property
    def size(self) -> int:
        """Total LRU entries over all endpoints (upstream's ``prefix_indexer_size``)."""
        return self._size

    def capacity(self, server: str) -> int | None:
        return self._capacity.get(server)

    def servers(self) -> list[str]:
        return list(self._lrus)

    def match(self, hashes: Sequence[int]) -> dict[str, int]:
        """Blocks matched per endpoint: walk the hashes in order until one has no endpoint;
        each endpoint holding a walked hash gets +1 (upstream's counting)."""
        counts: dict[str, int] = {}
        get = self._servers.get
        for h in hashes:
            servers = get(h)
            if not servers:
                break
            for s in servers:
                counts[s] = counts.get(s, 0) + 1
        return counts

    def add(self, hashes: Sequence[int], server: str, capacity: int | None = None) -> None:
        """Record that ``server`` now holds ``hashes``. The capacity is fixed at first insert."""
        if not hashes:
            return
        lru = self._lrus.get(server)
        if lru is None:
            lru = self._lrus[server] = OrderedDict()
            cap = capacity if capacity and capacity > 0 else self.default_capacity
            self._capacity[server] = max(1, cap)
        cap = self._capacity[server]
        servers = self._servers
        # Newest last: insert the chain backwards so its first blocks (shared by the most
        # prompts, and the ones a match walk needs first) are the last to be evicted.
        for h in reversed(hashes):
            if h in lru:
                lru.move_to_end(h)
                continue
            lru[h] = None
            self._size += 1
            owners = servers.get(h)
            if owners is None:
                servers[h] = {server}
            else:
                owners.add(server)
            if len(lru) > cap:
                old, _ = lru.popitem(last=False)
                self._size -= 1
                self._forget(old, server)

    def _forget(self, h: int, server: str) -> None:
        owners = self._servers.get(h)
        if owners is not None:
            owners.discard(server)
            if not owners:
                del self._servers[h]

    def remove_server(self, server: str) -> None:
        lru = self._lrus.pop(server, None)
        self._capacity.pop(server, None)
        if lru is None:
            return
        self._size -= len(lru)
        for h in lru:
            self._forget(h, server)

    def retain(self, servers: Iterable[str]) -> None:
        """Drop every endpoint not in ``servers`` (periodic clean-up of departed endpoints)."""
        keep = set(servers)
        for server in [s for s in self._lrus if s not in keep]:
            self.remove_server(server)

    def hash_count(self) -> int:
        """Distinct hashes known (for memory-bound checks)."""
        return len(self._servers)
