"""The one in-memory truth: the pool, its objectives, its endpoints and their latest metrics.

Sources (manifest files, the Kubernetes API) write it; the data layer writes endpoint metrics;
flow control, scheduling and the director read it. It is single-threaded by design (one event
loop), so reads are plain attribute access and writers notify subscribers synchronously.

Endpoint membership follows upstream exactly: one endpoint per *ready* pod (no deletion
timestamp, condition Ready=True) matching the pool selector, per target port, named
``<pod>-rank-<i>``, restricted by the ``inference.networking.k8s.io/active-ports`` annotation.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from endpoint_picker.requests.rewrite import RewriteTable

if TYPE_CHECKING:
    from endpoint_picker.api import InferenceObjective, InferencePool
    from endpoint_picker.api.rewrite import InferenceModelRewrite

log = logging.getLogger(__name__)

ACTIVE_PORTS_ANNOTATION = "inference.networking.k8s.io/active-ports"
ENGINE_TYPE_LABEL = "inference.networking.k8s.io/engine-type"


@dataclass(slots=True)
class Metrics:
    """What a model server last reported about itself. ``update_time`` is clock time; 0 = never."""

    waiting_queue_size: int = 0
    running_requests_size: int = 0
    kv_cache_usage_percent: float = 0.0  # fraction 0..1, as upstream
    active_models: frozenset[str] = frozenset()
    waiting_models: frozenset[str] = frozenset()
    max_active_models: int = 0
    cache_block_size: int = 0
    cache_num_blocks: int = 0
    update_time: float = 0.0

    def age(self, now: float) -> float:
        """Seconds since the last successful scrape (infinite when never scraped)."""
        return now - self.update_time if self.update_time > 0 else float("inf")


@dataclass(slots=True)
class Pod:
    """A model-server pod, as any source sees it (Kubernetes-agnostic)."""

    name: str
    ip: str
    namespace: str = "default"
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    ready: bool = True  # no deletionTimestamp and condition Ready=True


@dataclass(eq=False, slots=True)
class Endpoint:
    """One schedulable target: a (pod, port) pair. Identity is the object, kept across updates."""

    name: str  # <pod>-rank-<i>
    pod_name: str
    address: str
    port: int
    namespace: str = "default"
    labels: dict[str, str] = field(default_factory=dict)
    metrics_port: int | None = None
    metrics: Metrics = field(default_factory=Metrics)
    # In-flight accounting, owned by the director: incremented at dispatch, released on completion.
    inflight_requests: int = 0
    inflight_tokens: int = 0
    # Requests sent here that the last scrape cannot have seen yet: the director adds one per
    # dispatch, the data layer takes back what was sent before a scrape began once it lands.
    # Load signals read ``queue_depth`` so a burst between two scrapes is not invisible.
    dispatched_since_scrape: int = 0
    # Outputs of data producers (e.g. prefix match info), keyed by producer name.
    attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def queue_depth(self) -> int:
        """Waiting requests as last scraped, plus those dispatched since that scrape began."""
        return self.metrics.waiting_queue_size + self.dispatched_since_scrape

    @property
    def hostport(self) -> str:
        """``ip:port`` as Go's ``net.JoinHostPort`` writes it (IPv6 in brackets)."""
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"

    @property
    def metrics_hostport(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.metrics_port or self.port}"

    @property
    def engine_type(self) -> str | None:
        return self.labels.get(ENGINE_TYPE_LABEL)

    def __repr__(self) -> str:
        return f"Endpoint({self.name}@{self.hostport})"


class Event(StrEnum):
    POOL = "pool"
    OBJECTIVE = "objective"
    REWRITE = "rewrite"
    ENDPOINT_ADDED = "endpoint-added"
    ENDPOINT_REMOVED = "endpoint-removed"
    CLEARED = "cleared"


Listener = Callable[[Event, Any], None]


_LEADING_INT = re.compile(r"[+-]?[0-9]+")


def active_ports(pod: Pod, target_ports: list[int]) -> list[tuple[int, int]]:
    """(rank, port) pairs a pod serves: all target ports unless the annotation narrows them.

    As upstream (Go's ``Sscanf("%d")``): each comma-separated item is read as its leading integer;
    unparsable items, non-positive numbers and ports outside the pool are ignored, and an
    annotation that names no pool port (including an empty one) leaves the pod no endpoints.
    """
    ranks = list(enumerate(target_ports))
    raw = pod.annotations.get(ACTIVE_PORTS_ANNOTATION)
    if raw is None:
        return ranks
    wanted: set[int] = set()
    for part in raw.split(","):
        match = _LEADING_INT.match(part.strip())
        if match is not None and int(match.group()) > 0:
            wanted.add(int(match.group()))
    return [(i, p) for i, p in ranks if p in wanted]


class Datastore:
    """Pool, objectives (keyed by name) and endpoints, with synchronous change notifications.

    Every pod a source reports is remembered (ready or not, matching or not), so that a changed
    selector or port list can re-derive the endpoint set without asking the source to re-list.
    """

    def __init__(self, *, model_server_metrics_port: int = 0) -> None:
        self.pool: InferencePool | None = None
        self._objectives: dict[str, InferenceObjective] = {}
        self.rewrites = RewriteTable()  # InferenceModelRewrites of the pool (requests/rewrite.py)
        self._pods: dict[str, Pod] = {}  # members: ready and matching the selector
        self._known: dict[str, Pod] = {}  # every pod reported and not deleted
        self._endpoints: dict[str, Endpoint] = {}
        self._static: dict[str, Endpoint] = {}
        self._snapshot: tuple[Endpoint, ...] | None = None
        self._listeners: list[Listener] = []
        self._metrics_port = model_server_metrics_port

    # -- notifications ---------------------------------------------------------------------------
    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(event, obj)`` on every change; returns an unsubscribe function."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def _emit(self, event: Event, obj: Any) -> None:
        # A failing listener must not leave the writer (a source) half-way through an update.
        for listener in list(self._listeners):
            try:
                listener(event, obj)
            except Exception:
                log.exception("datastore listener %r failed on %s", listener, event)

    # -- pool --------------------------------------------------------------------------------------
    @property
    def target_ports(self) -> list[int]:
        return [p.number for p in self.pool.spec.target_ports] if self.pool else []

    @property
    def selector(self) -> dict[str, str]:
        return dict(self.pool.spec.selector.match_labels) if self.pool else {}

    def set_pool(self, pool: InferencePool) -> None:
        """Set the pool; a changed selector or port list re-derives every endpoint (full resync)."""
        old_selector, old_ports = self.selector, self.target_ports
        first = self.pool is None
        self.pool = pool
        if first or self.selector != old_selector or self.target_ports != old_ports:
            self._resync()
        self._emit(Event.POOL, pool)

    def clear(self) -> None:
        """Pool gone: drop pool, objectives and pod endpoints (upstream's ``Datastore.Clear``)."""
        self.pool = None
        self._objectives.clear()
        self.rewrites.clear()
        self._pods.clear()
        self._known.clear()
        for ep in list(self._endpoints.values()):
            self._remove_endpoint(ep.name)
        self._emit(Event.CLEARED, None)

    # -- rewrites ----------------------------------------------------------------------------------
    def set_rewrite(self, rewrite: InferenceModelRewrite) -> None:
        self.rewrites.set(rewrite)
        self._emit(Event.REWRITE, rewrite)

    def delete_rewrite(self, name: str) -> None:
        if self.rewrites.delete(name):
            self._emit(Event.REWRITE, None)

    # -- objectives --------------------------------------------------------------------------------
    def set_objective(self, objective: InferenceObjective) -> None:
        self._objectives[objective.metadata.name] = objective
        self._emit(Event.OBJECTIVE, objective)

    def delete_objective(self, name: str) -> None:
        obj = self._objectives.pop(name, None)
        if obj is not None:
            self._emit(Event.OBJECTIVE, obj)

    def objective(self, name: str | None) -> InferenceObjective | None:
        return self._objectives.get(name) if name else None

    def objectives(self) -> list[InferenceObjective]:
        return list(self._objectives.values())

    def priority_of(self, objective_name: str | None) -> int:
        """Priority for a request naming this objective: 0 when missing or unset, as upstream."""
        obj = self.objective(objective_name)
        return 0 if obj is None else obj.effective_priority

    # -- pods and endpoints ------------------------------------------------------------------------
    def _matches(self, pod: Pod) -> bool:
        sel = self.selector
        return bool(sel) and all(pod.labels.get(k) == v for k, v in sel.items())

    def upsert_pod(self, pod: Pod) -> None:
        """Add or update a pod; a pod that is not ready or no longer matches loses its endpoints."""
        self._known[pod.name] = pod
        if not pod.ready or not self._matches(pod):
            self._drop_member(pod.name)
            return
        self._pods[pod.name] = pod
        wanted = {f"{pod.name}-rank-{i}": port for i, port in active_ports(pod, self.target_ports)}
        for name in [n for n, ep in self._endpoints.items() if ep.pod_name == pod.name]:
            if name not in wanted:
                self._remove_endpoint(name)
        single = len(self.target_ports) == 1 and self._metrics_port
        for name, port in wanted.items():
            ep = self._endpoints.get(name)
            if ep is None:
                ep = Endpoint(name=name, pod_name=pod.name, address=pod.ip, port=port)
                self._endpoints[name] = ep
                added = True
            else:
                added = False
            ep.address, ep.port, ep.namespace = pod.ip, port, pod.namespace
            ep.labels = dict(pod.labels)
            ep.metrics_port = self._metrics_port if single else None
            self._snapshot = None
            if added:
                self._emit(Event.ENDPOINT_ADDED, ep)

    def delete_pod(self, name: str) -> None:
        """The pod is gone: forget it and remove all its rank endpoints."""
        self._known.pop(name, None)
        self._drop_member(name)

    def _drop_member(self, name: str) -> None:
        self._pods.pop(name, None)
        for ep_name in [n for n, ep in self._endpoints.items() if ep.pod_name == name]:
            self._remove_endpoint(ep_name)

    def replace_pods(self, pods: Iterable[Pod]) -> None:
        """Make the pod set exactly ``pods`` (a re-list): missing ones are deleted, never leaked."""
        pods = list(pods)
        keep = {p.name for p in pods}
        for name in [n for n in self._known if n not in keep]:
            self.delete_pod(name)
        for pod in pods:
            self.upsert_pod(pod)

    def _resync(self) -> None:
        # Re-derive membership of every known pod. Endpoints whose name survives keep their
        # identity (metrics, in-flight counts), as upstream's resync does; the rest are removed.
        self._pods = {}
        for pod in list(self._known.values()):
            self.upsert_pod(pod)

    def _remove_endpoint(self, name: str) -> None:
        ep = self._endpoints.pop(name, None)
        if ep is not None:
            self._snapshot = None
            self._emit(Event.ENDPOINT_REMOVED, ep)

    def set_static_endpoints(
        self,
        endpoints: Mapping[str, tuple[str, int]],
        labels: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        """Endpoints given directly as ``name -> (address, port)`` (runs without pods), with
        optional labels per name (as a pod's: ``llm-d.ai/role`` for the P/D filters).

        Unchanged entries keep their Endpoint object; a changed address is a remove plus an add;
        changed labels are updated in place.
        """
        labels = labels or {}
        for name in [n for n in self._static if n not in endpoints]:
            gone = self._static.pop(name)
            self._snapshot = None
            self._emit(Event.ENDPOINT_REMOVED, gone)
        for name, (address, port) in endpoints.items():
            old = self._static.get(name)
            if old is not None and (old.address, old.port) == (address, port):
                old.labels = dict(labels.get(name, {}))
                continue
            if old is not None:
                del self._static[name]
                self._snapshot = None
                self._emit(Event.ENDPOINT_REMOVED, old)
            ep = Endpoint(
                name=name,
                pod_name=name,
                address=address,
                port=port,
                labels=dict(labels.get(name, {})),
            )
            self._static[name] = ep
            self._snapshot = None
            self._emit(Event.ENDPOINT_ADDED, ep)

    def endpoints(self) -> tuple[Endpoint, ...]:
        """All current endpoints (a cached snapshot, rebuilt only after a change)."""
        if self._snapshot is None:
            self._snapshot = (*self._endpoints.values(), *self._static.values())
        return self._snapshot

    def endpoint(self, name: str) -> Endpoint | None:
        return self._endpoints.get(name) or self._static.get(name)

    def endpoint_by_hostport(self, hostport: str) -> Endpoint | None:
        for ep in self.endpoints():
            if ep.hostport == hostport:
                return ep
        return None

    def pods(self) -> list[Pod]:
        return list(self._pods.values())
