"""``by-label`` (llm-d-router, deprecated there for ``label-selector-filter`` and the role
filters, still registered): keep the endpoints whose ``label`` has one of ``validValues``, and,
with ``allowsNoLabel``, those without the label.

As upstream: ``label`` is required; ``validValues`` empty needs ``allowsNoLabel: true``; an
endpoint without the label passes only through ``allowsNoLabel`` (or an empty string among the
valid values, since upstream reads a missing label as "").
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import model_validator

from endpoint_picker.datastore import Endpoint
from endpoint_picker.params import PluginParams
from endpoint_picker.requests.types import InferenceRequest
from endpoint_picker.scheduling.plugins.base import PluginBase

log = logging.getLogger(__name__)


class ByLabelParams(PluginParams):
    label: str = ""
    valid_values: list[str] = []
    allows_no_label: bool = False

    @model_validator(mode="after")
    def _checked(self) -> ByLabelParams:
        # Upstream's defaults fail these checks too; ``epp config --plugins`` shows them.
        if not self.label:
            raise ValueError("'label' must be specified")
        if not self.valid_values and not self.allows_no_label:
            raise ValueError(
                "either 'validValues' must be non-empty or 'allowsNoLabel' must be true"
            )
        return self


class ByLabelFilter(PluginBase):
    """llm-d-router's ``by-label`` filter."""

    type_name = "by-label"
    params_model = ByLabelParams

    def __init__(
        self, name: str | None = None, *, label: str, valid_values: list[str], allows_no_label: bool
    ) -> None:
        super().__init__(name)
        self.label = label
        self.valid_values = frozenset(valid_values)
        self.allows_no_label = allows_no_label

    @classmethod
    def from_config(cls, name: str, params: Any) -> ByLabelFilter:
        log.info(
            "plugin type 'by-label' is deprecated upstream: use 'label-selector-filter', or "
            "'decode-filter'/'prefill-filter'/'encode-filter' for roles"
        )
        p: ByLabelParams = params
        return cls(
            name, label=p.label, valid_values=p.valid_values, allows_no_label=p.allows_no_label
        )

    def filter(self, request: InferenceRequest, endpoints: list[Endpoint]) -> list[Endpoint]:
        out: list[Endpoint] = []
        for ep in endpoints:
            value = ep.labels.get(self.label)
            if (value is None and self.allows_no_label) or (value or "") in self.valid_values:
                out.append(ep)
        return out
