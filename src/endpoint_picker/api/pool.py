"""``InferencePool`` (``inference.networking.k8s.io/v1``): a set of model-server pods and their EPP.

Mirrors upstream's ``api/v1/inferencepool_types.go`` field by field, including its two CEL rules
(unique target ports; ``port`` required when the picker is a Service).
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Self

from pydantic import AfterValidator, ConfigDict, Field, model_validator
from pydantic.config import JsonDict

from endpoint_picker.api.types import (
    CONDITION_LIST_EXTRA,
    Condition,
    ControllerName,
    Group,
    Kind,
    LabelKey,
    LabelValue,
    Model,
    Namespace,
    ObjectName,
    PortNumber,
    Resource,
    unique_condition_types,
)

POOL_GROUP = "inference.networking.k8s.io"
POOL_API_VERSION = f"{POOL_GROUP}/v1"
H2C = "kubernetes.io/h2c"

# Upstream's two CEL rules, word for word; the validators below enforce the same in Python.
UNIQUE_PORTS_MESSAGE = "port number must be unique"
SERVICE_PORT_MESSAGE = (
    "port is required when kind is 'Service' or unspecified (defaults to 'Service')"
)
_UNIQUE_PORTS_RULE: JsonDict = {
    "rule": "self.all(p1, self.exists_one(p2, p1.number==p2.number))",
    "message": UNIQUE_PORTS_MESSAGE,
}
_SERVICE_PORT_RULE: JsonDict = {
    "rule": "self.kind != 'Service' || has(self.port)",
    "message": SERVICE_PORT_MESSAGE,
}


class Port(Model):
    """A network port exposed by the pool's pods."""

    number: PortNumber
    """Port number on the selected model-server pods, 1-65535."""


def _unique_ports(ports: list[Port]) -> list[Port]:
    numbers = [p.number for p in ports]
    if len(set(numbers)) != len(numbers):
        raise ValueError(UNIQUE_PORTS_MESSAGE)
    return ports


class LabelSelector(Model):
    """Which pods (same namespace only) are members: every label must match (AND)."""

    match_labels: Annotated[dict[LabelKey, LabelValue], Field(min_length=1, max_length=64)]
    """Required {key: value} pairs; a pod must carry all of them."""


class EndpointPickerRef(Model):
    """The endpoint picker (EPP) serving this pool, as the gateway reaches it."""

    # Merged with Model's config by pydantic; carries the struct-level CEL rule into the CRD.
    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [_SERVICE_PORT_RULE]})

    group: Group = Field("", json_schema_extra={"minLength": 0})
    """API group of the referent; "" is the core group."""
    kind: Kind = "Service"
    """Kind of the referent; ExternalName Services must not be used."""
    name: ObjectName
    """Name of the referent."""
    port: Port | None = None
    """Port of the referent (the Service port); required when kind is Service."""
    failure_mode: Literal["FailOpen", "FailClose"] = "FailClose"
    """What the gateway does when the picker does not answer: FailOpen forwards, FailClose drops."""

    @model_validator(mode="after")
    def _service_needs_port(self) -> Self:
        if self.kind == "Service" and self.port is None:
            raise ValueError(SERVICE_PORT_MESSAGE)
        return self


class InferencePoolSpec(Model):
    """Desired state of an InferencePool."""

    selector: LabelSelector
    """Selects the member pods by label, within the pool's namespace."""
    target_ports: Annotated[
        list[Port],
        Field(
            min_length=1,
            max_length=8,
            json_schema_extra={
                "x-kubernetes-list-type": "atomic",
                "x-kubernetes-validations": [_UNIQUE_PORTS_RULE],
            },
        ),
        AfterValidator(_unique_ports),
    ]
    """Ports of the model servers (1-8, unique); each pod gets one endpoint per port."""
    app_protocol: Literal["http", "kubernetes.io/h2c"] = "http"
    """Protocol between gateway and model servers: http (HTTP/1.1) or kubernetes.io/h2c."""
    endpoint_picker_ref: EndpointPickerRef | None = None
    """The endpoint picker extension serving this pool."""


class ParentReference(Model):
    """The parent (usually a Gateway) a pool status entry belongs to."""

    group: Group = Field("gateway.networking.k8s.io", json_schema_extra={"minLength": 0})
    """API group of the parent."""
    kind: Kind = "Gateway"
    """Kind of the parent."""
    name: ObjectName
    """Name of the parent."""
    namespace: Namespace | None = None
    """Namespace of the parent; the pool's own when unset."""


class ParentStatus(Model):
    """The pool's state as seen by one parent."""

    conditions: Annotated[
        list[Condition],
        Field(max_length=8, json_schema_extra=CONDITION_LIST_EXTRA),
        AfterValidator(unique_condition_types),
    ] = Field(default_factory=list)
    """Known types: Accepted, ResolvedRefs, Exported."""
    parent_ref: ParentReference
    """The parent this entry describes."""
    controller_name: ControllerName | None = None
    """The controller that wrote this entry (domain/path)."""


class InferencePoolStatus(Model):
    """Observed state, written by gateways (never by the EPP)."""

    parents: Annotated[
        list[ParentStatus],
        Field(max_length=32, json_schema_extra={"x-kubernetes-list-type": "atomic"}),
    ] = Field(default_factory=list)
    """One entry per parent (Gateway) the pool is associated with; at most 32."""


class InferencePool(Resource):
    """A pool of model-server pods sharing one endpoint picker."""

    API_VERSION: ClassVar[str] = POOL_API_VERSION
    KIND: ClassVar[str] = "InferencePool"

    api_version: Literal["inference.networking.k8s.io/v1"] = "inference.networking.k8s.io/v1"
    kind: Literal["InferencePool"] = "InferencePool"
    spec: InferencePoolSpec
    status: InferencePoolStatus = Field(default_factory=InferencePoolStatus)

    @property
    def target_port_numbers(self) -> list[int]:
        return [p.number for p in self.spec.target_ports]
