"""Kubernetes mode: keep the datastore in step with one InferencePool, its objectives and pods.

Three reflectors (:mod:`.k8s_watch`) feed the datastore, as upstream's three reconcilers do:

* the **pool**, by name (field selector) in its namespace: present -> ``set_pool`` (the
  datastore re-derives endpoints when the selector or ports change); absent or deleting ->
  ``clear``. A changed selector also restarts the pod reflector with the new label selector;
* the **objectives** and **model rewrites** of the namespace (:mod:`.k8s_alpha`; their group,
  ``llm-d.ai`` or ``inference.networking.x-k8s.io``, from discovery): those whose poolRef is
  our pool go to the datastore; those naming our pool get an ``Accepted`` condition
  (:mod:`.k8s_status`);
* the **pods** matching the pool selector: every re-list goes through ``replace_pods``, so a pod
  deleted while the watch was down is dropped, never leaked.

In standalone mode (``endpoint_selector``) there are no CRDs: the pool is made from the
selector and ports, and only pods are watched. With leader election on, only the leader is
ready and writes status; every replica keeps its datastore current, so a new leader serves at
once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Mapping
from typing import Any

from lightkube import AsyncClient, KubeConfig
from lightkube.core.exceptions import ConfigError as LightkubeConfigError
from lightkube.resources.core_v1 import Pod as K8sPod
from pydantic import ValidationError

from endpoint_picker.api import InferenceObjective, InferencePool
from endpoint_picker.api.objective import LLMD_GROUP, LlmdInferenceObjective
from endpoint_picker.api.rewrite import InferenceModelRewrite, LlmdInferenceModelRewrite
from endpoint_picker.clock import SYSTEM_CLOCK, Clock
from endpoint_picker.datastore import Datastore, Pod
from endpoint_picker.errors import ConfigError
from endpoint_picker.sources import k8s_status as st
from endpoint_picker.sources.k8s_alpha import AlphaKind, discover_group
from endpoint_picker.sources.k8s_resources import (
    POOL_GROUP,
    as_dict,
    is_deleting,
    pod_from_k8s,
    pool_manifest,
    pool_resource,
)
from endpoint_picker.sources.k8s_watch import Backoff, Reflector
from endpoint_picker.sources.leader import LeaderElector, lease_name

__all__ = ["KubernetesSource"]

log = logging.getLogger(__name__)


class KubernetesSource:
    """Feeds a :class:`Datastore` from the API server until :meth:`stop` (see module doc)."""

    def __init__(
        self,
        datastore: Datastore,
        *,
        pool_name: str,
        pool_namespace: str = "default",
        pool_group: str = POOL_GROUP,
        client: AsyncClient | None = None,
        kubeconfig: str | None = None,
        endpoint_selector: Mapping[str, str] | None = None,
        target_ports: list[int] | None = None,
        leader_election: bool = False,
        identity: str | None = None,
        clock: Clock = SYSTEM_CLOCK,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        watch_timeout: int = 300,
        backoff: tuple[float, float] = (0.5, 30.0),
    ) -> None:
        if not pool_name:
            raise ConfigError("a pool name is required", path="--pool-name")
        if endpoint_selector is not None and not target_ports:
            raise ConfigError("standalone mode needs target ports", path="--endpoint-target-ports")
        self.datastore = datastore
        self.pool_name, self.namespace, self.pool_group = pool_name, pool_namespace, pool_group
        self._client = client
        self._client_lock = asyncio.Lock()
        self._owns_client = client is None
        self._kubeconfig = kubeconfig
        self._standalone = dict(endpoint_selector) if endpoint_selector is not None else None
        self._ports = list(target_ports or [])
        self.leader_election = leader_election
        self.identity = (
            identity or f"{os.environ.get('POD_NAME') or socket.gethostname()}_{uuid.uuid4()}"
        )
        self._clock = clock
        self._lease = (lease_duration, renew_deadline, retry_period)
        self._watch_timeout = watch_timeout
        self._backoff = backoff
        self._tasks: list[asyncio.Task[None]] = []
        self._pod_task: asyncio.Task[None] | None = None
        self._pod_selector: dict[str, str] | None = None
        self.alpha: dict[str, AlphaKind] = {}  # by kind: objectives and rewrites we watch
        self._wake = asyncio.Event()
        self._elector: LeaderElector | None = None
        self._stopped = asyncio.Event()
        self.reflectors: dict[str, Reflector] = {}  # by kind, for readiness and tests

    # -- public surface --
    @property
    def is_leader(self) -> bool:
        """Whether this replica may act as the leader (always, without leader election)."""
        return self._elector.is_leader if self._elector is not None else not self.leader_election

    def is_ready(self) -> bool:
        """Ready to serve: the pool is known and, with leader election, this replica leads."""
        return self.datastore.pool is not None and self.is_leader

    async def run(self) -> None:
        """Watch until :meth:`stop` is called (or the task is cancelled)."""
        client = await self._ensure_client()
        if self.leader_election:
            duration, deadline, period = self._lease
            self._elector = LeaderElector(
                client,
                name=lease_name(self.namespace, self.pool_name),
                namespace=self.namespace,
                identity=self.identity,
                clock=self._clock,
                lease_duration=duration,
                renew_deadline=deadline,
                retry_period=period,
                on_change=self._on_leadership,
            )
            self._spawn(self._elector.run(), "leader")
        if self._standalone is not None:
            self._set_pool(self._standalone_pool())
        else:
            pools = self._reflector(
                "pool",
                pool_resource(self.pool_group),
                self._replace_pool,
                self._pool_event,
                fields={"metadata.name": self.pool_name},
            )
            self._spawn(pools.run(), "pool")
            await self._start_alpha(client)
            self._spawn(self._status_writer(), "status")
        try:
            await self._stopped.wait()
        finally:
            await self._shutdown()

    async def stop(self) -> None:
        """Stop watching, release the lease if held, close the client we made."""
        self._stopped.set()
        if not self._tasks:
            await self._shutdown()

    async def wait_synced(self) -> None:
        """Wait until every reflector started so far has listed once."""
        for reflector in list(self.reflectors.values()):
            await reflector.synced.wait()

    # -- plumbing --
    async def api_client(self) -> AsyncClient:
        """The API client this source uses (made on first use): for the metrics-port reviews."""
        return await self._ensure_client()

    async def _ensure_client(self) -> AsyncClient:
        async with self._client_lock:  # run() and api_client() may race for the first one
            return await self._make_client()

    async def _make_client(self) -> AsyncClient:
        if self._client is None:
            try:
                config = await asyncio.to_thread(self._load_config)
            except (LightkubeConfigError, OSError, ValueError) as err:
                raise ConfigError(
                    f"no usable Kubernetes configuration: {err}", path="--kubeconfig"
                ) from None
            self._client = AsyncClient(
                config, namespace=self.namespace, field_manager="endpoint-picker"
            )
        return self._client

    def _load_config(self) -> KubeConfig:
        # In a thread: both read files. from_env tries in-cluster, $KUBECONFIG, ~/.kube/config.
        return KubeConfig.from_file(self._kubeconfig) if self._kubeconfig else KubeConfig.from_env()

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        task.set_name(f"k8s-{name}")
        self._tasks.append(task)
        return task

    def _reflector(
        self, kind: str, resource: type[Any], on_replace: Any, on_event: Any, **kw: Any
    ) -> Reflector:
        assert self._client is not None
        reflector = Reflector(
            self._client,
            resource,
            namespace=self.namespace,
            on_replace=on_replace,
            on_event=on_event,
            server_timeout=self._watch_timeout,
            backoff=Backoff(*self._backoff),
            name=f"{kind} watch",
            **kw,
        )
        self.reflectors[kind] = reflector
        return reflector

    async def _shutdown(self) -> None:
        tasks, self._tasks = self._tasks, []
        if self._pod_task is not None:
            tasks.append(self._pod_task)
            self._pod_task = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._elector is not None:
            await self._elector.release()
        if self._owns_client and self._client is not None:
            await self._client.close()
            self._client = None

    # -- pool --
    def _standalone_pool(self) -> InferencePool:
        return InferencePool.model_validate(
            {
                "metadata": {"name": self.pool_name, "namespace": self.namespace},
                "spec": {
                    "selector": {"matchLabels": self._standalone},
                    "targetPorts": [{"number": p} for p in self._ports],
                },
            }
        )

    def _replace_pool(self, items: list[Any]) -> None:
        live = [as_dict(o) for o in items if not is_deleting(as_dict(o))]
        if live:
            self._pool_changed(live[0])
        else:
            self._pool_gone()

    def _pool_event(self, kind: str, obj: Any) -> None:
        data = as_dict(obj)
        if kind == "DELETED" or is_deleting(data):
            self._pool_gone()
        else:
            self._pool_changed(data)

    def _pool_changed(self, data: dict[str, Any]) -> None:
        try:
            pool = InferencePool.model_validate(pool_manifest(data))
        except ValidationError as err:
            log.error(
                "InferencePool %s/%s is invalid, keeping the last good one: %s",
                self.namespace,
                self.pool_name,
                err,
            )
            return
        had_pool = self.datastore.pool is not None
        self._set_pool(pool)
        if not had_pool:
            for alpha in self.alpha.values():
                alpha.repush()  # Datastore.clear dropped them with the old pool
            self._mark_all_dirty()

    def _set_pool(self, pool: InferencePool) -> None:
        self.datastore.set_pool(pool)
        selector = dict(pool.spec.selector.match_labels)
        if selector != self._pod_selector or self._pod_task is None:
            self._start_pods(selector)

    def _pool_gone(self) -> None:
        if self.datastore.pool is None and self._pod_task is None:
            return
        log.info("InferencePool %s/%s is gone; clearing endpoints", self.namespace, self.pool_name)
        self._stop_pods()
        self.datastore.clear()
        self._mark_all_dirty()

    # -- pods --
    def _start_pods(self, selector: dict[str, str]) -> None:
        self._stop_pods()
        self._pod_selector = selector
        reflector = self._reflector(
            "pod", K8sPod, self._replace_pods, self._pod_event, labels=selector
        )
        self._pod_task = asyncio.ensure_future(reflector.run())

    def _stop_pods(self) -> None:
        if self._pod_task is not None:
            self._pod_task.cancel()
            self._pod_task = None
        self._pod_selector = None
        self.reflectors.pop("pod", None)

    def _replace_pods(self, items: list[Any]) -> None:
        self.datastore.replace_pods(p for p in map(_pod, items) if p is not None)

    def _pod_event(self, kind: str, obj: Any) -> None:
        pod = _pod(obj)
        if pod is None:
            return
        if kind == "DELETED":
            self.datastore.delete_pod(pod.name)
        else:
            self.datastore.upsert_pod(pod)

    # -- objectives and rewrites (sources/k8s_alpha.py) --
    async def _start_alpha(self, client: AsyncClient) -> None:
        """Discover each alpha kind's group, then watch it (a kind with no CRD is skipped)."""
        ds = self.datastore
        kinds: list[tuple[str, Any, Any, Any, Any]] = [
            (
                "InferenceObjective",
                InferenceObjective,
                LlmdInferenceObjective,
                ds.set_objective,
                ds.delete_objective,
            ),
            (
                "InferenceModelRewrite",
                InferenceModelRewrite,
                LlmdInferenceModelRewrite,
                ds.set_rewrite,
                ds.delete_rewrite,
            ),
        ]
        for kind, gie_model, llmd_model, put, drop in kinds:
            group = await discover_group(client, kind, self.namespace)
            if group is None:
                log.info("%s is not served by the API server (no CRD): not watched", kind)
                continue
            log.info("watching %s in %s/v1alpha2", kind, group)
            alpha = AlphaKind(
                kind,
                group,
                llmd_model if group == LLMD_GROUP else gie_model,
                put=put,
                drop=drop,
                ours=self._ours,
                pool_present=lambda: ds.pool is not None,
                wake=self._wake.set,
            )
            self.alpha[kind] = alpha
            name = "objective" if kind == "InferenceObjective" else "rewrite"
            reflector = self._reflector(name, alpha.resource, alpha.replace, alpha.event)
            self._spawn(reflector.run(), name)

    def _ours(self, data: dict[str, Any]) -> tuple[bool, bool]:
        """(goes to the datastore, its status is ours to write)."""
        return (
            st.serves(data, self.pool_name, self.pool_group),
            st.concerns_us(data, self.pool_name, self.pool_group),
        )

    # -- status of objectives and rewrites --
    def _on_leadership(self, leading: bool) -> None:
        if leading:
            self._mark_all_dirty()  # statuses may have moved while we were not writing

    def _mark_all_dirty(self) -> None:
        for alpha in self.alpha.values():
            alpha.mark_all_dirty()
        self._wake.set()

    async def _status_writer(self) -> None:
        """Write due Accepted conditions, only while leading; failures retry with back-off."""
        backoff = Backoff(*self._backoff)
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self.is_leader or not self.reflectors["pool"].synced.is_set():
                continue  # woken again on leadership / pool sync
            failed = False
            for alpha in list(self.alpha.values()):
                for name in sorted(alpha.dirty):
                    alpha.dirty.discard(name)
                    data = alpha.objects.get(name)
                    if data is not None and self.is_leader:
                        failed |= not await self._write_status(alpha, data)
            if failed:
                await asyncio.sleep(backoff.next())
                self._wake.set()
            else:
                backoff.reset()

    async def _write_status(self, alpha: AlphaKind, data: dict[str, Any]) -> bool:
        want = st.desired(
            data,
            pool_name=self.pool_name,
            pool_group=self.pool_group,
            pool_exists=self.datastore.pool is not None,
            namespace=self.namespace,
        )
        if not st.needs_write(data, want):
            return True
        assert self._client is not None
        return await alpha.write_status(self._client, data, want, self.namespace)


def _pod(obj: Any) -> Pod | None:
    try:
        return pod_from_k8s(obj)
    except ValueError as err:
        log.warning("ignoring pod: %s", err)
        return None
