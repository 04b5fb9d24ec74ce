"""KubernetesSource against an API server: the fake one here, a real one when KUBECONFIG is set.

Everything goes over real HTTP through lightkube; the cluster is changed only through the API.
Tests that need to break the server on purpose (dropped connections, compacted history) use the
fake's controls and skip on a real cluster.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # repo root: tests.fakes

from tests.fakes.k8s_cluster import POOL, Cluster, cluster, eventually

from endpoint_picker.datastore import Datastore
from endpoint_picker.sources.kubernetes import KubernetesSource

pytestmark = pytest.mark.timeout(60)


def names(ds: Datastore) -> list[str]:
    return sorted(ep.name for ep in ds.endpoints())


@asynccontextmanager
async def running(c: Cluster, **kw: Any) -> AsyncIterator[tuple[KubernetesSource, Datastore]]:
    ds = Datastore()
    client = c.new_client()
    kw.setdefault("pool_name", POOL)
    src = KubernetesSource(
        ds, pool_namespace=c.namespace, client=client, backoff=(0.01, 0.05), **kw
    )
    task = asyncio.create_task(src.run())
    try:
        await eventually(lambda: "pod" in src.reflectors or src.reflectors.get("pool"))
        await asyncio.wait_for(src.wait_synced(), 10)
        yield src, ds
    finally:
        await src.stop()
        await task
        await client.close()


def fake_only(c: Cluster) -> None:
    if c.fake is None:
        pytest.skip("needs the fake API server's controls")


async def test_initial_list_then_add_modify_delete_events() -> None:
    async with cluster() as c:
        await c.add_pool()
        await c.add_pod("p1", "10.0.0.1")
        await c.add_pod("p2", "10.0.0.2", ready=False)
        await c.add_pod("other", "10.0.0.9", labels={"app": "someone-else"})
        await c.add_objective("food-review", priority=10)
        async with running(c) as (src, ds):
            await eventually(lambda: names(ds) == ["p1-rank-0"])
            assert ds.endpoint("p1-rank-0").hostport == "10.0.0.1:8000"  # type: ignore[union-attr]
            await eventually(lambda: ds.priority_of("food-review") == 10)
            assert src.is_ready() and src.is_leader

            await c.add_pod("p3", "10.0.0.3")  # ADDED
            await eventually(lambda: names(ds) == ["p1-rank-0", "p3-rank-0"])
            await c.set_pod_ready("p2", True)  # MODIFIED: became ready
            await eventually(lambda: "p2-rank-0" in names(ds))
            await c.set_pod_ready("p1", False)  # MODIFIED: no longer ready
            await eventually(lambda: "p1-rank-0" not in names(ds))
            await c.delete_pod("p3")  # DELETED
            await eventually(lambda: names(ds) == ["p2-rank-0"])
            await c.set_objective("food-review", {"priority": 3})
            await eventually(lambda: ds.priority_of("food-review") == 3)
            await c.delete_objective("food-review")
            await eventually(lambda: ds.objective("food-review") is None)


async def test_pool_change_resyncs_endpoints_and_restarts_the_pod_watch() -> None:
    async with cluster() as c:
        await c.add_pool()
        await c.add_pod("p1", "10.0.0.1")
        await c.add_pod("n1", "10.0.0.5", labels={"app": "new"})
        await c.add_pod(
            "n2",
            "10.0.0.6",
            labels={"app": "new"},
            annotations={"inference.networking.k8s.io/active-ports": "8001"},
        )
        async with running(c) as (_, ds):
            await eventually(lambda: names(ds) == ["p1-rank-0"])
            await c.set_pool([8000, 8001], {"app": "vllm-llama3-8b-instruct"})
            await eventually(lambda: names(ds) == ["p1-rank-0", "p1-rank-1"])
            await c.set_pool([8000, 8001], {"app": "new"})
            await eventually(lambda: names(ds) == ["n1-rank-0", "n1-rank-1", "n2-rank-1"])
            await c.delete_pool()
            await eventually(lambda: ds.pool is None and names(ds) == [])
            await c.add_pool()
            await eventually(lambda: names(ds) == ["p1-rank-0"])


async def test_bookmark_moves_the_resume_point_without_a_relist() -> None:
    async with cluster() as c:
        fake_only(c)
        assert c.fake is not None
        await c.add_pool()
        await c.add_pod("p1", "10.0.0.1")
        async with running(c) as (src, ds):
            pods = src.reflectors["pod"]
            lists = pods.lists
            await c.add_objective("unrelated", pool="another-pool")  # moves the global version
            await eventually(lambda: c.fake.open_watches == 3)  # type: ignore[union-attr]
            c.fake.bookmark()
            bookmark_rv = str(c.fake.rv)
            await eventually(lambda: pods.resource_version == bookmark_rv)
            before = len(c.fake.watch_requests)
            c.fake.end_watches()  # a clean end, as after timeoutSeconds
            fake = c.fake
            await eventually(lambda: len(fake.watch_requests) >= before + 3)
            resumed = [q for q in c.fake.watch_requests[before:] if "labelSelector" in q]
            assert resumed[0]["resourceVersion"] == bookmark_rv
            assert resumed[0]["allowWatchBookmarks"] == "true"
            assert pods.lists == lists
            assert names(ds) == ["p1-rank-0"]


async def test_410_gone_relists_and_drops_pods_deleted_meanwhile() -> None:
    async with cluster() as c:
        fake_only(c)
        fake = c.fake
        assert fake is not None
        await c.add_pool()
        await c.add_pod("p1", "10.0.0.1")
        await c.add_pod("p2", "10.0.0.2")
        async with running(c) as (src, ds):
            await eventually(lambda: names(ds) == ["p1-rank-0", "p2-rank-0"])
            pods = src.reflectors["pod"]
            lists = pods.lists
            gone = fake.get("pods", "p2")
            assert gone is not None
            fake.put_direct(gone, deleted=True)  # its DELETED event never reaches us...
            fake.compact()  # ...and history is gone: resuming must fail with 410
            fake.end_watches()
            await eventually(lambda: names(ds) == ["p1-rank-0"])
            assert pods.lists == lists + 1


async def test_dropped_connection_relists_and_resumes() -> None:
    async with cluster() as c:
        fake_only(c)
        fake = c.fake
        assert fake is not None
        await c.add_pool()
        await c.add_pod("p1", "10.0.0.1")
        await c.add_pod("p2", "10.0.0.2")
        async with running(c) as (src, ds):
            await eventually(lambda: names(ds) == ["p1-rank-0", "p2-rank-0"])
            gone = fake.get("pods", "p1")
            assert gone is not None
            fake.put_direct(gone, deleted=True)  # lost with the connection
            fake.drop_watches()
            await eventually(lambda: names(ds) == ["p2-rank-0"])
            lists = src.reflectors["pod"].lists
            await c.add_pod("p3", "10.0.0.3")  # the watch is live again afterwards
            await eventually(lambda: names(ds) == ["p2-rank-0", "p3-rank-0"])
            assert src.reflectors["pod"].lists == lists


async def test_objective_status_written_once_per_change() -> None:
    async with cluster() as c:
        await c.add_pool()
        await c.add_objective("food-review")
        await c.add_objective("wrong-kind", kind="Service")
        await c.add_objective("other-pool", pool="someone-elses")
        async with running(c):
            cond = await eventually(lambda: c.accepted("food-review"))
            assert (cond["status"], cond["reason"], cond["observedGeneration"]) == (
                "True",
                "Accepted",
                1,
            )
            bad = await eventually(lambda: c.accepted("wrong-kind"))
            assert (bad["status"], bad["reason"]) == ("False", "InvalidPoolRef")
            assert "not an InferencePool" in bad["message"]
            placeholder = (await c.objective("food-review"))["status"]["conditions"]
            assert [x["type"] for x in placeholder] == ["Accepted"]

            await c.set_objective("food-review", {"priority": 20})  # generation 2
            cond = await eventually(lambda: _with_generation(c.accepted("food-review"), 2))
            await c.delete_pool()
            cond = await eventually(lambda: _with_reason(c.accepted("food-review"), "PoolNotFound"))
            assert cond["status"] == "False" and "not found" in cond["message"]
            await c.add_pool()
            await eventually(lambda: _with_reason(c.accepted("food-review"), "Accepted"))
            # A fence instead of a pause: one more change the EPP must write. Its watch event
            # comes after every event the writes above caused (one watch, in order), and the
            # one status writer handles them in that order, so a needless rewrite would
            # already be counted once the fence's own status shows.
            await c.add_objective("zz-fence")
            await eventually(lambda: c.accepted("zz-fence"))
            assert await c.accepted("other-pool") is None
            if c.fake is not None:
                # four changes of food-review (accepted, generation 2, pool gone, pool back),
                # one for wrong-kind and one for the fence; nothing rewritten without a change
                assert c.fake.count("patch", "inferenceobjectives/status") == 6


async def _with_generation(cond: Any, generation: int) -> Any:
    value = await cond
    return value if value and value.get("observedGeneration") == generation else None


async def _with_reason(cond: Any, reason: str) -> Any:
    value = await cond
    return value if value and value.get("reason") == reason else None
