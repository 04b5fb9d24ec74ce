"""Shared Kubernetes building blocks: constrained scalars, ObjectMeta, Condition, Resource.

Every constraint is declared once, on an annotated type, so the same declaration drives both
validation here and the OpenAPI schema in the generated CRDs (see :mod:`.crds`). Models are strict
(no ``"8000"`` for a port, no ``yes`` for a string), as the API server's structural schema is.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
)
from pydantic.alias_generators import to_camel

DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
GROUP_PATTERN = r"^$|" + DNS_SUBDOMAIN
KIND_PATTERN = r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$"
NAMESPACE_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
LABEL_KEY_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]$"
)
LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
CONTROLLER_NAME_PATTERN = (
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
    r"\/[A-Za-z0-9\/\-._~%!$&'()*+,;=:]+$"
)
CONDITION_TYPE_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
CONDITION_REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"

INT32 = {"format": "int32"}
INT64 = {"format": "int64"}
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

Group = Annotated[str, Field(max_length=253, pattern=GROUP_PATTERN)]
Kind = Annotated[str, Field(min_length=1, max_length=63, pattern=KIND_PATTERN)]
ObjectName = Annotated[str, Field(min_length=1, max_length=253)]
Namespace = Annotated[str, Field(min_length=1, max_length=63, pattern=NAMESPACE_PATTERN)]
LabelValue = Annotated[str, Field(max_length=63, pattern=LABEL_VALUE_PATTERN)]
ControllerName = Annotated[
    str, Field(min_length=1, max_length=253, pattern=CONTROLLER_NAME_PATTERN)
]
PortNumber = Annotated[int, Field(ge=1, le=65535, json_schema_extra=INT32)]


def _int64(value: int) -> int:
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise ValueError("must fit in a 64-bit signed integer")
    return value


Int64 = Annotated[int, AfterValidator(_int64)]


def _label_key(key: str) -> str:
    # The CRD cannot constrain map keys (structural schemas have no propertyNames), so this
    # rule lives in the model only; the API server validates keys on the pods themselves.
    import re

    if not 1 <= len(key) <= 253 or re.fullmatch(LABEL_KEY_PATTERN, key) is None:
        raise ValueError(
            f"label key {key!r} must be 1-253 characters and match {LABEL_KEY_PATTERN}"
        )
    return key


LabelKey = Annotated[str, AfterValidator(_label_key)]


def _parse_time(value: Any) -> Any:
    """Accept RFC 3339 strings (quoted YAML/JSON) as the API server does; datetimes pass through."""
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"must be an RFC 3339 date-time, got {value!r}") from None
    return value


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


Time = Annotated[datetime, BeforeValidator(_parse_time), AfterValidator(_utc)]


def _null_is_empty(value: Any) -> Any:
    """``labels:`` with nothing under it is YAML null; the API server reads it as no labels."""
    return {} if value is None else value


class Model(BaseModel):
    """Base of every API model: camelCase on the wire, snake_case in Python, strict, closed."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        serialize_by_alias=True,
        extra="forbid",
        strict=True,
        use_attribute_docstrings=True,
        validate_default=False,
    )

    def to_dict(self) -> dict[str, Any]:
        """camelCase dict, unset optionals omitted, times as RFC 3339 strings."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class ObjectMeta(Model):
    """Standard Kubernetes object metadata (the fields this project reads, plus server-set ones)."""

    name: Annotated[str, Field(max_length=253, pattern=DNS_SUBDOMAIN)]
    namespace: Namespace = "default"
    labels: Annotated[dict[LabelKey, LabelValue], BeforeValidator(_null_is_empty)] = Field(
        default_factory=dict
    )
    annotations: Annotated[dict[str, str], BeforeValidator(_null_is_empty)] = Field(
        default_factory=dict
    )
    generation: Int64 | None = None
    creation_timestamp: Time | None = None
    deletion_timestamp: Time | None = None
    uid: str | None = None
    resource_version: str | None = None
    generate_name: str | None = None
    finalizers: list[str] | None = None
    owner_references: list[dict[str, Any]] | None = None
    managed_fields: list[dict[str, Any]] | None = None

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        for empty in ("labels", "annotations"):
            if not data.get(empty):
                data.pop(empty, None)
        return data


class Condition(Model):
    """One aspect of an object's observed state (Kubernetes metav1.Condition)."""

    type: Annotated[str, Field(max_length=316, pattern=CONDITION_TYPE_PATTERN)]
    """Type of condition, in CamelCase or in foo.example.com/CamelCase."""
    status: Literal["True", "False", "Unknown"]
    """Status of the condition: True, False or Unknown."""
    reason: Annotated[str, Field(min_length=1, max_length=1024, pattern=CONDITION_REASON_PATTERN)]
    """A CamelCase, programmatic identifier for the condition's last transition."""
    message: Annotated[str, Field(max_length=32768)]
    """A human-readable message about the transition; may be empty."""
    last_transition_time: Time = Field(json_schema_extra={"format": "date-time"})
    """When the condition last changed status."""
    observed_generation: (
        Annotated[int, Field(ge=0, json_schema_extra=INT64), AfterValidator(_int64)] | None
    ) = None
    """The .metadata.generation the condition was set based upon."""


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def pending_condition(condition_type: str) -> dict[str, str]:
    """The CRD's default condition before a controller reports: ``condition_type`` Unknown,
    Pending, "Waiting for controller" (as it appears in the CRD's schema)."""
    return {
        "type": condition_type,
        "status": "Unknown",
        "reason": "Pending",
        "message": "Waiting for controller",
        "lastTransitionTime": "1970-01-01T00:00:00Z",
    }


def pending_conditions(condition_type: str) -> Callable[[], list[Condition]]:
    """A ``default_factory`` for a status's conditions: :func:`pending_condition` as a model."""

    def make() -> list[Condition]:
        return [
            Condition(
                type=condition_type,
                status="Unknown",
                reason="Pending",
                message="Waiting for controller",
                last_transition_time=_EPOCH,
            )
        ]

    return make


def unique_condition_types(conditions: list[Condition]) -> list[Condition]:
    """``x-kubernetes-list-type: map`` keyed by ``type``: the API server rejects duplicate keys."""
    seen: set[str] = set()
    for cond in conditions:
        if cond.type in seen:
            raise ValueError(f"duplicate condition type {cond.type!r}")
        seen.add(cond.type)
    return conditions


CONDITION_LIST_EXTRA: dict[str, Any] = {
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["type"],
}


class Resource(Model):
    """A top-level object: ``apiVersion``, ``kind``, ``metadata``, ``spec``, ``status``."""

    API_VERSION: ClassVar[str]
    KIND: ClassVar[str]

    metadata: ObjectMeta
    """Standard object metadata."""

    @property
    def key(self) -> tuple[str, str, str, str]:
        """Identity used to detect duplicates: (apiVersion, kind, namespace, name)."""
        return self.API_VERSION, self.KIND, self.metadata.namespace, self.metadata.name

    def to_manifest(self) -> dict[str, Any]:
        """The object as a user would ``kubectl apply`` it: camelCase, defaults applied.

        ``status`` is written only when it was given (it is the controllers' part).
        """
        data = self.to_dict()
        data["metadata"] = self.metadata.to_dict()
        if "status" not in self.model_fields_set:
            data.pop("status", None)
        order = ["apiVersion", "kind", "metadata", "spec", "status"]
        return {k: data[k] for k in order if k in data}
