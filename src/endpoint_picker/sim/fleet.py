"""Many simulated instances in one process and one event loop.

Each instance has its own engine, cache, metrics and port; instance ``i`` is seeded with
``seed + i`` so their jitter differs but every run repeats.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from endpoint_picker.sim.config import SimConfig
from endpoint_picker.sim.server import SimServer


@dataclasses.dataclass(slots=True)
class SimFleet:
    """Started simulators; ``ports[i]`` is the port of ``servers[i]``."""

    servers: list[SimServer]
    ports: list[int]

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.servers]

    @property
    def endpoints(self) -> list[str]:
        return [s.endpoint for s in self.servers]

    async def stop(self) -> None:
        for server in self.servers:
            await server.stop()

    async def __aenter__(self) -> SimFleet:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def start_fleet(
    count: int,
    profile: str = "tiny-test",
    host: str = "127.0.0.1",
    base_port: int = 0,
    **overrides: Any,
) -> SimFleet:
    """Start ``count`` instances on ``base_port + i`` (each on an ephemeral port if 0).

    If one fails to bind, those already started are stopped and the OSError propagates.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    base = SimConfig.from_profile(profile, **overrides)
    servers: list[SimServer] = []
    ports: list[int] = []
    try:
        for i in range(count):
            config = dataclasses.replace(
                base,
                seed=base.seed + i,
                kv_events_port=base.kv_events_port + i * (base.kv_events_port > 0),
                kv_events_replay_port=(
                    base.kv_events_replay_port + i * (base.kv_events_replay_port > 0)
                ),
            )
            server = SimServer(config, host, base_port + i if base_port else 0)
            ports.append(await server.start())
            servers.append(server)
    except BaseException:
        for server in servers:
            await server.stop()
        raise
    for server in servers:
        server.peers = servers
    return SimFleet(servers, ports)


async def start_pd_fleet(
    prefill: int,
    decode: int,
    profile: str = "tiny-test",
    host: str = "127.0.0.1",
    base_port: int = 0,
    **overrides: Any,
) -> SimFleet:
    """``prefill`` prefill-role instances, then ``decode`` decode-role ones (which run llm-d's
    P/D sidecar), on consecutive ports from ``base_port``; one fleet for the oracle."""
    if prefill < 1 or decode < 1:
        raise ValueError(f"need a prefill and a decode instance at least, got {prefill}:{decode}")
    p = await start_fleet(prefill, profile, host, base_port, **{**overrides, "role": "prefill"})
    try:
        seed = int(overrides.get("seed", 0)) + prefill
        d = await start_fleet(
            decode,
            profile,
            host,
            base_port + prefill if base_port else 0,
            **{**overrides, "role": "decode", "seed": seed},
        )
    except BaseException:
        await p.stop()
        raise
    fleet = SimFleet([*p.servers, *d.servers], [*p.ports, *d.ports])
    for server in fleet.servers:
        server.peers = fleet.servers
    return fleet
