"""The Kubernetes resources the EPP reads and writes, and their translation to datastore types.

InferencePool and InferenceObjective are CRDs, so they are lightkube *generic* resources (plain
dicts underneath): our own pydantic models in :mod:`endpoint_picker.api` validate them, and a
second set of generated classes would only duplicate that. Pods and Leases are core types and use
lightkube's typed models.
"""

from __future__ import annotations

from typing import Any

from lightkube.generic_resource import GenericNamespacedResource, create_namespaced_resource
from lightkube.resources.core_v1 import Pod as K8sPod

from endpoint_picker.datastore import Pod

POOL_GROUP = "inference.networking.k8s.io"
ALPHA_POOL_GROUP = "inference.networking.x-k8s.io"
POOL_GROUPS = frozenset({POOL_GROUP, ALPHA_POOL_GROUP})
POOL_KIND = "InferencePool"
OBJECTIVE_GROUP = "inference.networking.x-k8s.io"
OBJECTIVE_VERSION = "v1alpha2"

# Fields of metadata the API models care about; server-managed noise (managedFields...) is dropped.
_META_KEYS = ("name", "namespace", "generation", "resourceVersion", "uid", "labels", "annotations")


def pool_resource(group: str = POOL_GROUP) -> type[GenericNamespacedResource]:
    """The InferencePool resource of ``group`` (v1 for the GA group, v1alpha2 for the x-k8s one)."""
    version = "v1" if group == POOL_GROUP else "v1alpha2"
    return create_namespaced_resource(group, version, POOL_KIND, "inferencepools")


def objective_resource() -> type[GenericNamespacedResource]:
    return create_namespaced_resource(
        OBJECTIVE_GROUP, OBJECTIVE_VERSION, "InferenceObjective", "inferenceobjectives"
    )


def as_dict(obj: Any) -> dict[str, Any]:
    """A generic resource as a plain JSON-like dict."""
    data: dict[str, Any] = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
    return data


def trimmed(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with only the metadata fields the API models know (no managedFields etc.)."""
    meta = data.get("metadata") or {}
    out = {k: v for k, v in data.items() if k in ("apiVersion", "kind", "spec", "status")}
    out["metadata"] = {k: meta[k] for k in _META_KEYS if meta.get(k) is not None}
    return out


def pool_manifest(data: dict[str, Any]) -> dict[str, Any]:
    """A pool object as a v1 manifest; a v1alpha2 pool (flat selector, one port) is mapped."""
    out = trimmed(data)
    spec = dict(out.get("spec") or {})
    if "targetPortNumber" in spec:  # the x-k8s v1alpha2 shape upstream still accepts
        spec["targetPorts"] = [{"number": spec.pop("targetPortNumber")}]
        selector = spec.get("selector") or {}
        if "matchLabels" not in selector:
            spec["selector"] = {"matchLabels": selector}
        spec.pop("extensionRef", None)
    out["spec"] = spec
    out["apiVersion"] = f"{POOL_GROUP}/v1"
    out["kind"] = POOL_KIND
    out.pop("status", None)  # gateways own pool status; the EPP never reads it
    return out


def is_deleting(data: dict[str, Any]) -> bool:
    return bool((data.get("metadata") or {}).get("deletionTimestamp"))


def pod_from_k8s(obj: K8sPod) -> Pod:
    """A datastore Pod: ready = not deleting, condition Ready=True and an IP (as upstream)."""
    meta, status = obj.metadata, obj.status
    ready = False
    ip = ""
    if status is not None:
        ip = status.podIP or ""
        ready = any(c.type == "Ready" and c.status == "True" for c in status.conditions or ())
    if meta is None or meta.name is None:
        raise ValueError("pod without metadata.name")
    return Pod(
        name=meta.name,
        ip=ip,
        namespace=meta.namespace or "default",
        labels=dict(meta.labels or {}),
        annotations=dict(meta.annotations or {}),
        ready=ready and bool(ip) and meta.deletionTimestamp is None,
    )
