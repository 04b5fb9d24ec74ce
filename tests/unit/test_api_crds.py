"""The generated CRDs: committed copies don't drift, and the schemas enforce the models' rules.

The field-by-field check walks every property of each CRD schema, probes it with values on and
around its bounds, patterns and enums, and asserts that a JSON-schema validator given the CRD's
``openAPIV3Schema`` and the pydantic model reach the same verdict.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from endpoint_picker.api import InferenceObjective, InferencePool, crds
from endpoint_picker.api.manifests import InvalidObject, parse_object
from endpoint_picker.api.objective import LlmdInferenceObjective
from endpoint_picker.api.rewrite import InferenceModelRewrite, LlmdInferenceModelRewrite
from endpoint_picker.api.types import Model, Resource

ROOT = Path(__file__).resolve().parents[2]
COND = {
    "type": "Accepted",
    "status": "True",
    "reason": "Accepted",
    "message": "ok",
    "lastTransitionTime": "2025-01-01T00:00:00Z",
    "observedGeneration": 1,
}
FULL: dict[type[Resource], dict[str, Any]] = {
    InferencePool: {
        "apiVersion": "inference.networking.k8s.io/v1",
        "kind": "InferencePool",
        "metadata": {"name": "pool"},
        "spec": {
            "selector": {"matchLabels": {"app": "vllm"}},
            "targetPorts": [{"number": 8000}],
            "appProtocol": "http",
            "endpointPickerRef": {
                "group": "",
                "kind": "Service",
                "name": "epp",
                "port": {"number": 9002},
                "failureMode": "FailClose",
            },
        },
        "status": {
            "parents": [
                {
                    "conditions": [COND],
                    "parentRef": {
                        "group": "gateway.networking.k8s.io",
                        "kind": "Gateway",
                        "name": "gw",
                        "namespace": "default",
                    },
                    "controllerName": "example.com/gateway-controller",
                }
            ]
        },
    },
    InferenceObjective: {
        "apiVersion": "inference.networking.x-k8s.io/v1alpha2",
        "kind": "InferenceObjective",
        "metadata": {"name": "chat"},
        "spec": {
            "priority": 1,
            "poolRef": {
                "group": "inference.networking.k8s.io",
                "kind": "InferencePool",
                "name": "p",
            },
        },
        "status": {"conditions": [COND]},
    },
    InferenceModelRewrite: {
        "apiVersion": "inference.networking.x-k8s.io/v1alpha2",
        "kind": "InferenceModelRewrite",
        "metadata": {"name": "food-review-rollout"},
        "spec": {
            "poolRef": {
                "group": "inference.networking.k8s.io",
                "kind": "InferencePool",
                "name": "p",
            },
            "rules": [
                {
                    "matches": [{"model": {"type": "Exact", "value": "food-review"}}],
                    "targets": [
                        {"modelRewrite": "food-review-v1", "weight": 90},
                        {"modelRewrite": "food-review-v2", "weight": 10},
                    ],
                }
            ],
        },
        "status": {"conditions": [COND]},
    },
}
# llm-d-router's group: the same objects under llm-d.ai/v1alpha2.
FULL[LlmdInferenceObjective] = FULL[InferenceObjective] | {"apiVersion": "llm-d.ai/v1alpha2"}
FULL[LlmdInferenceModelRewrite] = FULL[InferenceModelRewrite] | {"apiVersion": "llm-d.ai/v1alpha2"}
RESOURCES = list(FULL)
assert list(crds.RESOURCES) == RESOURCES


def schema(resource: type[Resource]) -> dict[str, Any]:
    return crds.crd(resource)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]  # type: ignore[no-any-return]


def model_ok(doc: dict[str, Any]) -> bool:
    try:
        parse_object(doc)
    except InvalidObject:
        return False
    return True


# The CRDs' CEL rules, evaluated here by hand (JSON Schema does not know them). A rule that is
# not listed fails the test, so a new rule cannot slip into the CRDs unchecked.
CEL: dict[str, Any] = {
    "self.all(p1, self.exists_one(p2, p1.number==p2.number))": lambda v: all(
        sum(p2.get("number") == p1.get("number") for p2 in v) == 1 for p1 in v
    ),
    "self.kind != 'Service' || has(self.port)": lambda v: (
        v.get("kind", "Service") != "Service" or "port" in v
    ),
}


def cel_ok(node: dict[str, Any], value: Any) -> bool:
    for rule in node.get("x-kubernetes-validations", []):
        if not CEL[rule["rule"]](value):
            return False
    if isinstance(value, dict):
        props = node.get("properties", {})
        return all(cel_ok(props[k], v) for k, v in value.items() if k in props)
    if isinstance(value, list) and "items" in node:
        return all(cel_ok(node["items"], v) for v in value)
    return True


def schema_ok(resource: type[Resource], doc: dict[str, Any]) -> bool:
    """The API server's verdict: the OpenAPI schema, then (on a valid object) the CEL rules."""
    root = schema(resource)
    return jsonschema.Draft7Validator(root).is_valid(doc) and cel_ok(root, doc)


# -- drift -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("resource", RESOURCES)
def test_committed_crd_matches_models(resource: type[Resource]) -> None:
    committed = ROOT / "deploy" / "crds" / crds.file_name(resource)
    assert committed.read_text() == crds.render(resource), (
        f"{committed} drifted from the models: run `epp crds -o deploy/crds`"
    )


def test_epp_crds_prints_all_as_valid_yaml() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "endpoint_picker.cli", "crds"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    assert [(d["spec"]["group"], d["spec"]["names"]["kind"]) for d in docs] == [
        ("inference.networking.k8s.io", "InferencePool"),
        ("inference.networking.x-k8s.io", "InferenceObjective"),
        ("inference.networking.x-k8s.io", "InferenceModelRewrite"),
        ("llm-d.ai", "InferenceObjective"),
        ("llm-d.ai", "InferenceModelRewrite"),
    ]
    assert docs == [crds.crd(r) for r in RESOURCES]
    for doc in docs:
        assert doc["apiVersion"] == "apiextensions.k8s.io/v1"
        jsonschema.Draft7Validator.check_schema(
            doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        )


def test_crd_facts_as_upstream() -> None:
    pool, objective, rewrite, llmd_objective, llmd_rewrite = (crds.crd(r) for r in RESOURCES)
    assert rewrite["metadata"]["name"] == "inferencemodelrewrites.inference.networking.x-k8s.io"
    assert llmd_objective["metadata"]["name"] == "inferenceobjectives.llm-d.ai"
    assert llmd_rewrite["metadata"]["name"] == "inferencemodelrewrites.llm-d.ai"
    assert "llm-d.ai/bundle-version" in llmd_rewrite["metadata"]["annotations"]
    rules = schema(InferenceModelRewrite)["properties"]["spec"]["properties"]["rules"]
    target = rules["items"]["properties"]["targets"]
    assert target["minItems"] == 1
    weight = target["items"]["properties"]["weight"]
    assert (weight["minimum"], weight["maximum"], weight["format"]) == (1, 1_000_000, "int32")
    match = rules["items"]["properties"]["matches"]["items"]["properties"]["model"]
    assert match["properties"]["type"]["enum"] == ["Exact"]
    assert (
        schema(InferenceModelRewrite)["properties"]["status"]["properties"]["conditions"][
            "default"
        ][0]["type"]
        == "Accepted"
    )
    assert pool["metadata"]["name"] == "inferencepools.inference.networking.k8s.io"
    assert pool["spec"]["names"]["shortNames"] == ["infpool"]
    assert "api-approved.kubernetes.io" in pool["metadata"]["annotations"]
    assert objective["metadata"]["name"] == "inferenceobjectives.inference.networking.x-k8s.io"
    version = objective["spec"]["versions"][0]
    assert version["name"] == "v1alpha2" and version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "Inference Pool",
        "Priority",
        "Age",
    ]
    spec = schema(InferencePool)["properties"]["spec"]["properties"]
    assert spec["targetPorts"]["x-kubernetes-validations"] == [
        {
            "rule": "self.all(p1, self.exists_one(p2, p1.number==p2.number))",
            "message": "port number must be unique",
        }
    ]
    assert spec["endpointPickerRef"]["x-kubernetes-validations"][0]["rule"] == (
        "self.kind != 'Service' || has(self.port)"
    )
    assert spec["targetPorts"]["items"]["properties"]["number"]["format"] == "int32"
    status = schema(InferenceObjective)["properties"]["status"]["properties"]["conditions"]
    assert status["default"][0]["type"] == "Ready" and status["maxItems"] == 8
    assert status["x-kubernetes-list-map-keys"] == ["type"]


def test_structural_schema_has_no_pydantic_leftovers() -> None:
    text = crds.render_all()
    for leftover in ("$ref", "anyOf", "title:", "additionalProperties: false", "null"):
        assert leftover not in text


# -- same properties ------------------------------------------------------------------------------
def schema_paths(node: dict[str, Any], prefix: str = "") -> set[str]:
    out = set()
    for name, sub in node.get("properties", {}).items():
        out.add(prefix + name)
        out |= schema_paths(sub, prefix + name + ".")
    if "items" in node:
        out |= schema_paths(node["items"], prefix.rstrip(".") + "[].")
    return out


def model_paths(model: type[Model], prefix: str = "") -> set[str]:
    out = set()
    for name, info in model.model_fields.items():
        alias = info.alias or name
        out.add(prefix + alias)
        for sub in _models_in(info.annotation):
            suffix = "[]." if "list[" in str(info.annotation) else "."
            out |= model_paths(sub, prefix + alias + suffix)
    return out


def _models_in(annotation: Any) -> Iterator[type[Model]]:
    if isinstance(annotation, type) and issubclass(annotation, Model):
        yield annotation
    for arg in getattr(annotation, "__args__", ()):
        yield from _models_in(arg)
    if hasattr(annotation, "__origin__") and hasattr(annotation, "__metadata__"):
        yield from _models_in(annotation.__origin__)


@pytest.mark.parametrize("resource", RESOURCES)
def test_schema_and_model_have_the_same_fields(resource: type[Resource]) -> None:
    props = schema(resource)["properties"]
    for part in ("spec", "status"):
        model = resource.model_fields[part].annotation
        assert isinstance(model, type)
        assert schema_paths(props[part]) == model_paths(model), part


# -- same verdicts, field by field ----------------------------------------------------------------
def leaves(
    node: dict[str, Any], path: tuple[Any, ...] = ()
) -> Iterator[tuple[tuple[Any, ...], dict[str, Any]]]:
    if node.get("type") in ("string", "integer"):
        yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from leaves(sub, (*path, name))
    if "items" in node:
        yield from leaves(node["items"], (*path, 0))
    if isinstance(node.get("additionalProperties"), dict):
        yield from leaves(node["additionalProperties"], (*path, "app"))


def dns(n: int) -> str:
    """A DNS-subdomain-shaped string of exactly n characters."""
    text = ".".join(["a" * 61] * (n // 62 + 1))[:n]
    return text[:-1] + "b" if text.endswith(".") else text


def probes(node: dict[str, Any]) -> list[Any]:
    if node.get("format") == "date-time":
        return ["2025-01-01T00:00:00Z", 5]
    if node["type"] == "integer":
        lo, hi = node.get("minimum", -5), node.get("maximum", 70000)
        return [lo - 1, lo, hi, hi + 1, 0, -1, 2**31, "1", 1.5, True]
    values: list[Any] = [
        "",
        "a",
        "A",
        "a.b",
        "a..b",
        "-a",
        "a-",
        "a_b",
        "a b",
        "a/b",
        "a/b/c",
        "a:b",
    ]
    values += ["example.com/bar", "example.com/Bar", "Service", "invalid/kind", "9x", 5, True]
    for n in {node.get("minLength", 0), node.get("maxLength", 100)}:
        for m in (n - 1, n, n + 1):
            if m >= 0:
                values += ["a" * m, dns(m), "A" * m]
    for v in node.get("enum", []):
        values += [v, v + "x", v.lower()]
    return values


def set_at(doc: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    node: Any = doc
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return doc


def delete_at(doc: dict[str, Any], path: tuple[Any, ...]) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    node: Any = doc
    for part in path[:-1]:
        node = node[part]
    del node[path[-1]]
    return doc


@pytest.mark.parametrize("resource", RESOURCES)
def test_every_leaf_same_verdict(resource: type[Resource]) -> None:
    base = FULL[resource]
    assert model_ok(base) and schema_ok(resource, base)
    checked = 0
    mismatches = []
    for path, node in leaves(schema(resource)):
        if path[0] not in ("spec", "status"):
            continue
        for value in probes(node):
            doc = set_at(base, path, value)
            want, got = schema_ok(resource, doc), model_ok(doc)
            checked += 1
            if want != got:
                mismatches.append((path, value, want, got))
    assert checked > 200
    assert mismatches == []


@pytest.mark.parametrize("resource", RESOURCES)
def test_required_and_optional_fields_same_verdict(resource: type[Resource]) -> None:
    base = FULL[resource]

    def objects(
        node: dict[str, Any], path: tuple[Any, ...] = ()
    ) -> Iterator[tuple[tuple[Any, ...], dict[str, Any]]]:
        if "properties" in node:
            yield path, node
            for name, sub in node["properties"].items():
                yield from objects(sub, (*path, name))
        if "items" in node:
            yield from objects(node["items"], (*path, 0))

    removed = 0
    for path, node in objects(schema(resource)):
        if path[:1] not in (("spec",), ("status",)):
            continue
        for name in node["properties"]:
            doc = delete_at(base, (*path, name))
            assert schema_ok(resource, doc) == model_ok(doc), (path, name)
            if name in node.get("required", []):
                assert not model_ok(doc), (path, name)
            removed += 1
    assert removed >= 10


def test_array_and_map_sizes_same_verdict() -> None:
    cases: list[tuple[type[Resource], tuple[Any, ...], Any]] = []
    for n in (0, 1, 8, 9):
        ports = [{"number": 8000 + i} for i in range(n)]
        cases.append((InferencePool, ("spec", "targetPorts"), ports))
        conds = [{**COND, "type": f"T{i}"} for i in range(n)]
        cases.append((InferenceObjective, ("status", "conditions"), conds))
        cases.append((InferencePool, ("status", "parents", 0, "conditions"), conds))
    for n in (0, 1, 32, 33):
        parents = [FULL[InferencePool]["status"]["parents"][0]] * n
        cases.append((InferencePool, ("status", "parents"), parents))
    for n in (0, 1, 64, 65):
        cases.append(
            (InferencePool, ("spec", "selector", "matchLabels"), {f"k{i}": "v" for i in range(n)})
        )
    for resource, path, value in cases:
        doc = set_at(FULL[resource], path, value)
        assert schema_ok(resource, doc) == model_ok(doc), (path, len(value))


def test_known_differences_are_only_the_documented_ones() -> None:
    """Rules the API server enforces outside the OpenAPI schema, which the models mirror."""
    pool = FULL[InferencePool]
    # Unknown fields: the server prunes them or (kubectl --validate=strict) rejects them.
    unknown = set_at(pool, ("spec", "extra"), 1)
    assert schema_ok(InferencePool, unknown) and not model_ok(unknown)
    # CEL rules: enforced by both (the test's evaluator above stands in for the server's).
    dup = set_at(pool, ("spec", "targetPorts"), [{"number": 1}, {"number": 1}])
    assert not schema_ok(InferencePool, dup) and not model_ok(dup)
    no_port = delete_at(pool, ("spec", "endpointPickerRef", "port"))
    assert not schema_ok(InferencePool, no_port) and not model_ok(no_port)
    backend = set_at(no_port, ("spec", "endpointPickerRef", "kind"), "Backend")
    assert schema_ok(InferencePool, backend) and model_ok(backend)
    # Map keys (matchLabels): no propertyNames in structural schemas; the model checks them.
    bad_key = set_at(pool, ("spec", "selector", "matchLabels"), {"a/b/c": "v"})
    assert schema_ok(InferencePool, bad_key) and not model_ok(bad_key)
    # Anchors behave as RE2's: "$" does not match before a trailing newline.
    assert not model_ok(set_at(pool, ("spec", "endpointPickerRef", "kind"), "Service\n"))
