"""vLLM's KV-cache events, published by a simulated server over ZMQ exactly as vLLM does.

Wire format (vLLM ``vllm/distributed/kv_events.py``, ``ZmqEventPublisher``): every message is
three frames ``[topic, seq, payload]``; ``seq`` is an 8-byte big-endian counter that starts at 0
and rises by one per batch; ``payload`` is a msgpack ``KVEventBatch`` encoded the way msgspec's
``array_like`` structs are: ``[ts, [event, ...], data_parallel_rank]``, each event a tagged
array whose first item is its class name::

    ["BlockStored", block_hashes, parent_block_hash, token_ids, block_size, lora_id, medium,
     lora_name]
    ["BlockRemoved", block_hashes, medium]
    ["AllBlocksCleared"]

``engine="sglang"`` publishes SGLang's variant, as SGLang's own code writes it (sgl-project/sglang
``python/sglang/srt/disaggregation/kv_events.py`` and the radix cache's ``_record_store_event``;
docs/precise-prefix.md "SGLang" gives the evidence): the batch is ``[ts, events]`` (no data
parallel rank); ``BlockStored`` is ``["BlockStored", [hash], parent, token_ids, block_size,
lora_id]``, one event per page with the previous page's hash as parent; ``BlockRemoved`` is
``["BlockRemoved", hashes]``: no medium and no LoRA name on either.

The PUB socket binds (``tcp://*:5557`` in vLLM's convention) or, given a ``connect`` address,
connects to a central subscriber (llm-d-inference-sim's ``--zmq-endpoint`` mode, where the topic
``kv@<endpoint>@<model>`` tells the subscriber who spoke). An optional ROUTER socket answers
replay requests as vLLM's does: a DEALER sends ``[b"", start_seq]`` and gets every buffered
batch from ``start_seq`` on as ``[b"", seq, payload]``, then ``[b"", -1, b""]``. Batches older
than the replay buffer are gone; a subscriber that asks for them must resynchronise.

Events raised during one pass of the event loop go out as one batch (``call_soon``), as vLLM
publishes one batch per engine step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import Any

import msgpack
import zmq
import zmq.asyncio

log = logging.getLogger(__name__)

MEDIUM_GPU = "GPU"
END_OF_REPLAY = (-1).to_bytes(8, "big", signed=True)

Event = list[Any]


def block_stored(
    hashes: list[int],
    parent: int | None,
    token_ids: list[int],
    block_size: int,
    lora_id: int | None = None,
    lora_name: str | None = None,
) -> Event:
    return ["BlockStored", hashes, parent, token_ids, block_size, lora_id, MEDIUM_GPU, lora_name]


def block_removed(hashes: list[int]) -> Event:
    return ["BlockRemoved", hashes, MEDIUM_GPU]


def all_blocks_cleared() -> Event:
    return ["AllBlocksCleared"]


def encode_batch(
    events: list[Event], ts: float, dp_rank: int | None = None, engine: str = "vllm"
) -> bytes:
    """A ``KVEventBatch`` as msgspec's array_like encoding writes it (SGLang's has no rank)."""
    batch: list[Any] = [ts, events] if engine == "sglang" else [ts, events, dp_rank]
    out: bytes = msgpack.packb(batch, use_bin_type=True)
    return out


def sglang_events(event: Event) -> list[Event]:
    """A vLLM-shaped event as SGLang writes it (see the module docstring)."""
    kind = event[0]
    if kind == "BlockRemoved":
        return [event[:2]]
    if kind != "BlockStored":
        return [event]
    _, hashes, parent, tokens, size, lora_id = event[:6]
    out: list[Event] = []
    for i, h in enumerate(hashes):  # one BlockStored per page, chained by its parent
        out.append(["BlockStored", [h], parent, tokens[i * size : (i + 1) * size], size, lora_id])
        parent = h
    return out


class KVEventPublisher:
    """One server's event stream: PUB (bound or connected), replay buffer, optional ROUTER."""

    def __init__(
        self,
        topic: str,
        *,
        bind: str | None = None,
        connect: str | None = None,
        replay_bind: str | None = None,
        buffer_steps: int = 10_000,
        engine: str = "vllm",
    ) -> None:
        if (bind is None) == (connect is None):
            raise ValueError("give exactly one of bind and connect")
        if engine not in ("vllm", "sglang"):
            raise ValueError(f"engine must be vllm or sglang, got {engine!r}")
        self.engine = engine
        self.topic = topic.encode()
        self._bind, self._connect, self._replay_bind = bind, connect, replay_bind
        self._ctx = zmq.asyncio.Context.instance()
        self._pub: zmq.asyncio.Socket | None = None
        self._router: zmq.asyncio.Socket | None = None
        self._replay_task: asyncio.Task[None] | None = None
        self._buffer: deque[tuple[int, bytes]] = deque(maxlen=buffer_steps)
        self._pending: list[Event] = []
        self._flush_scheduled = False
        self.seq = 0
        self.batches = 0
        self.events = 0
        self.paused = False  # tests: drop batches on the floor (seq still rises), as a lost link

    def start(self) -> None:
        pub = self._ctx.socket(zmq.PUB)
        pub.setsockopt(zmq.LINGER, 0)
        pub.setsockopt(zmq.SNDHWM, 100_000)
        if self._bind is not None:
            pub.bind(self._bind)
        else:
            assert self._connect is not None
            pub.connect(self._connect)
        self._pub = pub
        if self._replay_bind is not None:
            router = self._ctx.socket(zmq.ROUTER)
            router.setsockopt(zmq.LINGER, 0)
            router.bind(self._replay_bind)
            self._router = router
            self._replay_task = asyncio.get_running_loop().create_task(self._serve_replay())

    @property
    def endpoint(self) -> str:
        """The PUB socket's address (the bound one, with its real port)."""
        assert self._pub is not None
        return bytes(self._pub.getsockopt(zmq.LAST_ENDPOINT)).decode()

    @property
    def replay_endpoint(self) -> str | None:
        if self._router is None:
            return None
        return bytes(self._router.getsockopt(zmq.LAST_ENDPOINT)).decode()

    def add(self, event: Event) -> None:
        """Queue ``event``; everything queued in this loop pass leaves as one batch."""
        if self.engine == "sglang":
            self._pending.extend(sglang_events(event))
        else:
            self._pending.append(event)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:  # no loop (unit tests of the cache): flush now
                self.flush()

    def flush(self) -> None:
        self._flush_scheduled = False
        if not self._pending or self._pub is None:
            self._pending.clear()
            return
        events, self._pending = self._pending, []
        payload = encode_batch(events, time.time(), engine=self.engine)
        seq = self.seq
        self.seq += 1
        self._buffer.append((seq, payload))
        self.batches += 1
        self.events += len(events)
        if self.paused:
            return
        try:
            self._pub.send_multipart([self.topic, seq.to_bytes(8, "big"), payload], zmq.NOBLOCK)
        except zmq.Again:  # high-water mark: vLLM drops too; the subscriber sees a gap
            log.warning("kv events: dropped batch %d (send queue full)", seq)

    async def _serve_replay(self) -> None:
        router = self._router
        assert router is not None
        while True:
            frames = await router.recv_multipart()
            if len(frames) < 3:
                continue
            ident, start = frames[0], int.from_bytes(frames[2], "big")
            for seq, payload in list(self._buffer):
                if seq >= start:
                    await router.send_multipart([ident, b"", seq.to_bytes(8, "big"), payload])
            await router.send_multipart([ident, b"", END_OF_REPLAY, b""])

    async def stop(self) -> None:
        self.flush()
        if self._replay_task is not None:
            self._replay_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._replay_task
            self._replay_task = None
        for sock in (self._pub, self._router):
            if sock is not None:
                sock.close(linger=0)
        self._pub = self._router = None
