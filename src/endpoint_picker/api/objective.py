"""``InferenceObjective`` (``inference.networking.x-k8s.io/v1alpha2``): priority for a workload.

A request names its objective in the ``x-llm-d-inference-objective`` header (or GIE's
``x-gateway-inference-objective``); the objective's
``priority`` (unset reads as 0) orders it in flow control. Mirrors upstream's
``apix/v1alpha2/inferenceobjective_types.go``.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, Field

from endpoint_picker.api.types import (
    CONDITION_LIST_EXTRA,
    Condition,
    Group,
    Int64,
    Kind,
    Model,
    ObjectName,
    Resource,
    pending_condition,
    pending_conditions,
    unique_condition_types,
)

OBJECTIVE_GROUP = "inference.networking.x-k8s.io"
OBJECTIVE_API_VERSION = f"{OBJECTIVE_GROUP}/v1alpha2"

# The CRD's default when status carries no conditions. Upstream's CRD says type "Ready" while its
# docs name "Accepted"; we keep the CRD's value so objects read the same as from a cluster.
DEFAULT_CONDITION = pending_condition("Ready")
_default_conditions = pending_conditions("Ready")


class PoolObjectReference(Model):
    """An InferencePool in the objective's own namespace."""

    group: Group = "inference.networking.k8s.io"
    """Group is the group of the referent."""
    kind: Kind = "InferencePool"
    """Kind is kind of the referent. For example "InferencePool"."""
    name: ObjectName
    """Name is the name of the referent."""


class InferenceObjectiveSpec(Model):
    """Desired state of one workload's objective (owned by the Inference Workload Owner)."""

    priority: Int64 | None = None
    """How important requests of this objective are within the pool: higher is served first,
    negative values are allowed, and consumers treat unset as 0. Fairness applies only between
    requests of equal priority."""
    pool_ref: PoolObjectReference
    """The InferencePool (same namespace) these requests go to."""


class InferenceObjectiveStatus(Model):
    """Observed state of an InferenceObjective."""

    conditions: Annotated[
        list[Condition],
        Field(
            max_length=8,
            json_schema_extra={**CONDITION_LIST_EXTRA, "default": [DEFAULT_CONDITION]},
        ),
        AfterValidator(unique_condition_types),
    ] = Field(default_factory=_default_conditions)
    """Conditions track the state of the InferenceObjective. Known condition types: Accepted."""


class InferenceObjective(Resource):
    """Priority (and future performance objectives) for requests that name this objective."""

    API_VERSION: ClassVar[str] = OBJECTIVE_API_VERSION
    KIND: ClassVar[str] = "InferenceObjective"

    api_version: Literal["inference.networking.x-k8s.io/v1alpha2"] = (
        "inference.networking.x-k8s.io/v1alpha2"
    )
    kind: Literal["InferenceObjective"] = "InferenceObjective"
    spec: InferenceObjectiveSpec
    status: InferenceObjectiveStatus = Field(default_factory=InferenceObjectiveStatus)

    @property
    def effective_priority(self) -> int:
        """The priority flow control uses: unset reads as 0."""
        return self.spec.priority if self.spec.priority is not None else 0


LLMD_GROUP = "llm-d.ai"


class LlmdInferenceObjective(InferenceObjective):
    """InferenceObjective as llm-d-router serves it: the same type in the ``llm-d.ai`` group."""

    API_VERSION: ClassVar[str] = f"{LLMD_GROUP}/v1alpha2"

    api_version: Literal["llm-d.ai/v1alpha2"] = "llm-d.ai/v1alpha2"  # type: ignore[assignment]
