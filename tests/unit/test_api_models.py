"""API models: every bound of the issue, the seed's valid/invalid examples, and defaults."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from endpoint_picker.api import InferenceObjective, InferencePool
from endpoint_picker.api.manifests import InvalidObject, parse_object

POOL: dict[str, Any] = {
    "apiVersion": "inference.networking.k8s.io/v1",
    "kind": "InferencePool",
    "metadata": {"name": "pool"},
    "spec": {
        "selector": {"matchLabels": {"app": "vllm"}},
        "targetPorts": [{"number": 8000}],
        "endpointPickerRef": {"name": "epp", "port": {"number": 9002}},
    },
}
OBJECTIVE: dict[str, Any] = {
    "apiVersion": "inference.networking.x-k8s.io/v1alpha2",
    "kind": "InferenceObjective",
    "metadata": {"name": "chat"},
    "spec": {"poolRef": {"name": "pool"}},
}


def with_value(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of ``base`` with the dotted ``path`` set to ``value``."""
    doc = copy.deepcopy(base)
    *parents, last = path.split(".")
    node = doc
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    node[last] = value
    return doc


def errors_of(doc: dict[str, Any]) -> list[str]:
    try:
        parse_object(doc)
    except InvalidObject as exc:
        return [f"{e.path}: {e.reason}" for e in exc.errors]
    return []


# -- seed examples ---------------------------------------------------------------------------------
@pytest.mark.parametrize("group", ["", "gateway.networking.k8s.io", "foo.example.com"])
def test_seed_valid_groups(group: str) -> None:
    obj = parse_object(with_value(OBJECTIVE, "spec.poolRef.group", group))
    assert isinstance(obj, InferenceObjective)
    assert obj.spec.pool_ref.group == group


def test_seed_invalid_group_names_path_and_pattern() -> None:
    errs = errors_of(with_value(OBJECTIVE, "spec.poolRef.group", "example.com/bar"))
    assert len(errs) == 1
    assert errs[0].startswith("spec.poolRef.group: must match ^$|^[a-z0-9]")


@pytest.mark.parametrize("kind", ["Service", "HTTPRoute", "InferencePool", "a"])
def test_seed_valid_kinds(kind: str) -> None:
    assert errors_of(with_value(OBJECTIVE, "spec.poolRef.kind", kind)) == []


@pytest.mark.parametrize("kind", ["invalid/kind", "", "9lives", "Trailing-"])
def test_invalid_kinds(kind: str) -> None:
    errs = errors_of(with_value(OBJECTIVE, "spec.poolRef.kind", kind))
    assert errs and errs[0].startswith("spec.poolRef.kind: must")


# -- boundary lengths ------------------------------------------------------------------------------
def dns_of_length(n: int) -> str:
    """A DNS subdomain of exactly ``n`` characters (labels of 'a's joined by dots)."""
    labels, left = [], n
    while left > 0:
        take = min(63, left)
        labels.append("a" * take)
        left -= take + 1
    text = ".".join(labels)
    return text if len(text) == n else text[:-1] + "b" if len(text) > n else text + "a"


@pytest.mark.parametrize(
    ("path", "base", "ok", "bad"),
    [
        ("spec.poolRef.group", OBJECTIVE, 253, 254),
        ("spec.poolRef.name", OBJECTIVE, 253, 254),
        ("spec.poolRef.kind", OBJECTIVE, 63, 64),
        ("spec.endpointPickerRef.group", POOL, 253, 254),
        ("spec.endpointPickerRef.name", POOL, 253, 254),
        ("spec.endpointPickerRef.kind", POOL, 63, 64),
    ],
)
def test_length_bounds(path: str, base: dict[str, Any], ok: int, bad: int) -> None:
    make = dns_of_length if path.endswith("group") else (lambda n: "a" * n)
    good, too_long = make(ok), make(bad)
    assert (len(good), len(too_long)) == (ok, bad)
    doc = with_value(base, path, good)
    if path.startswith("spec.endpointPickerRef") and path.endswith("kind"):
        doc["spec"]["endpointPickerRef"]["port"] = {"number": 9002}
    assert errors_of(doc) == []
    errs = errors_of(with_value(doc, path, too_long))
    assert errs == [f"{path}: must be at most {ok} characters (got {bad})"]


def test_pool_ref_name_min_length() -> None:
    assert errors_of(with_value(OBJECTIVE, "spec.poolRef.name", "")) == [
        "spec.poolRef.name: must be at least 1 characters"
    ]


def test_match_labels_entries_1_to_64() -> None:
    labels = {f"k{i}": "v" for i in range(64)}
    assert errors_of(with_value(POOL, "spec.selector.matchLabels", labels)) == []
    errs = errors_of(with_value(POOL, "spec.selector.matchLabels", {**labels, "k64": "v"}))
    assert errs == ["spec.selector.matchLabels: must have at most 64 entries (got 65)"]
    errs = errors_of(with_value(POOL, "spec.selector.matchLabels", {}))
    assert errs == ["spec.selector.matchLabels: must have at least 1 entries (got 0)"]


@pytest.mark.parametrize("value", ["", "a", "MyValue", "my.name", "123-my-value", "a" * 63])
def test_label_values_valid(value: str) -> None:
    assert errors_of(with_value(POOL, "spec.selector.matchLabels", {"app": value})) == []


@pytest.mark.parametrize("value", ["a" * 64, "-a", "a-", "a b", "a/b"])
def test_label_values_invalid(value: str) -> None:
    errs = errors_of(with_value(POOL, "spec.selector.matchLabels", {"app": value}))
    assert len(errs) == 1 and errs[0].startswith("spec.selector.matchLabels.app: must")


@pytest.mark.parametrize(
    ("key", "ok"),
    [
        ("app", True),
        ("app.kubernetes.io/name", True),
        ("a" * 63, True),
        ("a" * 64, False),
        (dns_of_length(253 - 2) + "/a", True),
        (dns_of_length(253 - 1) + "/a", False),
        ("a/b/c", False),
        ("-app", False),
        ("", False),
    ],
)
def test_label_keys(key: str, ok: bool) -> None:
    errs = errors_of(with_value(POOL, "spec.selector.matchLabels", {key: "v"}))
    assert (errs == []) is ok, errs


def test_target_ports_bounds_and_uniqueness() -> None:
    eight = [{"number": 8000 + i} for i in range(8)]
    pool = parse_object(with_value(POOL, "spec.targetPorts", eight))
    assert isinstance(pool, InferencePool)
    assert pool.target_port_numbers == list(range(8000, 8008))
    assert errors_of(with_value(POOL, "spec.targetPorts", [*eight, {"number": 9000}])) == [
        "spec.targetPorts: must have at most 8 items (got 9)"
    ]
    assert errors_of(with_value(POOL, "spec.targetPorts", [])) == [
        "spec.targetPorts: must have at least 1 items (got 0)"
    ]
    dup = [{"number": 8000}, {"number": 8001}, {"number": 8000}]
    assert errors_of(with_value(POOL, "spec.targetPorts", dup)) == [
        "spec.targetPorts: port number must be unique"
    ]


@pytest.mark.parametrize(("number", "ok"), [(0, False), (1, True), (65535, True), (65536, False)])
def test_port_number_range(number: int, ok: bool) -> None:
    errs = errors_of(with_value(POOL, "spec.targetPorts", [{"number": number}]))
    assert (errs == []) is ok
    if not ok:
        assert errs[0].startswith("spec.targetPorts[0].number: must be")


def test_app_protocol_enum() -> None:
    pool = parse_object(with_value(POOL, "spec.appProtocol", "kubernetes.io/h2c"))
    assert isinstance(pool, InferencePool) and pool.spec.app_protocol == "kubernetes.io/h2c"
    errs = errors_of(with_value(POOL, "spec.appProtocol", "grpc"))
    assert errs == ["spec.appProtocol: must be one of 'http' or 'kubernetes.io/h2c' (got 'grpc')"]


def test_failure_mode_enum_and_service_port_rule() -> None:
    open_ = parse_object(with_value(POOL, "spec.endpointPickerRef.failureMode", "FailOpen"))
    assert isinstance(open_, InferencePool)
    assert open_.spec.endpoint_picker_ref is not None
    assert open_.spec.endpoint_picker_ref.failure_mode == "FailOpen"
    assert errors_of(with_value(POOL, "spec.endpointPickerRef.failureMode", "failOpen"))
    no_port = with_value(POOL, "spec.endpointPickerRef", {"name": "epp"})
    assert errors_of(no_port) == [
        "spec.endpointPickerRef: port is required when kind is 'Service' or unspecified "
        "(defaults to 'Service')"
    ]
    other_kind = with_value(POOL, "spec.endpointPickerRef", {"name": "epp", "kind": "Backend"})
    assert errors_of(other_kind) == []


# -- defaults --------------------------------------------------------------------------------------
def test_defaults_applied() -> None:
    pool = parse_object(POOL)
    assert isinstance(pool, InferencePool)
    ref = pool.spec.endpoint_picker_ref
    assert ref is not None
    assert (ref.group, ref.kind, ref.failure_mode) == ("", "Service", "FailClose")
    assert ref.port is not None and ref.port.number == 9002
    assert pool.spec.app_protocol == "http"
    assert pool.metadata.namespace == "default"
    assert pool.status.parents == []

    obj = parse_object(OBJECTIVE)
    assert isinstance(obj, InferenceObjective)
    assert obj.spec.priority is None and obj.effective_priority == 0
    assert (obj.spec.pool_ref.group, obj.spec.pool_ref.kind) == (
        "inference.networking.k8s.io",
        "InferencePool",
    )
    [cond] = obj.status.conditions
    assert (cond.type, cond.status, cond.reason, cond.message) == (
        "Ready",
        "Unknown",
        "Pending",
        "Waiting for controller",
    )
    assert cond.last_transition_time == datetime(1970, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("priority", [10, 0, -10, 2**63 - 1, -(2**63)])
def test_priority_any_int64(priority: int) -> None:
    obj = parse_object(with_value(OBJECTIVE, "spec.priority", priority))
    assert isinstance(obj, InferenceObjective) and obj.effective_priority == priority


@pytest.mark.parametrize("priority", ["10", 1.5, True, 2**63])
def test_priority_rejects_non_int64(priority: Any) -> None:
    assert errors_of(with_value(OBJECTIVE, "spec.priority", priority))


def test_conditions_max_8_and_unique_types() -> None:
    def cond(t: str) -> dict[str, Any]:
        return {
            "type": t,
            "status": "True",
            "reason": "Accepted",
            "message": "",
            "lastTransitionTime": "2025-01-02T03:04:05Z",
            "observedGeneration": 3,
        }

    eight = [cond(f"T{i}") for i in range(8)]
    obj = parse_object(with_value(OBJECTIVE, "status", {"conditions": eight}))
    assert isinstance(obj, InferenceObjective) and len(obj.status.conditions) == 8
    assert obj.status.conditions[0].observed_generation == 3
    too_many = errors_of(with_value(OBJECTIVE, "status", {"conditions": [*eight, cond("T8")]}))
    assert too_many == ["status.conditions: must have at most 8 items (got 9)"]
    dup = errors_of(with_value(OBJECTIVE, "status", {"conditions": [cond("A"), cond("A")]}))
    assert dup == ["status.conditions: duplicate condition type 'A'"]
    bad = errors_of(
        with_value(OBJECTIVE, "status", {"conditions": [{**cond("A"), "status": "Yes"}]})
    )
    assert bad == [
        "status.conditions[0].status: must be one of 'True', 'False' or 'Unknown' (got 'Yes')"
    ]


def test_unknown_fields_and_wrong_types_are_reported_with_paths() -> None:
    doc = with_value(POOL, "spec.selector.matchExpressions", [])
    doc["spec"]["targetPorts"] = [{"number": "8000"}]
    assert errors_of(doc) == [
        "spec.selector.matchExpressions: unknown field",
        "spec.targetPorts[0].number: must be an integer (got '8000')",
    ]


def test_metadata_name_and_namespace_rules() -> None:
    assert errors_of(with_value(POOL, "metadata.name", "Bad_Name"))
    assert errors_of(with_value(POOL, "metadata.namespace", "a" * 64))
    assert errors_of(with_value(POOL, "metadata.namespace", "a" * 63)) == []
    assert errors_of(with_value(POOL, "metadata", {})) == [
        "metadata.name: required field is missing"
    ]


def test_python_names_and_manifest_round_trip() -> None:
    pool = parse_object(with_value(POOL, "metadata.creationTimestamp", "2025-05-06T07:08:09Z"))
    assert isinstance(pool, InferencePool)
    assert pool.spec.selector.match_labels == {"app": "vllm"}
    assert pool.metadata.creation_timestamp == datetime(2025, 5, 6, 7, 8, 9, tzinfo=UTC)
    manifest = pool.to_manifest()
    assert manifest["metadata"]["creationTimestamp"] == "2025-05-06T07:08:09Z"
    assert manifest["spec"]["endpointPickerRef"]["failureMode"] == "FailClose"
    assert "status" not in manifest  # not given, so not written
    again = parse_object(manifest)
    assert again == pool
    # Construction by Python name works as well.
    obj = InferenceObjective.model_validate(
        {"metadata": {"name": "x"}, "spec": {"pool_ref": {"name": "pool"}, "priority": 4}}
    )
    assert obj.to_manifest()["spec"] == {
        "priority": 4,
        "poolRef": {
            "group": "inference.networking.k8s.io",
            "kind": "InferencePool",
            "name": "pool",
        },
    }
