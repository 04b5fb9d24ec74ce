"""A paged KV cache with prefix caching: blocks of ``block_size`` tokens, LRU eviction.

Full prompt blocks are named by a hash chain (each block's hash covers its parent's hash and its
tokens; the chain is seeded with the model or LoRA name, so adapters never share blocks), the way
vLLM's prefix caching names them. A block is *pinned* while a running request uses it; when the
last user finishes, a hashed block stays cached (evictable, LRU order) so a later request with
the same prefix skips its prefill; private blocks (a prompt's partial last block, decode blocks)
are freed at once.

A request is admitted only if every block it may need (prompt plus ``max_tokens`` of output)
fits now: decode blocks are reserved at admission and taken as generation crosses block
boundaries, so a running request never runs out and nothing is preempted. Usage is what vLLM
reports: pinned blocks over all blocks (cached-but-unused blocks count as free).

With a ``sink`` set, the cache reports what vLLM's KV-event publisher reports: ``BlockStored``
for each run of newly cached prompt blocks (engine hashes, parent hash, their token ids),
``BlockRemoved`` per evicted block, ``AllBlocksCleared`` on :meth:`reset` (see sim/kvevents.py).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import xxhash


def block_hashes(tokens: Sequence[str], block_size: int, seed: str) -> list[int]:
    """Hash chain over the full blocks of ``tokens``; a trailing partial block is not hashed."""
    out: list[int] = []
    parent = xxhash.xxh64_intdigest(seed.encode())
    for start in range(0, len(tokens) - block_size + 1, block_size):
        data = (
            parent.to_bytes(8, "little") + "\x1f".join(tokens[start : start + block_size]).encode()
        )
        parent = xxhash.xxh64_intdigest(data)
        out.append(parent)
    return out


def blocks_for(tokens: int, block_size: int) -> int:
    """Blocks needed to hold ``tokens`` tokens."""
    return -(-tokens // block_size)


@dataclass(slots=True)
class Allocation:
    """What one admitted request holds: pinned hashed blocks, private blocks, reserved blocks."""

    hashes: list[int] = field(default_factory=list)
    private: int = 0
    reserved: int = 0
    cached_tokens: int = 0


class KVCache:
    """Block accounting for one engine. Not thread-safe (one event loop)."""

    def __init__(self, num_blocks: int, block_size: int, prefix_caching: bool = True) -> None:
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.prefix_caching = prefix_caching
        self._refs: dict[int, int] = {}  # pinned hashed block -> number of running users
        self._unused: OrderedDict[int, None] = OrderedDict()  # cached, unpinned, oldest first
        self._private = 0
        self._reserved = 0
        self.evictions = 0
        self.queries = 0  # prompt tokens looked up (vllm:prefix_cache_queries)
        self.hits = 0  # of which found cached (vllm:prefix_cache_hits)
        self.oracle_hits = 0  # tokens the best server of the fleet held at arrival (sim:...)
        self.sink: Callable[[list[Any]], None] | None = None  # KV events, see the docstring

    @property
    def pinned(self) -> int:
        return len(self._refs) + self._private

    @property
    def cached(self) -> int:
        """Hashed blocks kept for reuse but used by no running request."""
        return len(self._unused)

    @property
    def usage(self) -> float:
        """Fraction of blocks pinned by running requests (``vllm:kv_cache_usage_perc``)."""
        return self.pinned / self.num_blocks

    def _available(self) -> int:
        return self.num_blocks - self.pinned - self._reserved

    def match(self, hashes: Sequence[int]) -> int:
        """How many leading blocks of ``hashes`` are cached (pinned or not)."""
        n = 0
        for h in hashes:
            if h not in self._refs and h not in self._unused:
                break
            n += 1
        return n

    def hit_tokens(self, hashes: Sequence[int], prompt_len: int) -> int:
        """Prompt tokens a request would find cached here now (the hit rule of allocate)."""
        if not self.prefix_caching:
            return 0
        return min(self.match(hashes), (prompt_len - 1) // self.block_size) * self.block_size

    def cached_hashes(self) -> list[int]:
        """Every hashed block the cache holds now, pinned or not (the simulator's oracle)."""
        return [*self._refs, *self._unused]

    def reset(self) -> bool:
        """Drop every cached block (vLLM's ``reset_prefix_cache``); False while any is pinned."""
        if self._refs:
            return False
        self._unused.clear()
        if self.sink is not None:
            self.sink(["AllBlocksCleared"])
        return True

    def allocate(
        self,
        hashes: Sequence[int],
        prompt_len: int,
        total_len: int,
        token_ids: Sequence[int] = (),
        lora: tuple[int, str] | None = None,
    ) -> Allocation | None:
        """Pin the prompt's blocks and reserve its decode blocks, or None if they do not fit.

        At least one prompt token is always computed (as in vLLM), so a full hit recomputes the
        last block. ``token_ids`` and ``lora`` (id, name) only feed the ``BlockStored`` events.
        """
        bs = self.block_size
        if not self.prefix_caching:
            hashes = ()
        hit = min(self.match(hashes), (prompt_len - 1) // bs)
        prompt_blocks = blocks_for(prompt_len, bs)
        total_blocks = max(blocks_for(total_len, bs), prompt_blocks)
        shared = sum(1 for h in hashes if h in self._refs)
        if total_blocks - shared > self._available():
            return None
        new: list[int] = []  # indexes of blocks cached by this request
        for i, h in enumerate(hashes):
            if h in self._refs:
                self._refs[h] += 1
                continue
            if h in self._unused:
                del self._unused[h]
            else:
                self._make_room()
                new.append(i)
            self._refs[h] = 1
        if new and self.sink is not None:
            self._stored(hashes, new, token_ids, lora)
        alloc = Allocation(list(hashes), prompt_blocks - len(hashes), total_blocks - prompt_blocks)
        for _ in range(alloc.private):
            self._make_room()
        self._private += alloc.private
        self._reserved += alloc.reserved
        alloc.cached_tokens = hit * bs
        self.queries += prompt_len
        self.hits += alloc.cached_tokens
        return alloc

    def _stored(
        self,
        hashes: Sequence[int],
        new: list[int],
        token_ids: Sequence[int],
        lora: tuple[int, str] | None,
    ) -> None:
        """One ``BlockStored`` per run of consecutive new blocks, chained to its parent."""
        assert self.sink is not None
        bs = self.block_size
        lora_id, lora_name = lora if lora is not None else (None, None)
        start = 0
        while start < len(new):
            end = start
            while end + 1 < len(new) and new[end + 1] == new[end] + 1:
                end += 1
            first, last = new[start], new[end]
            parent = hashes[first - 1] if first > 0 else None
            tokens = list(token_ids[first * bs : (last + 1) * bs])
            event = [
                "BlockStored",
                list(hashes[first : last + 1]),
                parent,
                tokens,
                bs,
                lora_id,
                "GPU",
                lora_name,
            ]
            self.sink(event)
            start = end + 1

    def grow(self, alloc: Allocation) -> None:
        """Turn one reserved block into a used one (generation crossed a block boundary)."""
        if alloc.reserved <= 0:
            return
        alloc.reserved -= 1
        self._reserved -= 1
        self._make_room()
        alloc.private += 1
        self._private += 1

    def release(self, alloc: Allocation) -> None:
        """Unpin everything ``alloc`` holds; hashed blocks stay cached. As vLLM, the tail is
        freed first, so under pressure a prompt's last blocks go before its shared prefix."""
        for h in reversed(alloc.hashes):
            left = self._refs[h] - 1
            if left:
                self._refs[h] = left
            else:
                del self._refs[h]
                self._unused[h] = None
        self._private -= alloc.private
        self._reserved -= alloc.reserved
        alloc.hashes, alloc.private, alloc.reserved = [], 0, 0

    def _make_room(self) -> None:
        """Ensure one empty block exists, evicting the least recently used cached block."""
        if self.pinned + len(self._unused) >= self.num_blocks and self._unused:
            h, _ = self._unused.popitem(last=False)
            self.evictions += 1
            if self.sink is not None:
                self.sink(["BlockRemoved", [h], "GPU"])
