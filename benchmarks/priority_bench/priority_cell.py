"""One cell of the priority benchmark on a started stack: speed, idle probe, load, numbers.

A cell is: set every simulator's speed (``POST /sim/slowdown``; server 0 at half of it for the
slow-server scenarios), measure the idle p90 (cached per output, streaming and slow scenario),
wait for an idle pool, then Poisson arrivals for a warm-up plus a measurement window while the
sampler reads the servers and the EPP and a meter reads each process's CPU. Latencies count the
requests sent inside the window; accounting counts every request of the cell.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from priority_load import MIX, Load, idle_probe, mean_service_s, pool_idle
from priority_machine import CpuMeter, verdict
from priority_report import cell_numbers, pct
from priority_sampler import SlotSampler
from routing_metrics import epp_dispatch_waits, epp_outcomes

SLOW_FACTOR = 2.0  # the slow server runs at half speed


@dataclass
class Stack:
    """A started pool and EPP: where to send, what to read, which processes to meter."""

    url: str
    metrics_url: str
    sims: list[str]  # host:port of each simulator
    sim_pid: int
    epp_pid: int


def delta(
    after: dict[str, dict[str, int]], before: dict[str, dict[str, int]]
) -> dict[str, dict[str, int]]:
    """Counts ``after`` minus ``before``, per priority (outcomes, or histogram buckets)."""
    out: dict[str, dict[str, int]] = {}
    for prio, counts in after.items():
        for outcome, n in counts.items():
            d = n - before.get(prio, {}).get(outcome, 0)
            if d:
                out.setdefault(prio, {})[outcome] = d
    return out


async def set_speed(sims: list[str], speed: float, slow: int | None) -> None:
    """Every simulator at ``speed`` times the profile's pace; ``slow`` (an index) at half it."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        for i, hp in enumerate(sims):
            factor = (SLOW_FACTOR if i == slow else 1.0) / speed
            async with session.post(f"http://{hp}/sim/slowdown?factor={factor}") as resp:
                resp.raise_for_status()


@dataclass
class CellRunner:
    """Runs cells on one stack; remembers idle p90s and the speed the pool is set to."""

    stack: Stack
    args: argparse.Namespace
    idle: dict[tuple[str, bool, bool], list[float]] = field(default_factory=dict)

    def speed(self, output: str) -> float:
        return self.args.speed if output == "long" else 1.0

    async def run(self, cell: dict[str, Any]) -> dict[str, Any]:
        t0 = time.monotonic()
        st, args = self.stack, self.args
        servers, seqs, output = cell["servers"], cell["seqs"], cell["output"]
        speed, slow = self.speed(output), cell.get("slow", "none")
        slots = servers * seqs
        service = mean_service_s(output, speed)
        # Requests per second the pool completes; a half-speed server completes half as many.
        per_server = [seqs / service / (SLOW_FACTOR if slow == "half" else 1.0)]
        per_server += [seqs / service] * (servers - 1)
        rate = cell["overload"] * sum(per_server)
        warm = max(1.0, 1.2 * service)
        crit_rate = MIX["critical"][1] * rate
        window = min(args.max_window, max(args.window, args.min_critical / crit_rate))
        metrics = [f"http://{e}/metrics" for e in st.sims]
        await set_speed(st.sims, speed, 0 if slow == "half" else None)
        key = (output, cell["stream"], slow == "half")
        if key not in self.idle:
            await pool_idle(metrics)
            parallel = max(1, min(4, slots // 4))
            self.idle[key] = await idle_probe(
                st.url, output, cell["stream"], args.idle_n, parallel=parallel
            )
        await pool_idle(metrics)
        before = await epp_outcomes(st.metrics_url)
        sampler = SlotSampler(metrics, st.metrics_url.replace("/metrics", "/status.json"))
        cpu = CpuMeter({"client": os.getpid(), "simulators": st.sim_pid, "epp": st.epp_pid})
        load = Load(st.url, rate, warm + window, output, cell["stream"], seed=servers)
        slowdown = None
        if slow == "midrun":
            slowdown = asyncio.create_task(self._slow_down_at(warm, speed))
        # The EPP's held-time histogram as the window opens: the ordering goal reads what was
        # dispatched from then on, not the warm-up's dispatches into a pool not yet full.
        waits_at_window = asyncio.create_task(self._waits_after(warm))
        sampler.start()
        cpu.start()
        try:
            await load.run(grace_s=min(5.0, 2 * service + 2), scored_from=warm)
        finally:
            shares = cpu.stop()
            await sampler.stop()
            if slowdown is not None:
                await slowdown
            waits_before = await waits_at_window
        lag = pct(load.lateness, 0.9) or 0.0
        machine = verdict(
            rate, len(load.shots), load.arrivals_s, lag, shares, cpu.waits, load.aborted
        )
        # A cell the machine could not drive: its accounting is for information only, so
        # the EPP's counts are not waited for as long.
        outcomes = await self._outcomes(
            before, len(load.shots), 5.0 if machine["machine_bound"] else 15.0
        )
        w0, w1 = load.started + warm, load.started + warm + window
        scored = [s for s in load.shots if w0 <= s.sent <= w1]
        waits = delta(await epp_dispatch_waits(st.metrics_url), waits_before)
        numbers = cell_numbers(
            load.shots, scored, self.idle[key], outcomes, sampler.window(w0, w1), slots, waits
        )
        numbers["machine"] = machine
        numbers["learned_slots"] = numbers["window_means"].get("epp_capacity")
        numbers["verdict"] = (
            "machine-bound"
            if machine["machine_bound"]
            else "met"
            if all(numbers["goal"].values())
            else "missed"
        )
        if slow != "none":
            since = w0 if slow == "midrun" else load.started
            numbers["slow_server"] = self._slow_numbers(sampler, since, w1, seqs)
        numbers.update(
            cell_wall_s=time.monotonic() - t0,
            offered_rate=rate,
            est_service_s=service,
            speed=speed,
            warmup_s=warm,
            window_s=window,
        )
        return {"cell": cell, "numbers": numbers}

    async def _waits_after(self, after_s: float) -> dict[str, dict[str, int]]:
        await asyncio.sleep(after_s)
        return await epp_dispatch_waits(self.stack.metrics_url)

    async def _slow_down_at(self, after_s: float, speed: float) -> None:
        await asyncio.sleep(after_s)
        await set_speed(self.stack.sims, speed, 0)

    async def _outcomes(
        self, before: dict[str, dict[str, int]], sent: int, wait_s: float
    ) -> dict[str, Any]:
        """The EPP's outcome counts for this cell, once they cover every request sent (the
        EPP records a cancellation when the front passes the disconnect on), or after
        ``wait_s``."""
        deadline = time.monotonic() + wait_s
        while True:
            outcomes = delta(await epp_outcomes(self.stack.metrics_url), before)
            if sum(sum(c.values()) for c in outcomes.values()) >= sent:
                return outcomes
            if time.monotonic() > deadline:
                return outcomes
            await asyncio.sleep(0.25)

    @staticmethod
    def _slow_numbers(sampler: SlotSampler, w0: float, w1: float, seqs: int) -> dict[str, Any]:
        """The slow server (0) from ``w0`` (its slowdown) to ``w1``: its queue, and its learned
        capacity over time. ``learned_s``: from ``w0`` until its capacity is at max-num-seqs
        (or one above, a probe) for good; 0 when it never left."""
        s = sampler.server(0, w0, w1)
        history = s.get("capacity", [])
        learned_s = 0.0
        for t, cap in history:
            if not seqs <= cap <= seqs + 1:
                learned_s = t + sampler.interval
        s["learned_s"] = learned_s
        s["capacity_min_max"] = (
            [min(c for _, c in history), max(c for _, c in history)] if history else None
        )
        return s
