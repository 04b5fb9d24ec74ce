"""CustomResourceDefinitions generated from the models, so the CRDs and the models cannot disagree.

Pydantic's JSON schema of each spec/status model is rewritten into a Kubernetes *structural*
schema: references inlined, ``X | None`` unwrapped to ``X``, titles and ``additionalProperties:
false`` dropped (the API server prunes or, with ``kubectl --validate=strict``, rejects unknown
fields instead), integer formats and CEL rules (``x-kubernetes-validations``) carried over.
``epp crds`` prints the result; ``deploy/crds/`` holds the committed copy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from endpoint_picker import __version__
from endpoint_picker.api.objective import InferenceObjective, LlmdInferenceObjective
from endpoint_picker.api.pool import InferencePool
from endpoint_picker.api.rewrite import InferenceModelRewrite, LlmdInferenceModelRewrite
from endpoint_picker.api.types import Resource

_API_VERSION_DOC = (
    "APIVersion defines the versioned schema of this representation of an object.\n"
    "Servers should convert recognized schemas to the latest internal value, and\n"
    "may reject unrecognized values.\n"
    "More info: https://git.k8s.io/community/contributors/devel/sig-architecture/"
    "api-conventions.md#resources"
)
_KIND_DOC = (
    "Kind is a string value representing the REST resource this object represents.\n"
    "Servers may infer this from the endpoint the client submits requests to.\n"
    "Cannot be updated.\n"
    "In CamelCase.\n"
    "More info: https://git.k8s.io/community/contributors/devel/sig-architecture/"
    "api-conventions.md#types-kinds"
)

# Per-resource CRD facts that are not field validation.
_RESOURCES: dict[type[Resource], dict[str, Any]] = {
    InferencePool: {
        "plural": "inferencepools",
        "short_names": ["infpool"],
        # Groups under *.k8s.io must carry this, or the API server refuses the CRD.
        "annotations": {
            "api-approved.kubernetes.io": (
                "https://github.com/kubernetes-sigs/gateway-api-inference-extension/pull/1173"
            )
        },
        "printer_columns": [],
    },
    InferenceObjective: {
        "plural": "inferenceobjectives",
        "short_names": [],
        "annotations": {},
        "printer_columns": [
            {"jsonPath": ".spec.poolRef.name", "name": "Inference Pool", "type": "string"},
            {"jsonPath": ".spec.priority", "name": "Priority", "type": "string"},
            {"jsonPath": ".metadata.creationTimestamp", "name": "Age", "type": "date"},
        ],
    },
}
_REWRITE_FACTS: dict[str, Any] = {
    "plural": "inferencemodelrewrites",
    "short_names": [],
    "annotations": {},
    "printer_columns": [
        {"jsonPath": ".spec.poolRef.name", "name": "Inference Pool", "type": "string"},
        {"jsonPath": ".metadata.creationTimestamp", "name": "Age", "type": "date"},
    ],
}
_RESOURCES[InferenceModelRewrite] = _REWRITE_FACTS
# llm-d-router serves the two alpha types in its own group too, with the same schema.
_RESOURCES[LlmdInferenceObjective] = _RESOURCES[InferenceObjective]
_RESOURCES[LlmdInferenceModelRewrite] = _REWRITE_FACTS

_DROP = {"title", "$defs"}


def structural(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Rewrite one pydantic JSON-schema node (and its children) into a structural schema node."""
    node = dict(schema)
    ref = node.pop("$ref", None)
    if ref is not None:
        node = {**defs[ref.rsplit("/", 1)[-1]], **node}
    for combinator in ("anyOf", "allOf"):
        options = node.pop(combinator, None)
        if options is None:
            continue
        real = [o for o in options if o.get("type") != "null"]
        if len(real) != 1:
            raise ValueError(f"cannot express {combinator} of {len(real)} schemas in a CRD")
        inner = structural(real[0], defs)
        node = {**inner, **node}
    if node.get("default", ...) is None:
        del node["default"]  # "X | None = None" means optional, not a null default
    if node.get("additionalProperties") is False:
        del node["additionalProperties"]
    if "const" in node:  # a one-value Literal: structural schemas have enum, not const
        node["enum"] = [node.pop("const")]
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP:
            continue
        if key == "properties":
            out[key] = {name: structural(sub, defs) for name, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = structural(value, defs)
        else:
            out[key] = value
    if "description" in out:
        out["description"] = out["description"].strip()
    return out


def schema_of(model: type[BaseModel]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of one model."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return structural(raw, raw.get("$defs", {}))


def object_schema(resource: type[Resource]) -> dict[str, Any]:
    """The whole object's schema: apiVersion, kind, metadata (the server's), spec, status."""
    fields = resource.model_fields
    spec = schema_of(fields["spec"].annotation)  # type: ignore[arg-type]
    status = schema_of(fields["status"].annotation)  # type: ignore[arg-type]
    return {
        "description": (resource.__doc__ or "").strip(),
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"description": _API_VERSION_DOC, "type": "string"},
            "kind": {"description": _KIND_DOC, "type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    }


def crd(resource: type[Resource]) -> dict[str, Any]:
    """The CustomResourceDefinition of one resource model."""
    facts = _RESOURCES[resource]
    group, version = resource.API_VERSION.split("/")
    kind = resource.KIND
    names: dict[str, Any] = {
        "kind": kind,
        "listKind": f"{kind}List",
        "plural": facts["plural"],
        "singular": kind.lower(),
    }
    if facts["short_names"]:
        names["shortNames"] = facts["short_names"]
    served: dict[str, Any] = {
        "name": version,
        "served": True,
        "storage": True,
        "subresources": {"status": {}},
        "schema": {"openAPIV3Schema": object_schema(resource)},
    }
    if facts["printer_columns"]:
        served["additionalPrinterColumns"] = facts["printer_columns"]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{facts['plural']}.{group}",
            "annotations": {
                **facts["annotations"],
                _bundle_key(group): f"v{__version__}",
            },
        },
        "spec": {
            "group": group,
            "names": names,
            "scope": "Namespaced",
            "versions": [served],
        },
    }


def _bundle_key(group: str) -> str:
    """Upstream's bundle-version annotation: GIE's key, or llm-d's for its own group."""
    return (
        "llm-d.ai/bundle-version"
        if group == "llm-d.ai"
        else ("inference.networking.k8s.io/bundle-version")
    )


class _Dumper(yaml.SafeDumper):
    """Multi-line strings as literal blocks, so descriptions read as they were written."""

    def ignore_aliases(self, data: Any) -> bool:
        return True  # shared sub-schemas are written out in full, never as &anchors


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def render(resource: type[Resource]) -> str:
    """One CRD as a YAML document (keys sorted, so the output is stable for diffs)."""
    return yaml.dump(crd(resource), Dumper=_Dumper, sort_keys=True, width=100)


RESOURCES: tuple[type[Resource], ...] = (
    InferencePool,
    InferenceObjective,
    InferenceModelRewrite,
    LlmdInferenceObjective,
    LlmdInferenceModelRewrite,
)


def file_name(resource: type[Resource]) -> str:
    """``<group>_<plural>.yaml``, as controller-gen names them."""
    group = resource.API_VERSION.split("/")[0]
    return f"{group}_{_RESOURCES[resource]['plural']}.yaml"


def render_all() -> str:
    """Every CRD as one multi-document YAML stream."""
    return "---\n" + "---\n".join(render(r) for r in RESOURCES)


def write(directory: str | Path) -> list[Path]:
    """Write each CRD to ``directory/<group>_<plural>.yaml``; returns the paths written."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for resource in RESOURCES:
        path = out / file_name(resource)
        path.write_text(render(resource), encoding="utf-8")
        paths.append(path)
    return paths
