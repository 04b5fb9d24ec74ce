"""The pure parts of Kubernetes mode: flags, objective status decisions, object translation."""

from __future__ import annotations

import argparse
import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from lightkube.resources.core_v1 import Pod as K8sPod

from endpoint_picker.api import InferencePool
from endpoint_picker.datastore import Datastore
from endpoint_picker.errors import ConfigError
from endpoint_picker.sources import k8s_status as st
from endpoint_picker.sources.k8s_args import (
    deployment_name,
    parse_ports,
    parse_selector,
    resolve_namespace,
)
from endpoint_picker.sources.k8s_resources import pod_from_k8s, pool_manifest
from endpoint_picker.sources.kubernetes import KubernetesSource, add_arguments, from_args
from endpoint_picker.sources.leader import LeaderElector, lease_name

DATA = Path(__file__).resolve().parents[1] / "data" / "k8s"
POOL = "vllm-llama3-8b-instruct"


def recorded(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / f"{name}.json").read_text())
    return data


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


# -- flags ----------------------------------------------------------------------------------------


def test_flags_have_upstream_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NAMESPACE", raising=False)
    args = parse()
    assert (args.pool_name, args.pool_group, args.ha_enable_leader_election) == (
        "",
        "inference.networking.k8s.io",
        False,
    )
    assert resolve_namespace(args.pool_namespace) == "default"
    monkeypatch.setenv("NAMESPACE", "from-env")
    assert resolve_namespace("") == "from-env"
    assert resolve_namespace("from-flag") == "from-flag"  # the flag wins over the env
    assert from_args(args, Datastore()) is None  # neither pool nor selector: another source


def test_pool_mode_from_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NAMESPACE", "llm")
    args = parse("--pool-name", POOL, "--ha-enable-leader-election")
    src = from_args(args, Datastore())
    assert isinstance(src, KubernetesSource)
    assert (src.pool_name, src.namespace, src.leader_election) == (POOL, "llm", True)
    assert not src.is_leader and not src.is_ready()  # no lease yet, no pool yet


def test_standalone_mode_from_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_NAME", "vllm-epp-6d9f8c7b5d-x7k2p")
    args = parse(
        "--endpoint-selector",
        "app=vllm,tier=gpu",
        "--endpoint-target-ports",
        "8000,8001",
        "--endpoint-target-ports",
        "8000",
    )
    src = from_args(args, Datastore())
    assert src is not None and src.pool_name == "vllm-epp"
    assert src._standalone == {"app": "vllm", "tier": "gpu"}
    assert src._ports == [8000, 8001]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--pool-name", "a", "--endpoint-selector", "a=b"), "not both"),
        (("--endpoint-target-ports", "8000"), "needs --endpoint-selector"),
        (("--endpoint-selector", "app=x"), "1 to 8 target ports"),
        (("--endpoint-selector", "app = x", "--endpoint-target-ports", "1"), "without spaces"),
        (("--endpoint-selector", "app", "--endpoint-target-ports", "1"), "k=v"),
        (("--endpoint-selector", "a=b", "--endpoint-target-ports", "http"), "not a port"),
        (("--endpoint-selector", "a=b", "--endpoint-target-ports", "70000"), "out of range"),
    ],
)
def test_bad_flags_are_config_errors(
    argv: tuple[str, ...], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POD_NAME", "epp-abc12-xyz89")
    with pytest.raises(ConfigError, match=message):
        from_args(parse(*argv), Datastore())


def test_selector_ports_and_deployment_name_rules() -> None:
    assert parse_selector("a=b,c.io/d=") == {"a": "b", "c.io/d": ""}
    assert parse_ports([str(p) for p in range(1, 9)]) == list(range(1, 9))
    with pytest.raises(ConfigError):
        parse_ports([",".join(str(p) for p in range(1, 10))])
    assert deployment_name("my-epp-7c9d6f5b4-abcde") == "my-epp"
    for bad in (None, "", "standalone"):
        with pytest.raises(ConfigError, match="POD_NAME"):
            deployment_name(bad)


def test_lease_name_and_timing_rules_are_upstreams() -> None:
    assert lease_name("default", POOL) == (
        "epp-default-vllm-llama3-8b-instruct.gateway-api-inference-extension.sigs.k8s.io"
    )
    with pytest.raises(ValueError):
        LeaderElector(None, name="x", namespace="y", identity="z", renew_deadline=20)


# -- objective status -----------------------------------------------------------------------------


def objective(**ref: str) -> dict[str, Any]:
    data = recorded("inferenceobjective")
    data["spec"]["poolRef"] = {"name": POOL, **ref}
    return data


def want(data: dict[str, Any], exists: bool = True) -> st.Desired:
    return st.desired(
        data,
        pool_name=POOL,
        pool_group="inference.networking.k8s.io",
        pool_exists=exists,
        namespace="default",
    )


def test_accepted_reasons() -> None:
    ok = want(objective())
    assert (ok.status, ok.reason, ok.observed_generation) == ("True", "Accepted", 1)
    assert want(objective(), exists=False).reason == "PoolNotFound"
    bad_kind = want(objective(kind="Service"))
    assert (bad_kind.status, bad_kind.reason) == ("False", "InvalidPoolRef")
    assert want(objective(group="apps")).reason == "InvalidPoolRef"


def test_which_objectives_are_ours() -> None:
    group = "inference.networking.k8s.io"
    assert st.serves(objective(), POOL, group)
    assert st.concerns_us(objective(kind="Service"), POOL, group)  # we say it is wrong
    assert not st.serves(objective(kind="Service"), POOL, group)
    # An InferencePool of the other API group is some other EPP's business.
    alpha = objective(group="inference.networking.x-k8s.io")
    assert not st.concerns_us(alpha, POOL, group) and not st.serves(alpha, POOL, group)
    assert not st.concerns_us(objective(name="other"), POOL, group)


def test_status_written_only_when_it_changes_and_time_moves_only_on_flips() -> None:
    data = objective()
    target = want(data)
    assert st.needs_write(data, target)  # only the CRD placeholder so far
    t1 = datetime(2025, 6, 1, tzinfo=UTC)
    patch = st.patch_body(data, target, now=t1)
    assert patch["metadata"] == {"resourceVersion": "8812020"}
    conds = patch["status"]["conditions"]
    assert [c["type"] for c in conds] == ["Accepted"]  # placeholder Ready/Pending replaced
    assert conds[0]["lastTransitionTime"] == "2025-06-01T00:00:00Z"
    assert conds[0]["observedGeneration"] == 1

    data["status"] = patch["status"]
    assert not st.needs_write(data, target)
    data["metadata"]["generation"] = 2  # spec changed: same verdict, new generation
    newer = want(data)
    assert st.needs_write(data, newer)
    kept = st.patch_body(data, newer, now=datetime(2026, 1, 1, tzinfo=UTC))
    assert kept["status"]["conditions"][0]["lastTransitionTime"] == "2025-06-01T00:00:00Z"
    flipped = st.patch_body(data, want(data, exists=False), now=datetime(2026, 1, 1, tzinfo=UTC))
    assert flipped["status"]["conditions"][0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"


def test_other_conditions_are_kept() -> None:
    data = objective()
    data["status"]["conditions"].append(
        {"type": "Example", "status": "True", "reason": "X", "message": ""}
    )
    types = [c["type"] for c in st.patch_body(data, want(data))["status"]["conditions"]]
    assert types == ["Example", "Accepted"]


# -- translation ----------------------------------------------------------------------------------


def test_recorded_pod_translates_as_upstream() -> None:
    raw = recorded("pod")
    pod = pod_from_k8s(K8sPod.from_dict(raw))
    assert (pod.name, pod.ip, pod.ready) == (
        "vllm-llama3-8b-instruct-6d9f8c7b5d-x7k2p",
        "10.24.3.17",
        True,
    )
    assert pod.labels["app"] == POOL

    deleting = copy.deepcopy(raw)
    deleting["metadata"]["deletionTimestamp"] = "2025-06-12T10:00:00Z"
    assert not pod_from_k8s(K8sPod.from_dict(deleting)).ready
    not_ready = copy.deepcopy(raw)
    next(c for c in not_ready["status"]["conditions"] if c["type"] == "Ready")["status"] = "False"
    assert not pod_from_k8s(K8sPod.from_dict(not_ready)).ready
    no_ip = copy.deepcopy(raw)
    del no_ip["status"]["podIP"]
    assert not pod_from_k8s(K8sPod.from_dict(no_ip)).ready


def test_recorded_pool_and_alpha_pool_become_v1_models() -> None:
    pool = InferencePool.model_validate(pool_manifest(recorded("inferencepool")))
    assert pool.spec.selector.match_labels == {"app": POOL}
    assert [p.number for p in pool.spec.target_ports] == [8000]
    alpha = {
        "apiVersion": "inference.networking.x-k8s.io/v1alpha2",
        "kind": "InferencePool",
        "metadata": {"name": "old", "namespace": "default", "managedFields": [{}]},
        "spec": {
            "selector": {"app": "x"},
            "targetPortNumber": 8000,
            "extensionRef": {"name": "old-epp"},
        },
    }
    old = InferencePool.model_validate(pool_manifest(alpha))
    assert old.spec.selector.match_labels == {"app": "x"}
    assert [p.number for p in old.spec.target_ports] == [8000]
