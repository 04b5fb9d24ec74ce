"""What one endpoint holds now, from the server's side: its last scrape plus what is on its way.

The EPP counts a request in flight from dispatch until the front reports the response's end.
The server frees the slot earlier: at its last token, while the stream's tail, the proxy and the
front's report (an access-log flush, the ext_proc stream's end) still take their time. On this
project's 2-core benchmark that gap held 12-16% of the pool's slots. The server's own count
shows the slot free at the next scrape, so the learned-capacity detector takes the smaller of
the two (``ServerView.load``).

A request on its way to the server is in neither its running nor its waiting count, so every
request dispatched since ``allowance`` before the scrape counts on top of what the scrape
showed. The allowance adapts: a scrape that shows the server queueing after the view counted
requests out means one was on its way longer than allowed, so the allowance doubles (up to
``MAX_ALLOWANCE``); each scrape with nothing waiting lets it decay back towards the configured
``transitAllowance``. A server that queues is full whatever the EPP believes, so its view frees
nothing then. And the view never frees more than ``MAX_FREED_SHARE`` of the endpoint's capacity
(at least one slot): the gap it closes is a few requests in their last milliseconds, while a
view that counts out more is wrong (on a starved machine, requests took seconds to reach the
server and the sweep saw the EPP send half as many again as the servers could run).
"""

from __future__ import annotations

import math
from bisect import bisect_left

from endpoint_picker.datastore import Metrics

MAX_ALLOWANCE = 1.0  # seconds
MAX_FREED_SHARE = 0.25  # of the endpoint's capacity (at least one slot)
DECAY = 0.95  # per scrape with nothing waiting


class ServerView:
    """One endpoint's recent dispatch times and transit allowance."""

    __slots__ = ("_counted_out", "_last_update", "allowance", "base", "dispatches")

    def __init__(self, allowance: float) -> None:
        self.base = self.allowance = allowance
        self.dispatches: list[float] = []  # in time order
        self._last_update = 0.0
        self._counted_out = False  # the view lowered the load since the last scrape

    def record(self, now: float) -> None:
        self.dispatches.append(now)

    def _observe(self, m: Metrics) -> None:
        """Adapt the allowance once per scrape (see the module)."""
        if m.update_time == self._last_update:
            return
        self._last_update = m.update_time
        if m.waiting_queue_size > 0:
            if self._counted_out:
                self.allowance = min(MAX_ALLOWANCE, self.allowance * 2)
        else:
            self.allowance = max(self.base, self.allowance * DECAY)
        self._counted_out = False
        # Dispatches older than any allowance can ask for are in the scrape (or finished).
        old = bisect_left(self.dispatches, m.update_time - MAX_ALLOWANCE)
        if old > 64 or old == len(self.dispatches):
            del self.dispatches[:old]

    def load(self, inflight: int, m: Metrics, capacity: int) -> int:
        """The smaller of the EPP's ``inflight`` and the server's view after scrape ``m``, never
        more than ``MAX_FREED_SHARE`` of ``capacity`` below ``inflight``."""
        self._observe(m)
        if m.waiting_queue_size > 0:
            return inflight
        on_way = len(self.dispatches) - bisect_left(self.dispatches, m.update_time - self.allowance)
        freed = max(1, math.ceil(MAX_FREED_SHARE * capacity))
        seen = max(m.running_requests_size + on_way, inflight - freed)
        if seen < inflight:
            self._counted_out = True
            return seen
        return inflight
