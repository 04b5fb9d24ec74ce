"""The live status page: ``/`` (one HTML file, inline JS) and ``/status.json`` on the metrics port.

The request path pays for it only with what it already has at hand: the director hands each
scheduling result to :meth:`DecisionLog.record` (one tuple appended to a bounded deque) and each
final outcome to :meth:`DecisionLog.outcome` (one counter increment). Everything the page shows
(per-scorer scores, endpoint state, flow-control bands) is turned into JSON only when a browser
asks, at most once per poll, so an open page costs the request path nothing more than a closed
one.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter, deque
from collections.abc import Callable
from importlib import resources
from typing import Any

from aiohttp import web

from endpoint_picker.clock import SYSTEM_CLOCK, Clock
from endpoint_picker.datastore import Datastore, Endpoint
from endpoint_picker.requests.types import InferenceRequest

# How many recent decisions the page shows, how many of them with every candidate's scores
# (the costly part to render), and how many objectives/statuses it counts (objective names
# come from clients: past the bound new ones fold into "other").
MAX_DECISIONS = 25
DETAILED_DECISIONS = 5
MAX_TOTALS = 1_000
# Saturation samples: one a second for five minutes.
SATURATION_SAMPLES = 300


class DecisionLog:
    """Recent scheduling decisions and request totals by (objective, status), bounded."""

    def __init__(self, maxlen: int = MAX_DECISIONS, clock: Clock = SYSTEM_CLOCK) -> None:
        self.clock = clock
        self._recent: deque[tuple[float, InferenceRequest, float, Any]] = deque(maxlen=maxlen)
        # Rendered decisions by entry identity, so a poll renders only what is new.
        self._rendered: dict[int, tuple[tuple[Any, ...], dict[str, Any]]] = {}
        self.totals: Counter[tuple[str, str]] = Counter()
        self.dispatched: Counter[int] = Counter()  # by priority, for the page's dispatch rate

    def record(self, request: InferenceRequest, result: Any, waited: float) -> None:
        """A request was scheduled after ``waited`` seconds in the EPP (hot path: no copies)."""
        self._recent.append((self.clock.now(), request, waited, result))
        self.dispatched[request.priority] += 1

    def outcome(self, request: InferenceRequest | None, status: str) -> None:
        """A request ended with ``status`` (``completed``, ``cancelled`` or an error code)."""
        objective = (request.objective or "") if request is not None else ""
        key = (objective, status)
        if key not in self.totals and len(self.totals) >= MAX_TOTALS:
            key = ("other", status)
        self.totals[key] += 1

    def recent(self, detailed: int = DETAILED_DECISIONS) -> list[dict[str, Any]]:
        """The recent decisions, newest first; the newest ``detailed`` ones with each scorer's
        score for every candidate."""
        out = []
        rendered: dict[int, tuple[tuple[Any, ...], dict[str, Any]]] = {}
        for i, entry in enumerate(reversed(self._recent)):
            full = i < detailed
            key = id(entry) * 2 + full
            hit = self._rendered.get(key)
            if hit is None or hit[0] is not entry:
                hit = (entry, _decision(*entry, detailed=full))
            rendered[key] = hit
            out.append(hit[1])
        self._rendered = rendered
        return out


def _decision(
    at: float, req: InferenceRequest, waited: float, result: Any, *, detailed: bool = True
) -> dict[str, Any]:
    endpoints = getattr(result, "endpoints", None) or []
    summary: dict[str, Any] = {
        "at": at,
        "request_id": req.request_id,
        "objective": req.objective or "",
        "model": req.target_model,
        "priority": req.priority,
        "fairness_id": req.fairness_id,
        "waited_s": round(waited, 4),
        "endpoint": endpoints[0].name if endpoints else "",
        "profiles": [],
    }
    if not detailed:
        return summary
    profiles: list[dict[str, Any]] = summary["profiles"]
    for name, run in (getattr(result, "profile_results", None) or {}).items():
        if run is None:
            profiles.append({"name": name, "picked": [], "candidates": []})
            continue
        candidates = [
            {
                "endpoint": ep.name,
                "scores": {scorer: round(s[i], 4) for scorer, _w, s in run.scores},
                "total": round(run.totals[i], 4) if run.totals else None,
            }
            for i, ep in enumerate(run.candidates)
        ]
        profiles.append(
            {
                "name": name,
                "picked": [ep.name for ep in run.endpoints],
                "weights": {scorer: w for scorer, w, _s in run.scores},
                "candidates": candidates,
            }
        )
    return summary


def _endpoint(
    ep: Endpoint, now: float, stale_after: float, learned: Callable[[str], int | None] | None
) -> dict[str, Any]:
    m = ep.metrics
    age = m.age(now)
    return {
        "name": ep.name,
        "address": ep.hostport,
        "waiting": m.waiting_queue_size,
        "running": m.running_requests_size,
        "kv_cache_usage": round(m.kv_cache_usage_percent, 4),
        "lora_active": sorted(m.active_models),
        "lora_waiting": sorted(m.waiting_models),
        "inflight": ep.inflight_requests,
        "capacity": learned(ep.name) if learned is not None else None,
        "metrics_age_s": None if age == float("inf") else round(age, 3),
        "healthy": age <= stale_after,
    }


def _flow_control(admission: Any, now: float) -> dict[str, Any]:
    registry = getattr(admission, "registry", None)
    if registry is None:  # legacy admission: no queues
        return {"enabled": False, "saturation": getattr(admission, "saturation", None), "bands": []}
    bands = []
    for priority in sorted(registry.bands, reverse=True):
        band = registry.bands[priority]
        flows = []
        for fid, flow in band.flows.items():
            head = flow.peek() if flow.len else None
            flows.append(
                {
                    "fairness_id": fid,
                    "queued": flow.len,
                    "bytes": flow.bytes,
                    "oldest_s": round(now - head.enqueue_time, 3) if head is not None else 0.0,
                }
            )
        bands.append(
            {"priority": priority, "queued": band.len, "bytes": band.bytes, "flows": flows}
        )
    return {"enabled": True, "saturation": getattr(admission, "saturation", None), "bands": bands}


def _compact(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


class StatusPage:
    """Serves the page and its JSON; samples pool saturation once a second while running."""

    def __init__(
        self,
        datastore: Datastore,
        decisions: DecisionLog,
        admission: Callable[[], Any],
        *,
        staleness_threshold: float = 2.0,
        clock: Clock = SYSTEM_CLOCK,
        sample_interval: float = 1.0,
    ) -> None:
        self.datastore = datastore
        self.decisions = decisions
        self.admission = admission
        self.staleness_threshold = staleness_threshold
        self.clock = clock
        self.sample_interval = sample_interval
        self.saturation: deque[tuple[float, float]] = deque(maxlen=SATURATION_SAMPLES)
        self._task: asyncio.Task[None] | None = None
        self._html = resources.files(__package__).joinpath("status.html").read_bytes()

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/", self._page)
        app.router.add_get("/status.json", self._json)

    def snapshot(self) -> dict[str, Any]:
        now = self.clock.now()
        pool = self.datastore.pool
        admission = self.admission()
        # The learned-capacity detector's per-endpoint capacity, when that detector is in use.
        learned = getattr(getattr(admission, "detector", None), "learned", None)
        totals: dict[str, dict[str, int]] = {}
        for (objective, status), n in self.decisions.totals.items():
            totals.setdefault(objective or "(none)", {})[status] = n
        return {
            "now": now,
            "wall_time": time.time(),
            "pool": pool.metadata.name if pool is not None else "",
            "endpoints": [
                _endpoint(ep, now, self.staleness_threshold, learned)
                for ep in self.datastore.endpoints()
            ],
            "flow_control": _flow_control(admission, now),
            "saturation_history": [[round(t, 3), round(s, 4)] for t, s in self.saturation],
            "dispatched": {str(p): n for p, n in sorted(self.decisions.dispatched.items())},
            "totals": totals,
            "decisions": self.decisions.recent(),
        }

    async def _page(self, _: web.Request) -> web.Response:
        return web.Response(body=self._html, content_type="text/html", charset="utf-8")

    async def _json(self, _: web.Request) -> web.Response:
        return web.json_response(
            self.snapshot(), dumps=_compact, headers={"Cache-Control": "no-store"}
        )

    def sample(self) -> None:
        saturation = getattr(self.admission(), "saturation", None)
        if isinstance(saturation, int | float):
            self.saturation.append((self.clock.now(), float(saturation)))

    async def _loop(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.sample_interval)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="status-saturation")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
