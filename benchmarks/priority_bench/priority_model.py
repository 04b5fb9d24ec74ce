"""What any non-preemptive holdback could reach in a priority cell: a discrete-event model.

The model is the best case for the EPP. It knows every slot's state the instant it changes,
adds no latency, and dispatches a critical request the moment a slot is free. Below critical
there is always a backlog (standard and sheddable are 80% of arrivals at an overload of 1.5x or
more, so they alone exceed capacity), and it fills every free slot beyond the ``reserve`` slots
that holdback keeps for critical. A critical arrival takes a free slot if there is one, else it
waits for the next completion anywhere in the pool. Nothing running is ever stopped.

For a reserve of ``k`` slots it reports critical's wait (p90, p99) and the share of slots
busy. A cell's latency goal allows critical a time to first byte of ``2 * idle + 50 ms`` (p90)
and ``3 * idle + 50 ms`` (p99). The model counts the wait alone against that allowance, as if a
dispatched request answered at once, so a cell it finds infeasible is infeasible for any real
EPP with the same reserve. Arrivals, request mix and service times are the benchmark's own
(``priority_load``).
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from dataclasses import dataclass

from priority_load import MIX, OUTPUTS, PROMPT_WORDS, mean_service_s

BUSY_GOAL = 0.9
CRITICAL_SHARE = MIX["critical"][1]
FULL_BATCH = 1.5  # the simulator's slowdown at a full batch, as in mean_service_s


@dataclass(frozen=True, slots=True)
class Outcome:
    reserve: int
    wait_p90: float
    wait_p99: float
    busy: float
    waited: float  # share of critical arrivals that found no free slot


def service_s(rng: random.Random, output: str, speed: float, itl: float = 0.012) -> float:
    """One request's time in a slot: the simulator's prefill of a benchmark prompt plus its
    decode, at full batch (the model behind ``mean_service_s``, drawn per request)."""
    prefill = 0.03 + 0.0002 * rng.uniform(*PROMPT_WORDS)
    return (prefill + itl * rng.uniform(*OUTPUTS[output])) * FULL_BATCH / speed


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, math.ceil(q * len(xs)) - 1)] if xs else 0.0


def simulate(
    slots: int,
    output: str,
    overload: float,
    reserve: int,
    speed: float = 1.0,
    criticals: int = 20000,
    seed: int = 1,
) -> Outcome:
    """Run the model until ``criticals`` critical requests have arrived (after a warm-up of a
    tenth as many) and return what they waited and how busy the slots were."""
    rng = random.Random(seed)
    rate = CRITICAL_SHARE * overload * slots / mean_service_s(output, speed)
    ends = [rng.random() * service_s(rng, output, speed) for _ in range(slots)]
    heapq.heapify(ends)  # every slot busy at the start, with a random residual time
    idle, now, busy_area, t_start = 0, 0.0, 0.0, None
    queue: deque[tuple[float, bool]] = deque()  # critical arrivals waiting: (sent, scored)
    waits: list[float] = []
    waited = 0
    warmup = criticals // 10
    arrived = 0
    next_arrival = rng.expovariate(rate)
    while arrived < criticals + warmup or queue:
        t = min(next_arrival, ends[0]) if ends else next_arrival
        if t_start is not None:
            busy_area += (slots - idle) * (t - now)
        now = t
        if next_arrival <= (ends[0] if ends else math.inf):
            next_arrival = now + rng.expovariate(rate)
            if arrived >= criticals + warmup:
                continue
            arrived += 1
            scored = arrived > warmup
            if scored and t_start is None:
                t_start = now
            if idle:
                idle -= 1
                heapq.heappush(ends, now + service_s(rng, output, speed))
                if scored:
                    waits.append(0.0)
            else:
                queue.append((now, scored))
            continue
        heapq.heappop(ends)
        if queue:
            sent, scored = queue.popleft()
            if scored:
                waits.append(now - sent)
                waited += 1
            heapq.heappush(ends, now + service_s(rng, output, speed))
        elif idle + 1 > reserve:  # a lower band may take it: the reserve stays free
            heapq.heappush(ends, now + service_s(rng, output, speed))
        else:
            idle += 1
    elapsed = now - (t_start or 0.0)
    return Outcome(
        reserve=reserve,
        wait_p90=_pct(waits, 0.9),
        wait_p99=_pct(waits, 0.99),
        busy=busy_area / (slots * elapsed) if elapsed > 0 else 1.0,
        waited=waited / len(waits) if waits else 0.0,
    )


def frontier(
    slots: int, output: str, overload: float, speed: float = 1.0, criticals: int = 20000
) -> list[Outcome]:
    """The model at reserve 0, 1, 2, ... until the slots' busy share falls below the goal (it
    only falls as the reserve grows) or every slot but one is reserved."""
    out: list[Outcome] = []
    for k in range(slots):
        o = simulate(slots, output, overload, k, speed, criticals)
        out.append(o)
        if o.busy < BUSY_GOAL:
            break
    return out


def meets(o: Outcome, idle_p90: float) -> bool:
    """The cell's goal, with the wait alone as critical's time to first byte: p90 within
    ``2 * idle + 50 ms``, p99 within ``3 * idle + 50 ms``, and at least 90% of slots busy."""
    return (
        o.busy >= BUSY_GOAL
        and o.wait_p90 <= 2 * idle_p90 + 0.05
        and o.wait_p99 <= 3 * idle_p90 + 0.05
    )


def best(outcomes: list[Outcome], idle_p90: float) -> Outcome | None:
    """The smallest reserve that :func:`meets` the goal; None when no reserve does (the cell is
    out of reach for any holdback reserve)."""
    return next((o for o in outcomes if meets(o, idle_p90)), None)
