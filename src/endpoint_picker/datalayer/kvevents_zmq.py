"""The ZMQ side of KV events: SUB sockets that follow the pool's endpoints, and replay.

Two modes, as llm-d-kv-cache's event pool:

- **per endpoint** (``discoverPods``, the default): one SUB socket per endpoint, connected to
  ``tcp://<endpoint address>:<socketPort>`` (vLLM binds ``tcp://*:5557``). Sockets are opened
  and closed as the datastore announces endpoints coming and going. ``addresses`` overrides the
  address per endpoint name (several simulated servers on one IP need distinct ports).
- **central** (``zmqEndpoint``): one SUB socket bound there; servers connect their PUB to it
  and the topic ``kv@<pod-id>@<model>`` names the speaker, matched against each endpoint's
  ``ip:port``, IP, pod name or endpoint name.

A gap in one stream's sequence numbers triggers a replay request (vLLM's ROUTER protocol, see
sim/kvevents.py) when a replay address is known for that endpoint; otherwise, or if the replay
times out, the stream continues as datalayer/kvevents.py describes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

import zmq
import zmq.asyncio

from endpoint_picker.datalayer.kvevents import KVEventIngester, parse_topic
from endpoint_picker.datastore import Datastore, Endpoint, Event

log = logging.getLogger(__name__)

END_OF_REPLAY = -1


class KVEventSubscriber:
    """Owns the sockets and tasks; hands every message to a :class:`KVEventIngester`."""

    def __init__(
        self,
        ingester: KVEventIngester,
        *,
        topic_filter: str = "kv@",
        socket_port: int = 5557,
        replay_port: int = 0,
        central_endpoint: str = "",
        discover: bool = True,
        addresses: Mapping[str, str] | None = None,
        replay_addresses: Mapping[str, str] | None = None,
        replay_timeout: float = 1.0,
        on_remove: Callable[[str], None] | None = None,
    ) -> None:
        self.ingester = ingester
        self.topic_filter = topic_filter.encode()
        self.socket_port = socket_port
        self.replay_port = replay_port
        self.central_endpoint = central_endpoint
        self.discover = discover
        self.addresses = dict(addresses or {})
        self.replay_addresses = dict(replay_addresses or {})
        self.replay_timeout = replay_timeout
        self.on_remove = on_remove
        self._ctx = zmq.asyncio.Context.instance()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._central: asyncio.Task[None] | None = None
        self._datastore: Datastore | None = None
        self._unsubscribe: Callable[[], None] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def attach(self, datastore: Datastore) -> None:
        self._datastore = datastore

    async def start(self) -> None:
        ds = self._datastore
        if self.central_endpoint:
            sock = self._ctx.socket(zmq.SUB)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.RCVHWM, 100_000)
            sock.setsockopt(zmq.SUBSCRIBE, self.topic_filter)
            sock.bind(self.central_endpoint)
            self._central = asyncio.get_running_loop().create_task(self._run_central(sock))
        if ds is not None:
            if self.discover:
                for ep in ds.endpoints():
                    self._follow(ep)
            self._unsubscribe = ds.subscribe(self._on_event)

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        tasks = [*self._tasks.values(), *([self._central] if self._central else [])]
        self._tasks.clear()
        self._central = None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _on_event(self, event: Event, obj: Any) -> None:
        if event == Event.ENDPOINT_ADDED and self.discover:
            self._follow(obj)
        elif event == Event.ENDPOINT_REMOVED:
            self._unfollow(obj.name)
        elif event == Event.CLEARED:
            for name in list(self._tasks):
                self._unfollow(name)

    def _follow(self, ep: Endpoint) -> None:
        if ep.name in self._tasks:
            return
        host = f"[{ep.address}]" if ":" in ep.address else ep.address
        address = self.addresses.get(ep.name, f"tcp://{host}:{self.socket_port}")
        loop = asyncio.get_running_loop()
        self._tasks[ep.name] = loop.create_task(self._run_endpoint(ep.name, address))

    def _unfollow(self, name: str) -> None:
        task = self._tasks.pop(name, None)
        if task is not None:
            task.cancel()
        self.ingester.forget(name)
        if self.on_remove is not None:
            self.on_remove(name)

    @property
    def subscriptions(self) -> list[str]:
        return sorted(self._tasks)

    # -- streams -----------------------------------------------------------------------------

    async def _run_endpoint(self, name: str, address: str) -> None:
        sock = self._ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, 100_000)
        sock.setsockopt(zmq.SUBSCRIBE, self.topic_filter)
        sock.connect(address)
        log.info("kv events: %s subscribed to %s", name, address)
        try:
            while True:
                frames = await sock.recv_multipart()
                await self._handle(name, frames)
        finally:
            sock.close(linger=0)

    async def _run_central(self, sock: zmq.asyncio.Socket) -> None:
        try:
            while True:
                frames = await sock.recv_multipart()
                if not frames:
                    continue
                name = self._resolve(parse_topic(frames[0])[0])
                if name is not None:
                    await self._handle(name, frames)
        finally:
            sock.close(linger=0)

    def _resolve(self, pod_id: str) -> str | None:
        ds = self._datastore
        if ds is None or not pod_id:
            return pod_id or None
        by_addr = None
        for ep in ds.endpoints():
            if pod_id in (ep.hostport, ep.name):
                return ep.name
            if by_addr is None and pod_id in (ep.address, ep.pod_name):
                by_addr = ep.name
        return by_addr

    async def _handle(self, name: str, frames: list[bytes]) -> None:
        if len(frames) != 3 or len(frames[1]) != 8:
            self.ingester.stats.errors += 1
            return
        topic, seq, payload = frames[0], int.from_bytes(frames[1], "big"), frames[2]
        ing = self.ingester
        if ing.check_seq(name, seq) == "gap":
            replay = self._replay_address(name)
            if replay is not None:
                await self._replay(name, topic, replay)
                last = ing.streams[name].last_seq
                if last is not None and seq <= last:
                    return
        ing.receive(name, topic, seq, payload)

    def _replay_address(self, name: str) -> str | None:
        if name in self.replay_addresses:
            return self.replay_addresses[name]
        if not self.replay_port or self._datastore is None:
            return None
        ep = self._datastore.endpoint(name)
        if ep is None:
            return None
        host = f"[{ep.address}]" if ":" in ep.address else ep.address
        return f"tcp://{host}:{self.replay_port}"

    async def _replay(self, name: str, topic: bytes, address: str) -> None:
        """Ask the server's ROUTER for every batch after the last one applied."""
        ing = self.ingester
        last = ing.streams[name].last_seq
        start = 0 if last is None else last + 1
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(address)
        try:
            await sock.send_multipart([b"", start.to_bytes(8, "big")])
            while True:
                frames = await asyncio.wait_for(sock.recv_multipart(), self.replay_timeout)
                if len(frames) < 3:
                    break
                seq = int.from_bytes(frames[1], "big", signed=True)
                if seq == END_OF_REPLAY:
                    break
                current = ing.streams[name].last_seq
                if current is None or seq > current:
                    ing.streams[name].last_seq = seq
                    ing.apply(name, frames[2], parse_topic(topic)[1])
        except TimeoutError:
            log.warning("kv events: replay from %s timed out for %s", address, name)
        finally:
            sock.close(linger=0)
