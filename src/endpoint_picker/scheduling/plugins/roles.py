"""llm-d's filters by label: the role filters (``decode-filter``, ``prefill-filter``,
``encode-filter``, on the ``llm-d.ai/role`` label) and ``label-selector-filter`` (any
Kubernetes label selector: ``matchLabels`` and ``matchExpressions``).

Roles (llm-d's docs): ``encode``, ``prefill``, ``decode``, ``encode-prefill``,
``prefill-decode``, ``encode-prefill-decode`` and the deprecated ``both`` (= prefill-decode).
An unlabelled pod counts as a decoder (so an aggregated pool passes ``decode-filter`` whole)
and as nothing else.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from endpoint_picker.datastore import Endpoint
from endpoint_picker.params import PluginParams
from endpoint_picker.requests.types import InferenceRequest
from endpoint_picker.scheduling.plugins.base import PluginBase

ROLE_LABEL = "llm-d.ai/role"
DECODE_ROLES = frozenset({"decode", "prefill-decode", "both", "encode-prefill-decode"})
PREFILL_ROLES = frozenset(
    {"prefill", "encode-prefill", "prefill-decode", "both", "encode-prefill-decode"}
)
ENCODE_ROLES = frozenset({"encode", "encode-prefill", "encode-prefill-decode"})


class _RoleFilter(PluginBase):
    """Keep endpoints whose role label is one of ``roles`` (unlabelled: ``unlabelled``)."""

    roles: frozenset[str] = frozenset()
    unlabelled = False

    def filter(self, request: InferenceRequest, endpoints: list[Endpoint]) -> list[Endpoint]:
        out: list[Endpoint] = []
        for ep in endpoints:
            role = ep.labels.get(ROLE_LABEL)
            if self.unlabelled if role is None else role in self.roles:
                out.append(ep)
        return out


class DecodeFilter(_RoleFilter):
    """``decode-filter``: decoding roles, and pods with no role label."""

    type_name = "decode-filter"
    roles = DECODE_ROLES
    unlabelled = True


class PrefillFilter(_RoleFilter):
    """``prefill-filter``: prefilling roles only (an unlabelled pod is not a prefiller)."""

    type_name = "prefill-filter"
    roles = PREFILL_ROLES


class EncodeFilter(_RoleFilter):
    """``encode-filter``: encoding roles only (the first stage of E -> P -> D)."""

    type_name = "encode-filter"
    roles = ENCODE_ROLES


class LabelSelectorRequirement(PluginParams):
    """One ``matchExpressions`` entry, as Kubernetes writes it."""

    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _values_fit_operator(self) -> LabelSelectorRequirement:
        if self.operator in ("In", "NotIn") and not self.values:
            raise ValueError(f"operator {self.operator} needs a non-empty values list")
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise ValueError(f"operator {self.operator} takes no values")
        return self

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        if self.operator == "Exists":
            return present
        if self.operator == "DoesNotExist":
            return not present
        if self.operator == "In":
            return present and labels[self.key] in self.values
        return not present or labels[self.key] not in self.values  # NotIn


class LabelSelectorParams(PluginParams):
    """A Kubernetes ``LabelSelector``: all ``matchLabels`` pairs and all expressions must hold
    (an empty selector matches every pod, as in Kubernetes)."""

    match_labels: dict[str, str] = Field(default_factory=dict)
    match_expressions: list[LabelSelectorRequirement] = Field(default_factory=list)


class LabelSelectorFilter(PluginBase):
    """``label-selector-filter``: keep the endpoints whose labels match the selector."""

    type_name = "label-selector-filter"
    params_model = LabelSelectorParams

    def __init__(self, name: str | None = None, params: LabelSelectorParams | None = None) -> None:
        super().__init__(name)
        self.params = params or LabelSelectorParams()

    def matches(self, labels: dict[str, str]) -> bool:
        sel = self.params
        if any(labels.get(k) != v for k, v in sel.match_labels.items()):
            return False
        return all(req.matches(labels) for req in sel.match_expressions)

    def filter(self, request: InferenceRequest, endpoints: list[Endpoint]) -> list[Endpoint]:
        return [ep for ep in endpoints if self.matches(ep.labels)]

    @classmethod
    def from_config(cls, name: str, params: Any) -> LabelSelectorFilter:
        return cls(name, params)
