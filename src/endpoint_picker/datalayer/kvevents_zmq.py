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
sim/kvevents.py) when a replay address is known for that endpoint; messages arriving meanwhile
wait, and are applied after the replayed ones. Without a replay address, or if the replay times
out, the stream continues as datalayer/kvevents.py describes.

Sockets are plain (synchronous) pyzmq sockets watched with ``loop.add_reader`` on their FD and
drained with non-blocking reads: one wake-up handles every queued message, without an asyncio
future per message (which cost most of the CPU at a few thousand messages per second). ZMQ's
FD is edge-triggered, so each wake-up reads until ``ZMQ_EVENTS`` shows nothing left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any, cast

import zmq
import zmq.asyncio

from endpoint_picker.datalayer.kvevents import KVEventIngester, parse_topic
from endpoint_picker.datastore import Datastore, Endpoint, Event

log = logging.getLogger(__name__)

END_OF_REPLAY = -1


class KVEventSubscriber:
    """Owns the sockets; hands every message to a :class:`KVEventIngester`."""

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
        self._ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        self._socks: dict[str, zmq.Socket[bytes]] = {}  # endpoint name (or "" central) -> SUB
        self._held: dict[str, list[list[bytes]]] = {}  # streams waiting for a replay
        self._replays: set[asyncio.Task[None]] = set()
        self._datastore: Datastore | None = None
        self._unsubscribe: Callable[[], None] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def attach(self, datastore: Datastore) -> None:
        self._datastore = datastore

    async def start(self) -> None:
        ds = self._datastore
        if self.central_endpoint:
            self._open("", self.central_endpoint, bind=True)
        if ds is not None:
            if self.discover:
                for ep in ds.endpoints():
                    self._follow(ep)
            self._unsubscribe = ds.subscribe(self._on_event)

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        for name in list(self._socks):
            self._close(name)
        for task in list(self._replays):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _on_event(self, event: Event, obj: Any) -> None:
        if event == Event.ENDPOINT_ADDED and self.discover:
            self._follow(obj)
        elif event == Event.ENDPOINT_REMOVED:
            self._unfollow(obj.name)
        elif event == Event.CLEARED:
            for name in [n for n in self._socks if n]:
                self._unfollow(name)

    def _follow(self, ep: Endpoint) -> None:
        if ep.name in self._socks:
            return
        host = f"[{ep.address}]" if ":" in ep.address else ep.address
        address = self.addresses.get(ep.name, f"tcp://{host}:{self.socket_port}")
        self._open(ep.name, address, bind=False)
        log.info("kv events: %s subscribed to %s", ep.name, address)

    def _unfollow(self, name: str) -> None:
        self._close(name)
        self.ingester.forget(name)

    @property
    def subscriptions(self) -> list[str]:
        return sorted(n for n in self._socks if n)

    # -- sockets -----------------------------------------------------------------------------

    def _open(self, name: str, address: str, *, bind: bool) -> None:
        sock: zmq.Socket[bytes] = self._ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, 100_000)
        sock.setsockopt(zmq.SUBSCRIBE, self.topic_filter)
        if bind:
            sock.bind(address)
        else:
            sock.connect(address)
        self._socks[name] = sock
        loop = asyncio.get_running_loop()
        loop.add_reader(sock.FD, self._drain, name)
        loop.call_soon(self._drain, name)  # edge-triggered: read what may be there already

    def _close(self, name: str) -> None:
        sock = self._socks.pop(name, None)
        self._held.pop(name, None)
        if sock is not None:
            asyncio.get_running_loop().remove_reader(sock.FD)
            sock.close(linger=0)

    def _drain(self, name: str) -> None:
        sock = self._socks.get(name)
        while sock is not None and not sock.closed and _readable(sock):
            frames = sock.recv_multipart(zmq.NOBLOCK)
            if name:
                self._handle(name, frames)
            elif frames:
                target = self._resolve(parse_topic(frames[0])[0])
                if target is not None:
                    self._handle(target, frames)

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

    # -- sequencing and replay ---------------------------------------------------------------

    def _handle(self, name: str, frames: list[bytes]) -> None:
        if len(frames) != 3 or len(frames[1]) != 8:
            self.ingester.stats.errors += 1
            return
        held = self._held.get(name)
        if held is not None:  # a replay is under way: keep the order
            held.append(frames)
            return
        seq = int.from_bytes(frames[1], "big")
        if self.ingester.check_seq(name, seq) == "gap":
            replay = self._replay_address(name)
            if replay is not None:
                self._held[name] = [frames]
                task = asyncio.get_running_loop().create_task(self._replay(name, frames[0], replay))
                self._replays.add(task)
                task.add_done_callback(self._replays.discard)
                return
        self.ingester.receive(name, frames[0], seq, frames[2])

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
        """Ask the server's ROUTER for every batch after the last one applied, then apply
        the messages that arrived meanwhile."""
        ing = self.ingester
        last = ing.streams[name].last_seq
        start = 0 if last is None else last + 1
        sock = zmq.asyncio.Context.instance().socket(zmq.DEALER)
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
                stream = ing.streams.get(name)
                if stream is None:  # the endpoint left meanwhile
                    break
                if stream.last_seq is None or seq > stream.last_seq:
                    ing.stats.replayed += 1
                    stream.last_seq = seq
                    ing.apply(name, frames[2], parse_topic(topic)[1])
        except TimeoutError:
            log.warning("kv events: replay from %s timed out for %s", address, name)
        finally:
            sock.close(linger=0)
            for frames in self._held.pop(name, None) or []:
                seq = int.from_bytes(frames[1], "big")
                stream = ing.streams.get(name)
                if stream is not None and (stream.last_seq is None or seq > stream.last_seq):
                    ing.receive(name, frames[0], seq, frames[2])


def _readable(sock: zmq.Socket[bytes]) -> bool:
    return bool(cast(int, sock.getsockopt(zmq.EVENTS)) & zmq.POLLIN)
