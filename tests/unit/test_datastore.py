"""Datastore rules: membership, rank endpoints, active-ports, resync, objectives, notifications."""

from __future__ import annotations

from typing import Any

import pytest

from endpoint_picker.api import InferenceObjective, InferencePool
from endpoint_picker.datastore import ACTIVE_PORTS_ANNOTATION, Datastore, Endpoint, Event, Pod


def pool(ports: list[int], labels: dict[str, str] | None = None) -> InferencePool:
    return InferencePool.model_validate(
        {
            "metadata": {"name": "pool"},
            "spec": {
                "selector": {"matchLabels": labels or {"app": "vllm"}},
                "targetPorts": [{"number": p} for p in ports],
            },
        }
    )


def objective(name: str, priority: int | None) -> InferenceObjective:
    spec: dict[str, Any] = {"poolRef": {"name": "pool"}}
    if priority is not None:
        spec["priority"] = priority
    return InferenceObjective.model_validate({"metadata": {"name": name}, "spec": spec})


def pod(name: str, ip: str = "10.0.0.1", **kw: Any) -> Pod:
    kw.setdefault("labels", {"app": "vllm"})
    return Pod(name=name, ip=ip, **kw)


def names(ds: Datastore) -> list[str]:
    return sorted(ep.name for ep in ds.endpoints())


@pytest.fixture
def ds() -> Datastore:
    store = Datastore()
    store.set_pool(pool([8000, 8001]))
    return store


def test_one_endpoint_per_ready_pod_per_port(ds: Datastore) -> None:
    ds.upsert_pod(pod("a", "10.0.0.1"))
    ds.upsert_pod(pod("b", "10.0.0.2"))
    ds.upsert_pod(pod("c", "10.0.0.3", ready=False))
    assert names(ds) == ["a-rank-0", "a-rank-1", "b-rank-0", "b-rank-1"]
    ep = ds.endpoint("b-rank-1")
    assert ep is not None and (ep.address, ep.port, ep.hostport) == (
        "10.0.0.2",
        8001,
        "10.0.0.2:8001",
    )


def test_pod_turning_unready_or_deleted_loses_endpoints(ds: Datastore) -> None:
    ds.upsert_pod(pod("a"))
    ds.upsert_pod(pod("a", ready=False))
    assert names(ds) == []
    ds.upsert_pod(pod("a"))
    ds.delete_pod("a")
    assert names(ds) == [] and ds.pods() == []


def test_selector_is_an_and_of_all_labels() -> None:
    ds = Datastore()
    ds.set_pool(pool([8000], {"app": "vllm", "tier": "gpu"}))
    ds.upsert_pod(pod("both", labels={"app": "vllm", "tier": "gpu", "extra": "x"}))
    ds.upsert_pod(pod("one", labels={"app": "vllm"}))
    ds.upsert_pod(pod("wrong", labels={"app": "vllm", "tier": "cpu"}))
    assert names(ds) == ["both-rank-0"]


@pytest.mark.parametrize(
    ("annotation", "expected"),
    [
        ("8001", ["a-rank-1"]),
        ("8000, 8001", ["a-rank-0", "a-rank-1"]),
        ("8001,abc,9999", ["a-rank-1"]),  # unparsable and non-pool ports are ignored
        ("abc", []),  # present but names no pool port: no endpoints
        ("", []),
        ("8000abc", ["a-rank-0"]),  # leading integer, as Go's Sscanf("%d")
        ("-8000,0", []),
    ],
)
def test_active_ports_annotation(ds: Datastore, annotation: str, expected: list[str]) -> None:
    ds.upsert_pod(pod("a", annotations={ACTIVE_PORTS_ANNOTATION: annotation}))
    assert names(ds) == expected


def test_annotation_change_removes_inactive_ranks(ds: Datastore) -> None:
    ds.upsert_pod(pod("a"))
    kept = ds.endpoint("a-rank-0")
    ds.upsert_pod(pod("a", annotations={ACTIVE_PORTS_ANNOTATION: "8000"}))
    assert names(ds) == ["a-rank-0"] and ds.endpoint("a-rank-0") is kept


def test_selector_change_resyncs_all_known_pods(ds: Datastore) -> None:
    ds.upsert_pod(pod("old", labels={"app": "vllm"}))
    ds.upsert_pod(pod("new", labels={"app": "sglang"}))
    assert names(ds) == ["old-rank-0", "old-rank-1"]
    ds.set_pool(pool([8000, 8001], {"app": "sglang"}))
    assert names(ds) == ["new-rank-0", "new-rank-1"]


def test_port_change_resyncs_and_keeps_surviving_endpoint_identity(ds: Datastore) -> None:
    ds.upsert_pod(pod("a"))
    rank0 = ds.endpoint("a-rank-0")
    assert rank0 is not None
    rank0.inflight_requests = 3
    ds.set_pool(pool([8000]))
    assert names(ds) == ["a-rank-0"]
    assert ds.endpoint("a-rank-0") is rank0 and rank0.inflight_requests == 3
    ds.set_pool(pool([9000, 9001, 9002]))
    assert names(ds) == ["a-rank-0", "a-rank-1", "a-rank-2"]
    assert [ep.port for ep in sorted(ds.endpoints(), key=lambda e: e.name)] == [9000, 9001, 9002]


def test_metrics_port_only_with_a_single_target_port() -> None:
    ds = Datastore(model_server_metrics_port=9090)
    ds.set_pool(pool([8000]))
    ds.upsert_pod(pod("a"))
    ep = ds.endpoint("a-rank-0")
    assert ep is not None and ep.metrics_hostport == "10.0.0.1:9090"
    ds.set_pool(pool([8000, 8001]))
    ep = ds.endpoint("a-rank-1")
    assert ep is not None and ep.metrics_hostport == "10.0.0.1:8001"


def test_replace_pods_deletes_missing(ds: Datastore) -> None:
    ds.replace_pods([pod("a"), pod("b")])
    ds.replace_pods([pod("b")])
    assert names(ds) == ["b-rank-0", "b-rank-1"]


def test_pods_reported_before_the_pool_join_when_it_arrives() -> None:
    ds = Datastore()
    ds.upsert_pod(pod("a"))
    assert names(ds) == []
    ds.set_pool(pool([8000]))
    assert names(ds) == ["a-rank-0"]


def test_priority_of_defaults_to_zero(ds: Datastore) -> None:
    ds.set_objective(objective("critical", 10))
    ds.set_objective(objective("standard", None))
    ds.set_objective(objective("sheddable", -10))
    assert ds.priority_of("critical") == 10
    assert ds.priority_of("sheddable") == -10
    assert ds.priority_of("standard") == 0
    assert ds.priority_of("missing") == 0
    assert ds.priority_of(None) == 0
    ds.delete_objective("critical")
    assert ds.priority_of("critical") == 0
    assert sorted(o.metadata.name for o in ds.objectives()) == ["sheddable", "standard"]


def test_change_notifications() -> None:
    ds = Datastore()
    seen: list[tuple[Event, Any]] = []
    unsubscribe = ds.subscribe(lambda ev, obj: seen.append((ev, obj)))
    p = pool([8000])
    ds.set_pool(p)
    ds.upsert_pod(pod("a"))
    ds.upsert_pod(pod("a", ip="10.0.0.9"))  # an update, not a new endpoint
    ds.set_objective(objective("o", 1))
    ds.delete_pod("a")
    ds.clear()
    kinds = [ev for ev, _ in seen]
    assert kinds == [
        Event.POOL,
        Event.ENDPOINT_ADDED,
        Event.OBJECTIVE,
        Event.ENDPOINT_REMOVED,
        Event.CLEARED,
    ]
    assert seen[0][1] is p
    assert isinstance(seen[1][1], Endpoint) and seen[1][1].name == "a-rank-0"
    unsubscribe()
    unsubscribe()  # idempotent
    ds.set_pool(p)
    assert len(seen) == 5


def test_a_failing_listener_does_not_break_the_writer(ds: Datastore) -> None:
    seen: list[Event] = []

    def broken(ev: Event, obj: Any) -> None:
        raise RuntimeError("boom")

    ds.subscribe(broken)
    ds.subscribe(lambda ev, obj: seen.append(ev))
    ds.upsert_pod(pod("a"))
    assert names(ds) == ["a-rank-0", "a-rank-1"]
    assert seen == [Event.ENDPOINT_ADDED, Event.ENDPOINT_ADDED]


def test_static_endpoints() -> None:
    ds = Datastore()
    events: list[tuple[Event, str]] = []
    ds.subscribe(lambda ev, obj: events.append((ev, obj.name)))
    ds.set_static_endpoints({"s1": ("127.0.0.1", 8001), "s2": ("::1", 8002)})
    s1 = ds.endpoint("s1")
    assert s1 is not None and ds.endpoint_by_hostport("[::1]:8002") is ds.endpoint("s2")
    snapshot = ds.endpoints()
    assert ds.endpoints() is snapshot  # cached until a change
    ds.set_static_endpoints({"s1": ("127.0.0.1", 8001), "s2": ("127.0.0.1", 9000)})
    assert ds.endpoint("s1") is s1  # unchanged entries keep their object
    assert ds.endpoints() is not snapshot
    ds.set_static_endpoints({})
    assert ds.endpoints() == ()
    assert events == [
        (Event.ENDPOINT_ADDED, "s1"),
        (Event.ENDPOINT_ADDED, "s2"),
        (Event.ENDPOINT_REMOVED, "s2"),
        (Event.ENDPOINT_ADDED, "s2"),
        (Event.ENDPOINT_REMOVED, "s1"),
        (Event.ENDPOINT_REMOVED, "s2"),
    ]
