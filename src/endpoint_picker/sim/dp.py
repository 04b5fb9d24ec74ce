"""Data parallelism in the simulator: llm-d's routing sidecar on a pod's primary port.

In llm-d a vLLM pod started with ``--data-parallel-size R`` serves R ranks on consecutive ports;
the pool lists one endpoint per rank (``<pod>-rank-<i>``). ``data-parallel-profile-handler``
sends the request to the pod's ``primaryPort`` (rank 0's) with the chosen rank's ``ip:port`` in
``x-data-parallel-host-port``, and the sidecar on the primary port
(``pkg/sidecar/proxy/data_parallel.go``):

- serves the request itself when the header names its own ``ip:port``;
- forwards it, unchanged, to the rank the header names when that is one of the pod's ranks
  (a reverse proxy: the answer, errors included, streams back as it comes; a rank that cannot
  be reached is answered 502);
- answers 400 when the header names an address that is not one of the pod's ranks (llm-d's
  sidecar only knows its own ranks; it never calls an arbitrary host).

Only the primary port does this; the other ranks serve what they receive. Here each rank is a
:class:`SimServer` (rank 0 carries a :class:`DataParallelSidecar`), all in one fleet. The
primary checks the header before anything else, so a request that also names a prefiller is
handed whole to the chosen rank, whose P/D sidecar (if any) then runs it.
"""

from __future__ import annotations

import socket
from collections import Counter
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from endpoint_picker.pd_headers import DATA_PARALLEL_HEADER
from endpoint_picker.sim.openai import ApiError

if TYPE_CHECKING:
    from endpoint_picker.sim.fleet import SimFleet
    from endpoint_picker.sim.server import SimServer

FORWARDED_BY_HEADER = "x-sim-dp-primary"  # set on answers the primary forwarded from a rank
# Not copied between the client side and the rank side: hop-by-hop, or recomputed by aiohttp.
_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "proxy-connection",
        "host",
        "content-length",
        "content-encoding",
    }
)


def rank_of(request: web.Request) -> str:
    """The rank the EPP chose (``x-data-parallel-host-port``), or ''."""
    return request.headers.get(DATA_PARALLEL_HEADER, "").strip()


class DataParallelSidecar:
    """llm-d's data-parallel forwarding on one pod's primary port."""

    def __init__(self, server: SimServer, ranks: list[str]) -> None:
        self.server = server
        self.ranks = list(ranks)  # host:port of every rank, the primary's own first
        self.received: Counter[str] = Counter()  # header value -> requests that named it
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=0)  # every admitted request may be in flight
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=5.0)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=timeout, auto_decompress=False
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def target(self, request: web.Request) -> str | None:
        """Where the request goes: None to serve it here, else the rank's ``host:port``.

        Raises 400 for an address that is not one of this pod's ranks, as llm-d does."""
        rank = rank_of(request)
        if not rank:
            return None
        self.received[rank] += 1
        if rank == self.server.endpoint:
            return None
        if rank not in self.ranks:
            raise ApiError(
                400, f"{DATA_PARALLEL_HEADER} names {rank}, which is not a rank of this pod"
            )
        return rank

    async def forward(self, request: web.Request, rank: str, raw: bytes) -> web.StreamResponse:
        """Send the request to ``rank`` and stream its answer back as it comes."""
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        url = f"http://{rank}{request.path_qs}"
        try:
            upstream = await self._client().post(url, data=raw, headers=headers)
        except (aiohttp.ClientError, OSError) as err:
            raise ApiError(502, f"data-parallel rank {rank} could not be reached: {err}") from None
        try:
            out = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for key, value in upstream.headers.items():
                if key.lower() not in _HOP:
                    out.headers.add(key, value)
            out.headers[FORWARDED_BY_HEADER] = self.server.endpoint
            await out.prepare(request)
            async for chunk in upstream.content.iter_any():
                await out.write(chunk)
            await out.write_eof()
            return out
        finally:
            upstream.release()


async def start_dp_fleet(
    ranks: int,
    profile: str = "tiny-test",
    host: str = "127.0.0.1",
    base_port: int = 0,
    **overrides: Any,
) -> SimFleet:
    """One simulated pod with ``ranks`` data-parallel ranks: ``servers[i]`` is rank i, on
    ``base_port + i`` (consecutive ports from the first free pair when ``base_port`` is 0).
    Rank 0 is the primary port and carries the data-parallel sidecar."""
    from endpoint_picker.sim.fleet import start_fleet

    if ranks < 1:
        raise ValueError(f"need one data-parallel rank at least, got {ranks}")
    if base_port:
        fleet = await start_fleet(ranks, profile, host, base_port, **overrides)
    else:
        fleet = await _start_consecutive(ranks, profile, host, **overrides)
    primary = fleet.servers[0]
    primary.dp = DataParallelSidecar(primary, fleet.endpoints)
    return fleet


async def _start_consecutive(ranks: int, profile: str, host: str, **overrides: Any) -> SimFleet:
    """Ranks on consecutive ports, as vLLM binds them: rank 0 takes an ephemeral port, the
    others the ports after it; tried again from another port when one of those is taken."""
    from endpoint_picker.sim.fleet import start_fleet

    last: OSError | None = None
    for _ in range(20):
        with socket.socket() as probe:
            probe.bind((host, 0))
            base = int(probe.getsockname()[1])
        if base + ranks - 1 > 65535:
            continue
        try:
            return await start_fleet(ranks, profile, host, base, **overrides)
        except OSError as err:
            last = err
    raise OSError(f"no {ranks} consecutive free ports on {host}: {last}")
