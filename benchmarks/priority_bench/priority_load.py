"""The priority benchmark's client: Poisson arrivals of three objectives, per-request timing,
and a sampler of the pool's busy slots.

One aiohttp session per run with an *unlimited* connection pool (``limit=0``): aiohttp's default
of 100 connections would queue requests inside the client, which looks exactly like an EPP delay.
Time to first byte is measured on the response body (the first SSE chunk when streaming, the
whole body otherwise), so both modes time what a user waits for before seeing anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from priority_machine import short_of_rate
from routing_metrics import fetch, parse, total

OBJECTIVE_HEADER = "x-gateway-inference-objective"
MODEL = "sim-model"
# Objective -> (priority, share of arrivals). critical + standard stay below capacity up to 2.5x
# overload, so sheddable absorbs the backlog, as the embedded objectives intend.
MIX: dict[str, tuple[int, float]] = {
    "critical": (10, 0.2),
    "standard": (0, 0.2),
    "sheddable": (-10, 0.6),
}
OUTPUTS = {"short": (16, 64), "long": (256, 512)}
PROMPT_WORDS = (60, 120)
ABORT_LATE_S = 1.0  # an arrival this late: the client cannot keep the rate
MAX_SENT = 4000  # requests per cell at most (the client's own memory and sockets)
_WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa"]


@dataclass(slots=True)
class Shot:
    """One request's fate, as the client saw it."""

    objective: str
    priority: int
    sent: float
    ttfb: float | None = None  # seconds to the first body byte
    status: int | None = None  # HTTP status; None = cancelled by the client at the end
    error: str = ""


_SERIAL = itertools.count()


def prompt(rng: random.Random) -> str:
    """A distinct prompt (a random word salad), so no two requests share a cached prefix. It
    starts with a serial number: cells with the same seed (and every idle probe) draw the same
    random sequence, and one EPP serves several cells, so without it a later cell would repeat
    an earlier cell's prompts, which its prefix index and the servers' caches still hold."""
    n = rng.randint(*PROMPT_WORDS)
    head = f"{next(_SERIAL)} {rng.random():.12f} "
    return head + " ".join(rng.choice(_WORDS) for _ in range(n))


def mean_service_s(
    output: str, speed: float = 1.0, itl: float = 0.012, factor: float = 1.5
) -> float:
    """The 8b-h100 simulator's mean request time at full batch, prefill plus decode, with its
    latencies divided by ``speed`` (POST /sim/slowdown?factor=1/speed)."""
    lo, hi = OUTPUTS[output]
    prefill = 0.03 + 0.0002 * sum(PROMPT_WORDS) / 2
    return (prefill + itl * (lo + hi) / 2) * factor / speed


async def one(
    session: aiohttp.ClientSession,
    url: str,
    shot: Shot,
    body: dict[str, Any],
    first_byte_only: bool = False,
) -> None:
    """Send one completion and record status and time to first byte; cancellation leaves
    ``status`` None (the client gave up at the end of the run). ``first_byte_only`` stops
    reading there (the idle probe: the rest of a stream does not change its TTFB)."""
    headers = {OBJECTIVE_HEADER: shot.objective}
    try:
        async with session.post(url, json=body, headers=headers) as resp:
            shot.status = resp.status
            async for _chunk in resp.content.iter_any():
                if shot.ttfb is None:
                    shot.ttfb = time.monotonic() - shot.sent
                    if first_byte_only:
                        break
            if shot.ttfb is None:
                shot.ttfb = time.monotonic() - shot.sent
    except asyncio.CancelledError:
        if shot.status is None or shot.ttfb is None:
            shot.status = None
        raise
    except (aiohttp.ClientError, TimeoutError) as err:
        shot.status, shot.error = 0, repr(err)[:200]


@dataclass
class Load:
    """Poisson arrivals at ``rate``/s for ``duration`` s through ``url`` (the front)."""

    url: str
    rate: float
    duration: float
    output: str
    stream: bool
    seed: int = 0
    shots: list[Shot] = field(default_factory=list)
    lateness: list[float] = field(default_factory=list)  # per arrival: how late it was sent
    started: float = 0.0  # monotonic time of the first possible arrival
    arrivals_s: float = 0.0  # how long the arrivals took to send
    aborted: str = ""  # why arrivals stopped early: this machine cannot drive the cell

    def _body(self, rng: random.Random) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": MODEL,
            "prompt": prompt(rng),
            "max_tokens": rng.randint(*OUTPUTS[self.output]),
            # Exactly max_tokens: without it the simulator (as a model would) stops early, at a
            # length uniform in [1, max_tokens], halving the mean output, the service time
            # (mean_service_s) and so the overload the cell means to offer.
            "ignore_eos": True,
        }
        if self.stream:
            body["stream"] = True
        return body

    async def run(self, grace_s: float, scored_from: float = 0.0) -> None:
        """Arrivals for ``duration``; then up to ``grace_s`` for critical and standard sent
        ``scored_from`` s or later into the run to get their first byte; then every request
        still open is cancelled (client disconnect)."""
        rng = random.Random(self.seed)
        names = list(MIX)
        weights = [MIX[n][1] for n in names]
        connector = aiohttp.TCPConnector(limit=0, force_close=False)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
        tasks: list[asyncio.Task[None]] = []
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            url = self.url + "/v1/completions"
            start = self.started = time.monotonic()
            t = start
            while True:
                t += rng.expovariate(self.rate)
                if t - start > self.duration:
                    break
                await asyncio.sleep(max(0.0, t - time.monotonic()))
                now = time.monotonic()
                self.lateness.append(now - t)
                self.aborted = _cannot_drive(now - t, now - start, len(self.shots), self.rate)
                if self.aborted:
                    break
                name = rng.choices(names, weights)[0]
                shot = Shot(name, MIX[name][0], now)
                self.shots.append(shot)
                tasks.append(asyncio.create_task(one(session, url, shot, self._body(rng))))
            self.arrivals_s = time.monotonic() - start
            # At least a second, so that the last arrivals have reached the EPP before the
            # client gives up on them (a request cancelled on its way is never counted).
            await asyncio.sleep(1.0)
            deadline = time.monotonic() + (0.0 if self.aborted else grace_s)
            scored = [s for s in self.shots if s.priority >= 0 and s.sent >= start + scored_from]
            while time.monotonic() < deadline:
                if all(s.ttfb is not None or s.status not in (None, 200) for s in scored):
                    break
                await asyncio.sleep(0.1)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def _cannot_drive(late_s: float, elapsed_s: float, sent: int, rate: float) -> str:
    """Why the client should stop sending (it cannot keep the cell's rate), or "". Such a cell
    would otherwise send its whole backlog late and take minutes to measure nothing."""
    if late_s > ABORT_LATE_S:
        return f"arrivals {late_s:.1f} s late"
    if elapsed_s > 2.0 and short_of_rate(sent, rate, elapsed_s, 0.8):
        return f"sent {sent / elapsed_s:.0f}/s of {rate:.0f}/s"
    if sent >= MAX_SENT:
        return f"over {MAX_SENT} requests"
    return ""


async def idle_probe(url: str, output: str, stream: bool, n: int, parallel: int) -> list[float]:
    """Time to first byte of ``n`` critical requests on an idle pool, ``parallel`` at a time."""
    rng = random.Random(12345)
    sem = asyncio.Semaphore(parallel)
    load = Load(url, 1.0, 0.0, output, stream)
    shots: list[Shot] = []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def go() -> None:
            async with sem:
                shot = Shot("critical", 10, time.monotonic())
                shots.append(shot)
                await one(session, url + "/v1/completions", shot, load._body(rng), True)

        await asyncio.gather(*(go() for _ in range(n)))
    return [s.ttfb for s in shots if s.ttfb is not None and s.status == 200]


def _gauge(page: str, name: str) -> float:
    """A gauge's value from Prometheus text, summed over its series."""
    return total(parse(page), name)


async def pool_idle(urls: list[str], wait_s: float = 60.0) -> bool:
    """Until no simulator runs or queues anything (so cells do not overlap)."""
    deadline = time.monotonic() + wait_s
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                pages = await asyncio.gather(*(fetch(session, u) for u in urls))
                busy = sum(
                    _gauge(p, "vllm:num_requests_running") + _gauge(p, "vllm:num_requests_waiting")
                    for p in pages
                )
                if busy == 0:
                    return True
            await asyncio.sleep(0.2)
    return False
