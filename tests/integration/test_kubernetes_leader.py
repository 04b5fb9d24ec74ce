"""Leader election, standalone mode and the RBAC the source needs, against an API server."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # repo root: tests.fakes

from tests.fakes.k8s_cluster import POOL, Cluster, cluster, eventually

from endpoint_picker.clock import FakeClock
from endpoint_picker.datastore import Datastore
from endpoint_picker.sources.kubernetes import KubernetesSource
from endpoint_picker.sources.leader import lease_name

pytestmark = pytest.mark.timeout(60)
ROOT = Path(__file__).resolve().parents[2]


class Replica:
    """One EPP replica: a datastore, a source with leader election, its own client."""

    def __init__(self, c: Cluster, identity: str, clock: FakeClock | None = None) -> None:
        self.client = c.new_client()
        self.ds = Datastore()
        extra: dict[str, Any] = {"clock": clock} if clock else {}
        self.src = KubernetesSource(
            self.ds,
            pool_name=POOL,
            pool_namespace=c.namespace,
            client=self.client,
            leader_election=True,
            identity=identity,
            lease_duration=3.0,
            renew_deadline=2.0,
            retry_period=0.05,
            backoff=(0.01, 0.05),
            **extra,
        )
        self.task = asyncio.create_task(self.src.run())

    async def stop(self) -> None:
        await self.src.stop()
        await self.task
        await self.client.close()


async def test_one_leader_is_ready_and_hands_over_on_stop() -> None:
    async with cluster() as c:
        await c.add_pool()
        await c.add_pod("p1", "10.0.0.1")
        a = Replica(c, "replica-a")
        await eventually(lambda: a.src.is_leader)
        b = Replica(c, "replica-b")
        try:
            await eventually(lambda: [ep.name for ep in b.ds.endpoints()] == ["p1-rank-0"])
            assert a.src.is_ready() and not b.src.is_ready()  # b is live, but not ready
            await c.add_objective("food-review")
            await eventually(lambda: c.accepted("food-review"))
            lease = await _lease(c)
            assert lease["spec"]["holderIdentity"] == "replica-a"

            await a.stop()  # releases the lease: b need not wait for it to expire
            await eventually(lambda: b.src.is_leader and b.src.is_ready())
            lease = await _lease(c)
            assert lease["spec"]["holderIdentity"] == "replica-b"
            assert lease["spec"]["leaseTransitions"] >= 1
            await c.set_objective("food-review", {"priority": 5})
            await eventually(lambda: _generation_is(c, 2))  # written by the new leader
        finally:
            await b.stop()


async def test_replica_that_loses_the_lease_stops_writing_status() -> None:
    async with cluster() as c:
        if c.fake is None:
            pytest.skip("needs the fake API server to cut one replica off")
        fake = c.fake
        clock = FakeClock()
        await c.add_pool()
        await c.add_objective("food-review")
        a = Replica(c, "replica-a", clock)
        await eventually(lambda: a.src.is_leader)
        await eventually(lambda: c.accepted("food-review"))
        b = Replica(c, "replica-b", clock)
        try:
            await eventually(lambda: b.src.reflectors.get("objective") is not None)
            await asyncio.wait_for(b.src.wait_synced(), 10)
            # Cut replica a off from the lease: its renewals fail from now on.
            fake.refuse = lambda verb, res, name, body: 503 if _from(body, "replica-a") else None

            def time_passes_until(check: Any) -> Any:
                # A renewal of a's still in flight when the cut began may land after any one
                # step of the clock, so keep time moving (0.5 s per poll) rather than jump once.
                def step() -> Any:
                    clock.advance(0.5)
                    return check()

                return step

            await eventually(time_passes_until(lambda: not a.src.is_leader))
            await eventually(time_passes_until(lambda: b.src.is_leader))
            writes = fake.count("patch", "inferenceobjectives/status")
            await c.set_objective("food-review", {"priority": 7})
            await eventually(lambda: _generation_is(c, 2))
            # A fence instead of a pause. Once a has seen the change (its datastore has the new
            # priority), its status writer was woken; a fence objective created only then
            # reaches a by a later watch read, and the writer (a ready task) has had its turn
            # before that read. So when a holds the fence and b has written its status, any
            # write of a's for the change was already made.
            await eventually(lambda: a.ds.priority_of("food-review") == 7)
            await c.add_objective("zz-fence")
            await eventually(lambda: a.ds.objective("zz-fence") is not None)
            await eventually(lambda: c.accepted("zz-fence"))
            # b's two writes (the change, the fence), none of a's
            assert fake.count("patch", "inferenceobjectives/status") == writes + 2
            assert not a.src.is_leader and not a.src.is_ready()
            assert (await _lease(c))["spec"]["holderIdentity"] == "replica-b"
        finally:
            await a.stop()
            await b.stop()


async def test_standalone_selector_mode_needs_no_crds() -> None:
    async with cluster() as c:
        await c.add_pod("m1", "10.0.1.1", labels={"app": "llm"})
        await c.add_pod("m2", "10.0.1.2", labels={"app": "llm"})
        client = c.new_client()
        ds = Datastore()
        src = KubernetesSource(
            ds,
            pool_name="llm-deploy",
            pool_namespace=c.namespace,
            client=client,
            endpoint_selector={"app": "llm"},
            target_ports=[8000, 8001],
            backoff=(0.01, 0.05),
        )
        task = asyncio.create_task(src.run())
        try:
            await eventually(lambda: len(ds.endpoints()) == 4)
            assert src.is_ready()
            await c.delete_pod("m2")
            await eventually(
                lambda: sorted(e.name for e in ds.endpoints()) == ["m1-rank-0", "m1-rank-1"]
            )
        finally:
            await src.stop()
            await task
            await client.close()
        if c.fake is not None:
            assert _verbs(c) == {("list", ":pods"), ("watch", ":pods")}


async def test_rbac_role_grants_exactly_what_the_source_uses() -> None:
    """Run every code path that talks to the API (pool mode with leader election and status
    writes, release on stop, standalone mode), then compare with deploy/base/rbac.yaml."""
    async with cluster() as c:
        if c.fake is None:
            pytest.skip("needs the fake API server's request log")
        await c.add_pool()
        await c.add_pod("p1", "10.0.0.1")
        await c.add_objective("food-review")
        a = Replica(c, "replica-a")
        await eventually(lambda: a.src.is_leader)
        await eventually(lambda: c.accepted("food-review"))
        await a.stop()
        used = _verbs(c)
    granted = _role_rules()
    assert used == granted, (
        f"used but not granted: {used - granted}; granted but unused: {granted - used}"
    )


def _role_rules() -> set[tuple[str, str]]:
    docs = list(yaml.safe_load_all((ROOT / "deploy" / "base" / "rbac.yaml").read_text()))
    rules: set[tuple[str, str]] = set()
    for doc in docs:
        if doc and doc["kind"] in ("Role", "ClusterRole"):
            for rule in doc["rules"]:
                for group in rule["apiGroups"]:
                    for res in rule["resources"]:
                        for verb in rule["verbs"]:
                            rules.add((verb, f"{group}:{res}"))
    return rules


def _verbs(c: Cluster) -> set[tuple[str, str]]:
    assert c.fake is not None
    return {(verb, f"{group}:{res}") for verb, group, res in c.fake.used("epp")}


async def _lease(c: Cluster) -> dict[str, Any]:
    from lightkube.resources.coordination_v1 import Lease

    lease = await c.client.get(Lease, lease_name(c.namespace, POOL), namespace=c.namespace)
    data: dict[str, Any] = lease.to_dict()
    return data


async def _generation_is(c: Cluster, generation: int) -> bool:
    cond = await c.accepted("food-review")
    return bool(cond) and cond.get("observedGeneration") == generation  # type: ignore[union-attr]


def _from(body: Any, identity: str) -> bool:
    return isinstance(body, dict) and (body.get("spec") or {}).get("holderIdentity") == identity
