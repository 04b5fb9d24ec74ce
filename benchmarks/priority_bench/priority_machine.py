"""Is a cell measuring the EPP, or this machine? CPU per process and the client's own lag.

A cell whose load generator, simulator process or EPP runs out of CPU measures the machine:
the arrival rate falls short of the intended one, tokens are delivered late, and every latency
grows for reasons the EPP does not control. Such a cell is marked *machine-bound* in the table
and counts neither as a pass nor as a fail of the goal. The signals:

- **achieved arrival rate** below ``RATE_SHORTFALL`` of the intended one, by more than a Poisson
  process's own spread (:func:`short_of_rate`: the client could not send fast enough; a few
  dozen Poisson arrivals alone fall 20% short of their mean one time in ten);
- **client lag**: the p90 lateness of the client's scheduled arrivals above ``LAG_LIMIT_S``
  (its event loop was busy, so its clocks, and the TTFB it measures, are late);
- **CPU**: the client, the simulators' process or the EPP's process at or above ``CPU_LIMIT``
  of one core (each is one Python event loop: at a full core it queues work of its own);
- **starved**: one of them spent ``WAIT_LIMIT`` or more of the cell waiting for a core
  (``/proc/PID/schedstat``'s run-queue time, main thread): other users of the machine held the
  CPUs, so tokens, dispatches and timestamps ran late by that much;
- the machine's **load average** is recorded beside them.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

RATE_SHORTFALL = 0.9
LAG_LIMIT_S = 0.05
CPU_LIMIT = 0.9
WAIT_LIMIT = 0.2  # seconds waiting for a core per second
_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` (None when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime (stat fields 14, 15)


def wait_seconds(pid: int) -> float | None:
    """Seconds the main thread of ``pid`` has waited on a run queue (None when unknown)."""
    try:
        with open(f"/proc/{pid}/schedstat", encoding="ascii") as fh:
            return int(fh.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


@dataclass
class CpuMeter:
    """CPU share (cores) and run-queue wait (s/s) of named processes between ``start()`` and
    ``stop()``."""

    pids: dict[str, int]
    _t0: float = 0.0
    _c0: dict[str, float] = field(default_factory=dict)
    _w0: dict[str, float] = field(default_factory=dict)
    shares: dict[str, float] = field(default_factory=dict)
    waits: dict[str, float] = field(default_factory=dict)

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._c0 = {n: c for n, p in self.pids.items() if (c := cpu_seconds(p)) is not None}
        self._w0 = {n: w for n, p in self.pids.items() if (w := wait_seconds(p)) is not None}

    def stop(self) -> dict[str, float]:
        wall = max(1e-6, time.monotonic() - self._t0)
        for name, pid in self.pids.items():
            now, waited = cpu_seconds(pid), wait_seconds(pid)
            if now is not None and name in self._c0:
                self.shares[name] = (now - self._c0[name]) / wall
            if waited is not None and name in self._w0:
                self.waits[name] = (waited - self._w0[name]) / wall
        return self.shares


def short_of_rate(sent: int, rate: float, elapsed_s: float, share: float) -> bool:
    """Whether ``sent`` arrivals in ``elapsed_s`` fall short of ``share`` of ``rate``'s mean,
    and by more than three standard deviations of a Poisson count (so chance alone does not
    mark a cell of a few dozen arrivals machine-bound)."""
    expected = rate * elapsed_s
    return sent < share * expected and sent < expected - 3 * math.sqrt(expected)


def verdict(
    intended_rate: float,
    sent: int,
    arrivals_s: float,
    lag_p90: float,
    cpu: dict[str, float],
    waits: dict[str, float],
    aborted: str = "",
) -> dict[str, Any]:
    """The machine-bound test of one cell: which signals tripped (empty = the EPP measured).
    ``sent`` arrivals in ``arrivals_s`` seconds; ``aborted``: the client stopped sending early,
    and why."""
    reasons = [f"client stopped: {aborted}"] if aborted else []
    achieved_rate = sent / arrivals_s if arrivals_s > 0 else 0.0
    if short_of_rate(sent, intended_rate, arrivals_s, RATE_SHORTFALL):
        reasons.append(f"arrivals {achieved_rate:.0f}/s of {intended_rate:.0f}/s")
    if lag_p90 > LAG_LIMIT_S:
        reasons.append(f"client lag p90 {lag_p90 * 1000:.0f} ms")
    for name, share in sorted(cpu.items()):
        if share >= CPU_LIMIT:
            reasons.append(f"{name} CPU {share:.2f} cores")
    for name, waited in sorted(waits.items()):
        if waited >= WAIT_LIMIT:
            reasons.append(f"{name} starved {waited:.2f} s/s")
    return {
        "machine_bound": bool(reasons),
        "reasons": reasons,
        "intended_rate": intended_rate,
        "achieved_rate": achieved_rate,
        "client_lag_p90_s": lag_p90,
        "cpu_cores": cpu,
        "cpu_wait_s_per_s": waits,
        "loadavg_1m": os.getloadavg()[0],
    }


def carries_up(machine: dict[str, Any]) -> str:
    """The signal of a machine-bound cell that a higher load of the same cell would trip
    again (the client stopped sending, or a process used a whole core: both grow with the
    arrival rate), or "". Starvation and lag are left out: other users of the machine can
    cause them, so they say nothing certain about the next cell."""
    for reason in machine.get("reasons", []):
        if reason.startswith("client stopped") or " CPU " in reason:
            return str(reason)
    return ""
