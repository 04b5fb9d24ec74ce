"""One test-side view of "a cluster": the fake API server here, or a real one via KUBECONFIG.

Tests drive the cluster only through the Kubernetes API with a lightkube client (create, status
patch, delete), so the same test runs against :class:`FakeApiServer` or a real API server.
Objects are built from the recorded JSON in ``tests/data/k8s``. On a real cluster each test gets
its own namespace (deleted afterwards); pods are bound to a node that does not exist and their
status is written through ``pods/status``, so no kubelet or image is involved. Controls only the
fake has (dropping watches, compaction) are reached via :attr:`fake`, which is None on a real
cluster; tests that need them skip there.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from lightkube import AsyncClient, KubeConfig
from lightkube.generic_resource import create_namespaced_resource
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace
from lightkube.resources.core_v1 import Pod as K8sPod
from lightkube.types import PatchType
from tests.fakes.fake_apiserver import FakeApiServer

DATA = Path(__file__).resolve().parents[1] / "data" / "k8s"
POOL = "vllm-llama3-8b-instruct"
LABELS = {"app": POOL}

Pool = create_namespaced_resource(
    "inference.networking.k8s.io", "v1", "InferencePool", "inferencepools"
)
Objective = create_namespaced_resource(
    "inference.networking.x-k8s.io", "v1alpha2", "InferenceObjective", "inferenceobjectives"
)


def _alpha(group: str, kind: str) -> Any:
    plural = {"InferenceObjective": "inferenceobjectives"}.get(kind, "inferencemodelrewrites")
    return create_namespaced_resource(group, "v1alpha2", kind, plural)


def recorded(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / f"{name}.json").read_text())
    return data


def _fresh(obj: dict[str, Any], name: str, namespace: str) -> dict[str, Any]:
    """A recorded object made new: server-set metadata and owners removed."""
    obj = copy.deepcopy(obj)
    meta = obj["metadata"]
    for key in (
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "managedFields",
        "ownerReferences",
        "generation",
        "generateName",
    ):
        meta.pop(key, None)
    meta.update(name=name, namespace=namespace)
    return obj


class Cluster:
    def __init__(
        self,
        config: KubeConfig,
        namespace: str,
        fake: FakeApiServer | None,
        epp_config: KubeConfig | None = None,
    ) -> None:
        self.config, self.namespace, self.fake = config, namespace, fake
        self._epp_config = epp_config or config
        self.client = AsyncClient(config, namespace=namespace)

    def new_client(self) -> AsyncClient:
        """A client of its own, as each EPP replica has (the fake knows it by its token)."""
        return AsyncClient(self._epp_config, namespace=self.namespace)

    async def add_pool(
        self, ports: list[int] | None = None, labels: dict[str, str] | None = None
    ) -> None:
        obj = _fresh(recorded("inferencepool"), POOL, self.namespace)
        obj["spec"]["selector"]["matchLabels"] = labels or LABELS
        obj["spec"]["targetPorts"] = [{"number": p} for p in ports or [8000]]
        obj.pop("status", None)
        await self.client.create(Pool(obj), namespace=self.namespace)

    async def set_pool(self, ports: list[int], labels: dict[str, str]) -> None:
        patch = {
            "spec": {
                "targetPorts": [{"number": p} for p in ports],
                "selector": {"matchLabels": labels},
            }
        }
        await self.client.patch(
            Pool, POOL, patch, namespace=self.namespace, patch_type=PatchType.MERGE
        )

    async def delete_pool(self) -> None:
        await self.client.delete(Pool, POOL, namespace=self.namespace)

    async def add_pod(
        self,
        name: str,
        ip: str,
        *,
        ready: bool = True,
        labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None,
    ) -> None:
        obj = _fresh(recorded("pod"), name, self.namespace)
        obj["metadata"]["labels"] = labels or dict(LABELS)
        obj["metadata"]["annotations"] = annotations or {}
        obj["spec"]["nodeName"] = "fake-node-that-does-not-exist"
        status = obj.pop("status")
        await self.client.create(K8sPod.from_dict(obj), namespace=self.namespace)
        status["podIP"], status["podIPs"] = ip, [{"ip": ip}]
        await self.set_pod_status(name, status, ready=ready)

    async def set_pod_status(self, name: str, status: dict[str, Any], *, ready: bool) -> None:
        for cond in status["conditions"]:
            if cond["type"] in ("Ready", "ContainersReady"):
                cond["status"] = "True" if ready else "False"
        await self.client.patch(
            K8sPod.Status,
            name,
            {"status": status},
            namespace=self.namespace,
            patch_type=PatchType.MERGE,
        )

    async def set_pod_ready(self, name: str, ready: bool) -> None:
        pod = await self.client.get(K8sPod, name, namespace=self.namespace)
        status = pod.status.to_dict() if hasattr(pod.status, "to_dict") else dict(pod.status)
        await self.set_pod_status(name, status, ready=ready)

    async def delete_pod(self, name: str) -> None:
        await self.client.delete(K8sPod, name, namespace=self.namespace, grace_period=0)

    async def add_objective(
        self,
        name: str,
        *,
        priority: int = 10,
        pool: str = POOL,
        group: str = "inference.networking.k8s.io",
        kind: str = "InferencePool",
    ) -> None:
        obj = _fresh(recorded("inferenceobjective"), name, self.namespace)
        obj["spec"] = {
            "poolRef": {"group": group, "kind": kind, "name": pool},
            "priority": priority,
        }
        obj["metadata"].pop("annotations", None)
        await self.client.create(Objective(obj), namespace=self.namespace)

    async def set_objective(self, name: str, spec: dict[str, Any]) -> None:
        await self.client.patch(
            Objective, name, {"spec": spec}, namespace=self.namespace, patch_type=PatchType.MERGE
        )

    async def delete_objective(self, name: str) -> None:
        await self.client.delete(Objective, name, namespace=self.namespace)

    async def objective(self, name: str) -> dict[str, Any]:
        obj = await self.client.get(Objective, name, namespace=self.namespace)
        data: dict[str, Any] = obj.to_dict()
        return data

    async def add_alpha(
        self,
        kind: str,
        name: str,
        spec: dict[str, Any],
        *,
        group: str = "inference.networking.x-k8s.io",
    ) -> None:
        """An InferenceObjective or InferenceModelRewrite in ``group`` (GIE's or llm-d.ai)."""
        res = _alpha(group, kind)
        body = {"metadata": {"name": name, "namespace": self.namespace}, "spec": spec}
        await self.client.create(res(body), namespace=self.namespace)

    async def alpha_accepted(
        self, kind: str, name: str, *, group: str = "inference.networking.x-k8s.io"
    ) -> dict[str, Any] | None:
        obj = (await self.client.get(_alpha(group, kind), name, namespace=self.namespace)).to_dict()
        conds = (obj.get("status") or {}).get("conditions") or []
        return next((c for c in conds if c["type"] == "Accepted"), None)

    async def accepted(self, name: str) -> dict[str, Any] | None:
        conds = ((await self.objective(name)).get("status") or {}).get("conditions") or []
        return next((c for c in conds if c["type"] == "Accepted"), None)


@asynccontextmanager
async def cluster() -> AsyncIterator[Cluster]:
    """The fake API server, or the real cluster of ``KUBECONFIG`` when K8S_TESTS_REAL=1."""
    if os.environ.get("KUBECONFIG") and os.environ.get("K8S_TESTS_REAL", "1") == "1":
        config = KubeConfig.from_file(os.environ["KUBECONFIG"])
        namespace = f"epp-test-{uuid.uuid4().hex[:8]}"
        real = Cluster(config, namespace, None)
        await real.client.create(Namespace(metadata=ObjectMeta(name=namespace)))
        try:
            yield real
        finally:
            await real.client.delete(Namespace, namespace)
            await real.client.close()
        return
    async with FakeApiServer() as fake:
        faked = Cluster(
            KubeConfig.from_dict(fake.kubeconfig()),
            "default",
            fake,
            KubeConfig.from_dict(fake.kubeconfig(token="epp")),
        )
        try:
            yield faked
        finally:
            await faked.client.close()


async def eventually(check: Callable[[], Any], within: float = 10.0) -> Any:
    """Poll ``check`` (sync or async) until it returns a truthy value; fail after ``within`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    last: Any = None
    while loop.time() < deadline:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(0.02)
    raise AssertionError(f"condition not met within {within}s (last value {last!r})")
