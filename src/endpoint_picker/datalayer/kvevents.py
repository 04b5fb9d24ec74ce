"""Ingest vLLM's KV-cache events into the precise prefix index (decoding and sequencing).

Transport-free: :class:`KVEventIngester` takes ``(endpoint, topic, seq, payload)`` as the ZMQ
frames carry them (sim/kvevents.py documents the wire format); datalayer/kvevents_zmq.py owns
the sockets. Keeping the two apart lets the sequencing rules be tested without sockets.

**Key recomputation.** ``BlockStored`` carries the engine's block hashes, its parent's hash and
the blocks' token ids. For each endpoint we remember, per engine hash, where the EPP's own key
chain stood after that block (its last full key and the tokens since, when engine and EPP block
sizes differ) and which EPP keys it completed. A stored block extends its parent's chain; a
removed block takes back the keys it completed; a block whose parent we never saw (lost or
pre-dating the subscription) cannot be placed in a chain and is skipped.

**Sequence rules** (per stream, on the 8-byte ``seq`` frame):

- next in line: applied.
- a gap (``seq`` skips ahead; messages lost, e.g. PUB high-water mark or a reconnect): the
  caller may replay the missing batches from the server's replay socket first; without replay
  the index keeps what it has. Lost ``BlockStored`` only cost hits; a lost ``BlockRemoved``
  leaves a stale entry that routes one request to a server that then re-stores the prefix
  (which makes the entry true again) or that ages out of the LRU. Clearing the endpoint
  instead would forget its hot prefixes for good, since vLLM announces a block once.
- ``seq`` going backwards: the server restarted with an empty cache; its entries are dropped.
- ``AllBlocksCleared``: the endpoint's entries are dropped.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack

from endpoint_picker.scheduling.plugins.precise_index import (
    BlockIndex,
    _as_bytes,
    _xxh3,
    root_key,
)

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Chain:
    """Where the EPP's key chain stands after one engine block."""

    key: int  # last full EPP key (or the root)
    pending: tuple[int, ...]  # tokens after ``key`` not yet filling an EPP block
    completed: tuple[int, ...]  # EPP keys this engine block completed


@dataclass(slots=True)
class _Stream:
    """One endpoint's ingestion state: engine block hash -> where the chain stands after it,
    an int (the block's one EPP key, when the EPP's block size is the engine's: the usual
    case, kept as the bare key) or a :class:`_Chain`."""

    blocks: OrderedDict[Hashable, int | _Chain] = field(default_factory=OrderedDict)
    last_seq: int | None = None


@dataclass(slots=True)
class IngestStats:
    batches: int = 0
    events: int = 0
    gaps: int = 0  # gaps left unfilled
    replayed: int = 0  # batches recovered from a server's replay socket
    restarts: int = 0
    cleared: int = 0
    orphans: int = 0  # BlockStored whose parent was unknown
    errors: int = 0


def parse_topic(topic: bytes) -> tuple[str, str]:
    """``kv@<pod-id>@<model>`` -> (pod-id, model); other topics give empty strings."""
    parts = topic.decode(errors="replace").split("@", 2)
    if len(parts) == 3 and parts[0] == "kv":
        return parts[1], parts[2]
    return "", ""


class KVEventIngester:
    """Applies event batches to a :class:`BlockIndex`, per endpoint name."""

    def __init__(
        self, index: BlockIndex, block_size: int, hash_seed: str = "", max_blocks: int = 0
    ) -> None:
        self.index = index
        self.block_size = block_size
        self.hash_seed = hash_seed
        # Engine blocks remembered per endpoint; beyond this the oldest mapping is forgotten
        # (its removal then cannot be applied; the LRU ages the keys out).
        self.max_blocks = max_blocks or index.size
        self.streams: dict[str, _Stream] = {}
        self.models: set[str] = set()  # models named by events; see request_model()
        self.stats = IngestStats()

    # -- sequencing --------------------------------------------------------------------------

    def check_seq(self, endpoint: str, seq: int) -> str:
        """Classify ``seq`` for ``endpoint``: "first", "next", "gap" or "restart" (``seq`` not
        after the last one: live streams never repeat, so the server started again)."""
        last = self.streams.setdefault(endpoint, _Stream()).last_seq
        if last is None:
            return "first"
        if seq == last + 1:
            return "next"
        return "gap" if seq > last else "restart"

    def receive(self, endpoint: str, topic: bytes, seq: int, payload: bytes) -> str:
        """Apply one message in arrival order; returns the classification of its ``seq``.
        (A replaying caller skips batches at or before ``last_seq`` itself.)"""
        kind = self.check_seq(endpoint, seq)
        if kind == "gap":
            self.stats.gaps += 1
        elif kind == "restart":
            self.stats.restarts += 1
            self.forget(endpoint, keep_stream=True)
        self.streams[endpoint].last_seq = seq
        self.apply(endpoint, payload, parse_topic(topic)[1])
        return kind

    # -- events ------------------------------------------------------------------------------

    def apply(self, endpoint: str, payload: bytes, topic_model: str = "") -> None:
        """Decode a ``KVEventBatch`` and apply its events (malformed ones are counted)."""
        try:
            batch = msgpack.unpackb(payload, raw=False, strict_map_key=False)
            events = batch[1]
        except Exception:
            self.stats.errors += 1
            return
        self.stats.batches += 1
        stream = self.streams.setdefault(endpoint, _Stream())
        for event in events:
            self.stats.events += 1
            try:
                tag = event[0]
                if tag == "BlockStored":
                    model = (event[7] if len(event) > 7 else None) or topic_model
                    self._stored(endpoint, stream, event[1], event[2], event[3], event[4], model)
                elif tag == "BlockRemoved":
                    self._removed(endpoint, stream, event[1])
                elif tag == "AllBlocksCleared":
                    self.stats.cleared += 1
                    self.forget(endpoint, keep_stream=True)
                else:
                    self.stats.errors += 1
            except (IndexError, TypeError, ValueError):
                self.stats.errors += 1

    def _stored(
        self,
        endpoint: str,
        stream: _Stream,
        hashes: Sequence[Hashable],
        parent: Hashable | None,
        token_ids: Sequence[int],
        engine_block: int,
        model: str,
    ) -> None:
        if model:
            self.models.add(model)
        found = root_key(self.hash_seed, model) if parent is None else stream.blocks.get(parent)
        if found is None:
            self.stats.orphans += 1
            return
        bs = self.block_size
        blocks = stream.blocks
        added: list[int] = []
        if bs == engine_block and isinstance(found, int):  # the usual case: a key per block
            key = found
            data = memoryview(_as_bytes(token_ids))  # one conversion for every block
            step = len(data) // len(token_ids) * bs if token_ids else 0
            for i, h in enumerate(hashes):
                chunk = data[i * step : (i + 1) * step]
                if not chunk:
                    break
                key = _xxh3(chunk, key)
                blocks[h] = key
                added.append(key)
            self._trim_and_add(stream, added, endpoint)
            return
        chain = found if isinstance(found, _Chain) else _Chain(found, (), ())
        for i, h in enumerate(hashes):
            tokens = token_ids[i * engine_block : (i + 1) * engine_block]
            if not tokens:
                break
            key, pending, done = chain.key, chain.pending + tuple(tokens), []
            while len(pending) >= bs:  # engine and EPP block sizes differ
                key = _xxh3(_as_bytes(pending[:bs]), key)
                done.append(key)
                pending = pending[bs:]
            chain = _Chain(key, pending, tuple(done))
            blocks[h] = chain.key if not pending and len(done) == 1 else chain
            added.extend(done)
        self._trim_and_add(stream, added, endpoint)

    def _trim_and_add(self, stream: _Stream, added: list[int], endpoint: str) -> None:
        while len(stream.blocks) > self.max_blocks:
            stream.blocks.popitem(last=False)
        if added:
            self.index.add(added, endpoint)

    def _removed(self, endpoint: str, stream: _Stream, hashes: Sequence[Hashable]) -> None:
        pop = stream.blocks.pop
        gone: list[int] = []
        for h in hashes:
            found = pop(h, None)
            if isinstance(found, int):
                gone.append(found)
            elif found is not None:
                gone.extend(found.completed)
        if gone:
            self.index.remove(gone, endpoint)

    def forget(self, endpoint: str, keep_stream: bool = False) -> None:
        """Drop ``endpoint``'s index entries and block map (and its sequence unless kept)."""
        self.index.clear_endpoint(endpoint)
        stream = self.streams.get(endpoint)
        if stream is None:
            return
        if keep_stream:
            stream.blocks.clear()
        else:
            del self.streams[endpoint]

    def request_model(self, model: str) -> str:
        """The model name a request's key chain starts from: its own when events name models
        (llm-d's ``kv@<pod>@<model>`` topics, LoRA names), else "" as events without a model
        are chained from ""."""
        return model if model in self.models else ""


def decode_batch(payload: bytes) -> list[Any]:
    """A ``KVEventBatch``'s events (for tests and tools)."""
    return list(msgpack.unpackb(payload, raw=False, strict_map_key=False)[1])
