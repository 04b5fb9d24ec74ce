"""Kubernetes resources as typed models, validated exactly as their CRDs, and manifest loading.

``InferencePool`` (``inference.networking.k8s.io/v1``) and ``InferenceObjective``
(``inference.networking.x-k8s.io/v1alpha2``) are pydantic models: snake_case attributes, camelCase
on the wire (``to_manifest()``). ``load_manifests`` reads the files a user would ``kubectl apply``.
"""

from endpoint_picker.api.manifests import (
    Document,
    ManifestError,
    ManifestSet,
    load_file,
    load_manifests,
    parse_object,
)
from endpoint_picker.api.objective import (
    InferenceObjective,
    InferenceObjectiveSpec,
    InferenceObjectiveStatus,
    PoolObjectReference,
)
from endpoint_picker.api.pool import (
    EndpointPickerRef,
    InferencePool,
    InferencePoolSpec,
    InferencePoolStatus,
    LabelSelector,
    ParentReference,
    ParentStatus,
    Port,
)
from endpoint_picker.api.types import Condition, ObjectMeta

__all__ = [
    "Condition",
    "Document",
    "EndpointPickerRef",
    "InferenceObjective",
    "InferenceObjectiveSpec",
    "InferenceObjectiveStatus",
    "InferencePool",
    "InferencePoolSpec",
    "InferencePoolStatus",
    "LabelSelector",
    "ManifestError",
    "ManifestSet",
    "ObjectMeta",
    "ParentReference",
    "ParentStatus",
    "PoolObjectReference",
    "Port",
    "load_file",
    "load_manifests",
    "parse_object",
]
