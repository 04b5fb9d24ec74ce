"""Server-side numbers: the simulators' vLLM metrics and the EPP's flow-control outcomes.

A ``Sampler`` polls every simulator's ``/metrics`` once a second during a run (queue depth and
KV use are gauges, so only samples show them); counters (prefix hits, requests) are read once
at the end, from fresh simulators, so they cover exactly one arm's run.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families


def parse(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Prometheus text -> (sample name, labels, value) triples."""
    return [
        (s.name, dict(s.labels), float(s.value))
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    ]


async def fetch(session: aiohttp.ClientSession, url: str) -> str:
    async with session.get(url) as resp:
        resp.raise_for_status()
        return await resp.text()


def total(samples: list[tuple[str, dict[str, str], float]], name: str) -> float:
    """The sum of ``name``'s samples (all its series)."""
    return sum(v for n, _, v in samples if n == name)


class Polling:
    """``start()`` runs ``_run()`` (a subclass's polling loop) as a task; ``stop()`` cancels it
    and waits for it to end."""

    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        raise NotImplementedError


@dataclass
class Sampler(Polling):
    """Polls the pool's gauges while a workload runs."""

    urls: list[str]
    interval: float = 1.0
    waiting: list[float] = field(default_factory=list)  # pool-wide waiting, per sample
    running: list[float] = field(default_factory=list)
    kv: list[float] = field(default_factory=list)  # mean KV use over the pool, per sample

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=2)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    texts = await asyncio.gather(*(fetch(session, u) for u in self.urls))
                    per = [parse(t) for t in texts]
                    self.waiting.append(sum(total(s, "vllm:num_requests_waiting") for s in per))
                    self.running.append(sum(total(s, "vllm:num_requests_running") for s in per))
                    kv = [total(s, "vllm:kv_cache_usage_perc") for s in per]
                    self.kv.append(sum(kv) / len(kv))
                await asyncio.sleep(self.interval)

    def summary(self) -> dict[str, float]:
        """Max and mean over the samples taken while the pool had work (the clients' start-up
        and the drain at the end would only dilute the means)."""
        busy = [
            i for i, (w, r) in enumerate(zip(self.waiting, self.running, strict=False)) if w or r
        ]

        def mean(xs: list[float]) -> float:
            picked = [xs[i] for i in busy if i < len(xs)]
            return sum(picked) / len(picked) if picked else 0.0

        return {
            "waiting_max": max(self.waiting, default=0.0),
            "waiting_mean": mean(self.waiting),
            "running_mean": mean(self.running),
            "kv_mean": mean(self.kv),
            "kv_max": max(self.kv, default=0.0),
        }


async def pool_counters(urls: list[str]) -> dict[str, Any]:
    """Prefix-cache hit rate and requests per simulator, from their counters."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        texts = await asyncio.gather(*(fetch(session, u) for u in urls))
    per = [parse(t) for t in texts]
    hits = sum(total(s, "vllm:prefix_cache_hits_total") for s in per)
    queries = sum(total(s, "vllm:prefix_cache_queries_total") for s in per)
    # What a router knowing every server's cache at each arrival would have hit (the simulator's
    # fleet-wide oracle, sim/server.py).
    oracle = sum(total(s, "sim:oracle_prefix_cache_hits_total") for s in per)
    requests = [int(total(s, "vllm:request_success_total")) for s in per]
    return {
        "prefix_hits": hits,
        "prefix_queries": queries,
        "prefix_hit_rate": hits / queries if queries else 0.0,
        "oracle_hit_rate": oracle / queries if queries else 0.0,
        "requests_per_endpoint": requests,
    }


QUEUE_DURATION = "inference_extension_flow_control_request_queue_duration_seconds"


async def _queue_duration_by_priority(
    url: str, series: str, key: Callable[[dict[str, str]], str | None]
) -> dict[str, dict[str, int]]:
    """The EPP's queue-duration histogram ``series`` (``_count`` or ``_bucket``), summed per
    priority and ``key(labels)`` (None: the sample is left out); zero samples are left out."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        text = await fetch(session, url)
    out: dict[str, dict[str, int]] = defaultdict(dict)
    name = QUEUE_DURATION + series
    for n, labels, value in parse(text):
        inner = key(labels) if n == name and value else None
        if inner is not None:
            prio = labels.get("priority", "?")
            out[prio][inner] = out[prio].get(inner, 0) + int(value)
    return dict(out)


async def epp_outcomes(url: str) -> dict[str, dict[str, int]]:
    """EPP flow-control outcomes: {priority: {outcome: count}} (empty with flow control off)."""
    return await _queue_duration_by_priority(url, "_count", lambda lb: lb.get("outcome", "?"))


async def epp_dispatch_waits(url: str) -> dict[str, dict[str, int]]:
    """How long dispatched requests were held in flow control, per priority: the cumulative
    buckets of the queue-duration histogram, ``{priority: {le: count}}`` (empty buckets left
    out, as :func:`priority_report.bucket_quantile` allows)."""
    return await _queue_duration_by_priority(
        url,
        "_bucket",
        lambda lb: lb.get("le", "+Inf") if lb.get("outcome") == "Dispatched" else None,
    )
