"""The priority benchmark's sampler: each server's busy slots and the EPP's own view of them.

Every ``interval`` it reads each simulator's ``vllm:num_requests_running`` and
``vllm:num_requests_waiting`` (the servers' own count: "slots busy" is their running over
max-num-seqs, never the EPP's estimate) and the EPP's ``/status.json`` (per endpoint: requests
in flight and learned capacity; requests queued in flow control). Putting the two side by side
shows where idle slots come from: not dispatched (EPP in flight below capacity), or dispatched
and not yet running (in flight above the server's running + waiting).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from routing_metrics import Polling, fetch


@dataclass(slots=True)
class Sample:
    """One poll: per server (in ``urls`` order) running and waiting; the EPP's view."""

    t: float
    running: list[float]
    waiting: list[float]
    inflight: list[float] = field(default_factory=list)  # EPP, per server (same order)
    capacity: list[float] = field(default_factory=list)  # EPP's learned capacity, per server
    queued: float = 0.0  # requests inside the EPP's flow control


@dataclass
class SlotSampler(Polling):
    """Polls every simulator and the EPP every ``interval`` s until stopped."""

    urls: list[str]  # each simulator's /metrics
    status_url: str = ""  # the EPP's /status.json
    interval: float = 0.2
    samples: list[Sample] = field(default_factory=list)

    async def _run(self) -> None:
        hostports = [u.split("//", 1)[1].split("/", 1)[0] for u in self.urls]
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while True:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    pages = await asyncio.gather(*(fetch(session, u) for u in self.urls))
                    sample = Sample(
                        time.monotonic(),
                        [gauge(p, "vllm:num_requests_running") for p in pages],
                        [gauge(p, "vllm:num_requests_waiting") for p in pages],
                    )
                    if self.status_url:
                        async with session.get(self.status_url) as resp:
                            status: dict[str, Any] = await resp.json()
                        _epp_view(sample, status, hostports)
                    self.samples.append(sample)
                await asyncio.sleep(self.interval)

    def between(self, start: float, end: float) -> list[Sample]:
        return [s for s in self.samples if start <= s.t <= end]

    def window(self, start: float, end: float) -> dict[str, float]:
        """Means over the pool between ``start`` and ``end``: servers' running and waiting,
        the EPP's in flight, learned capacity and queued."""
        picked = self.between(start, end)
        if not picked:
            return {}
        n = len(picked)
        out = {
            "running": sum(sum(s.running) for s in picked) / n,
            "waiting": sum(sum(s.waiting) for s in picked) / n,
            "samples": float(n),
        }
        if picked[0].capacity:
            out["epp_inflight"] = sum(sum(s.inflight) for s in picked) / n
            out["epp_capacity"] = sum(sum(s.capacity) for s in picked) / n
            out["epp_queued"] = sum(s.queued for s in picked) / n
        return out

    def server(self, index: int, start: float, end: float) -> dict[str, Any]:
        """One server between ``start`` and ``end``: mean running and waiting, and the EPP's
        learned capacity for it over time as (seconds from ``start``, capacity)."""
        picked = self.between(start, end)
        if not picked:
            return {}
        n = len(picked)
        return {
            "running": sum(s.running[index] for s in picked) / n,
            "waiting": sum(s.waiting[index] for s in picked) / n,
            "capacity": [(round(s.t - start, 2), s.capacity[index]) for s in picked if s.capacity],
        }


def gauge(page: str, name: str) -> float:
    """The sum of gauge ``name``'s series in Prometheus text, read line by line: the full
    parser costs tens of milliseconds a page, which the client's event loop (timing every
    request) cannot spare five times a second."""
    found = 0.0
    for line in page.splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in ("{", " "):
            found += float(line.rsplit(" ", 1)[1])
    return found


def _epp_view(sample: Sample, status: dict[str, Any], hostports: list[str]) -> None:
    by_address = {e.get("address"): e for e in status.get("endpoints") or []}
    for hp in hostports:
        ep = by_address.get(hp) or {}
        sample.inflight.append(float(ep.get("inflight") or 0))
        sample.capacity.append(float(ep.get("capacity") or 0))
    bands = (status.get("flow_control") or {}).get("bands") or []
    sample.queued = sum(float(b.get("queued") or 0) for b in bands)
