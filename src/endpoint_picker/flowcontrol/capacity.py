"""How many requests one endpoint can run at once, learned from what it reports.

A model server runs at most N requests (vLLM ``--max-num-seqs``, or fewer when its KV cache is
full) and queues the rest in its own FIFO. Flow control can order requests only while they are
still in the EPP, so the EPP should send each server exactly N: no fewer (idle slots), no more
(a server-side queue the EPP cannot reorder). Nobody tells us N (vLLM does not export
max-num-seqs, and a KV-bound server's N moves with its prompts), so it is learned per endpoint:

- **Plateau.** A server that queues (``waiting > 0``) while full is running all it can: N is
  what it runs. "Full" is running as many as the most it ran within ``plateauWindow``: an engine
  admits new requests once per step, so a scrape often catches one just arrived, waiting while
  slots are free (the more requests arrive per step, the more often), and then ``running`` is
  below what the server ran a moment before; such a scrape says nothing about N. N is taken
  once the server queued full at that level at half of the last ten scrapes (a request caught
  between "arrived" and "admitted" can still meet a full server now and then; and while slow
  start raises ``running`` scrape by scrape, each new high is "full" only once). A server whose
  N shrank (resized, KV-bound) counts as full again once its larger past leaves the window.
- **Growth.** An endpoint given everything it may take (the EPP's requests in flight to it, or
  the server's own ``running``, at N) with nothing waiting may have room for more. The EPP's
  count matters: a request between two holders (finished on the server, its response not yet
  through the front; or dispatched and on its way) keeps the server's ``running`` below N at
  most scrapes of a busy server with short requests. Before any plateau was seen, N grows by
  half at every such scrape (slow start); after one, N is probed one higher every
  ``probeInterval``, and a probe the server accepts (runs above the old plateau without
  queueing) switches back to growing. A probe the server refuses (it queues while running
  exactly the old plateau) is withdrawn at that first scrape: the old plateau was confirmed, so
  no persistence test is needed, and a probe held open for five scrapes kept a request waiting
  in that server (behind whatever it runs) and took the holdback's free slot from the top
  band. Queueing while running *below* the old plateau is admission lag, not a refusal.
- **KV-bound.** At or above ``kvCacheUtilThreshold`` of KV cache the endpoint does not grow, and
  N drops to what it runs: the next request would wait for blocks.

Each scrape is one observation (``Metrics.update_time`` tells a new one from a re-read), and all
time is the caller's ``now``, so the rules are tested with a fake clock.
"""

from __future__ import annotations

import math
from collections import deque

from endpoint_picker.datastore import Metrics

# A capacity below the current one is believed when at least CONFIRM of the last RECENT scrapes
# saw the server queue. A server that got smaller (or KV-bound) queues at nearly every scrape;
# one that merely had not admitted a request yet (its scheduler step, a busy CPU) only now
# and then, and would otherwise lose a slot until the next probe.
RECENT = 10
CONFIRM = 5


class CapacityLearner:
    """The learned capacity of one endpoint (``capacity``, an integer >= 1)."""

    __slots__ = (
        "_growing",
        "_peaks",
        "_plateau",
        "_plateau_at",
        "_probing",
        "_recent",
        "capacity",
        "kv_threshold",
        "last_update",
        "max_capacity",
        "plateau_window",
        "probe_interval",
    )

    def __init__(
        self,
        initial: int = 4,
        *,
        max_capacity: int = 4096,
        probe_interval: float = 5.0,
        plateau_window: float = 2.0,
        kv_threshold: float = 0.95,
    ) -> None:
        self.capacity = max(1, min(initial, max_capacity))
        self.max_capacity = max_capacity
        self.probe_interval = probe_interval
        self.plateau_window = plateau_window
        self.kv_threshold = kv_threshold
        self.last_update = 0.0  # update_time of the last scrape observed
        # (time, running) of the scrapes within plateau_window whose running no later scrape
        # matched: decreasing in running, so the first is the window's most (a sliding max).
        self._peaks: deque[tuple[float, int]] = deque()
        # The last scrapes: ``running`` where the server queued while full, else 0.
        self._recent: deque[int] = deque(maxlen=RECENT)
        self._plateau = 0  # last confirmed plateau; 0 = none seen yet
        self._plateau_at = -math.inf
        self._growing = True  # slow start until a plateau is seen
        self._probing = False  # capacity is one probe above the confirmed plateau

    @property
    def confirmed(self) -> int:
        """The slots the server is known to run: ``capacity`` less an open probe."""
        return self._plateau if self._probing else self.capacity

    def observe(self, metrics: Metrics, now: float, inflight: int = 0) -> bool:
        """Learn from ``metrics`` if it is a scrape not yet seen; True when capacity changed.
        ``inflight``: the EPP's requests in flight to the endpoint now."""
        if metrics.update_time <= 0 or metrics.update_time == self.last_update:
            return False
        self.last_update = metrics.update_time
        before = self.capacity
        running, waiting = metrics.running_requests_size, metrics.waiting_queue_size
        top = self._most_recently(running, now)
        if waiting > 0 and self._probing and running == self._plateau:
            # A refused probe: back to the confirmed plateau at once (see the module).
            self.capacity, self._plateau_at, self._probing = self._plateau, now, False
            self._recent.append(running)
            return True
        full = waiting > 0 and 0 < running >= top
        self._recent.append(running if full else 0)
        if full:
            self._on_queueing(running, now)
        elif waiting == 0:
            self._on_idle_queue(running, inflight, metrics.kv_cache_usage_percent, now)
        return self.capacity != before

    def _most_recently(self, running: int, now: float) -> int:
        """The most the server ran within ``plateau_window``, this scrape included."""
        peaks = self._peaks
        while peaks and peaks[-1][1] <= running:
            peaks.pop()
        peaks.append((now, running))
        while now - peaks[0][0] > self.plateau_window:
            peaks.popleft()
        return peaks[0][1]

    def _on_queueing(self, running: int, now: float) -> None:
        """The server queues while full (``running`` is the most it ran within the window):
        if it did so at this level persistently, it runs all it can, and its capacity is
        ``running``."""
        if sum(r >= running for r in self._recent) < CONFIRM:
            return  # sporadic, or while running still grew (slow start): not a plateau yet
        self.capacity = min(running, self.max_capacity)
        self._plateau, self._plateau_at = self.capacity, now
        self._growing = self._probing = False

    def _on_idle_queue(self, running: int, inflight: int, kv: float, now: float) -> None:
        """Nothing waits: grow when every learned slot is given out and the cache has room."""
        if kv >= self.kv_threshold:
            self.capacity = max(1, min(self.capacity, running))
            return
        if not self._growing and self._plateau and running > self._plateau:
            self._growing, self._probing = True, False  # a probe went through: it has grown
        if max(running, inflight) < self.capacity or self.capacity >= self.max_capacity:
            return
        if self._growing:
            self.capacity = min(self.max_capacity, self.capacity + max(1, self.capacity // 2))
        elif now - self._plateau_at >= self.probe_interval:
            self.capacity += 1
            self._plateau_at = now  # the next probe waits a full interval again
            self._probing = self.capacity == self._plateau + 1
