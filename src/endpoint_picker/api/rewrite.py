"""``InferenceModelRewrite`` (``v1alpha2``): weighted rewrites of the requested model name.

A rule matches requests by their body's ``model`` (``Exact``), or every request when it has no
``matches``, and sends each to one of its ``targets``, drawn by weight: a LoRA adapter rollout
is ``{model: food-review}`` -> ``[{food-review-v1, 90}, {food-review-v2, 10}]``. Mirrors
upstream's ``apix/v1alpha2/inferencemodelrewrite_types.go`` (GIE v1.5.0; llm-d-router serves
the same type in ``llm-d.ai``). The precedence between rules lives with the table that applies
them, ``requests/rewrite.py``.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, Field

from endpoint_picker.api.objective import LLMD_GROUP, OBJECTIVE_GROUP, PoolObjectReference
from endpoint_picker.api.types import (
    CONDITION_LIST_EXTRA,
    INT32,
    Condition,
    Model,
    Resource,
    pending_condition,
    pending_conditions,
    unique_condition_types,
)

REWRITE_API_VERSION = f"{OBJECTIVE_GROUP}/v1alpha2"
DEFAULT_CONDITION = pending_condition("Accepted")
_default_conditions = pending_conditions("Accepted")


class ModelMatch(Model):
    """How to match the ``model`` field of the request body."""

    type: Literal["Exact"] = "Exact"
    """The kind of string matching; "Exact" is the one supported value."""
    value: Annotated[str, Field(min_length=1)]
    """The model name to match."""


class Match(Model):
    """Criteria for matching a request."""

    model: ModelMatch
    """Matches the 'model' field of the JSON request body."""


class TargetModel(Model):
    """A weighted model destination."""

    weight: Annotated[int, Field(ge=1, le=1_000_000, json_schema_extra=INT32)] | None = None
    """Proportion of requests sent to this model: weight / sum of the rule's weights. Not a
    percentage. Set it on every target or on none (then traffic is split evenly)."""
    model_rewrite: str
    """The model name the request is forwarded with."""


class InferenceModelRewriteRule(Model):
    """Match criteria and the weighted targets of matching requests."""

    matches: list[Match] | None = None
    """A request matches if ANY criterion does; none matches every request."""
    targets: Annotated[list[TargetModel], Field(min_length=1)] | None = None
    """How matching traffic is split between model names."""


class InferenceModelRewriteSpec(Model):
    """Desired state of an InferenceModelRewrite."""

    pool_ref: PoolObjectReference
    """The InferencePool (same namespace) whose requests are rewritten."""
    rules: list[InferenceModelRewriteRule]
    """Ordered rules; across rewrites of one pool an Exact match beats a rule without matches,
    then the oldest rewrite wins, then the first rule in list order."""


class InferenceModelRewriteStatus(Model):
    """Observed state of an InferenceModelRewrite."""

    conditions: Annotated[
        list[Condition],
        Field(
            max_length=8,
            json_schema_extra={**CONDITION_LIST_EXTRA, "default": [DEFAULT_CONDITION]},
        ),
        AfterValidator(unique_condition_types),
    ] = Field(default_factory=_default_conditions)
    """Conditions track the state of the InferenceModelRewrite. Known condition types:
    Accepted."""


class InferenceModelRewrite(Resource):
    """Weighted rewrites of the model name of requests to one InferencePool."""

    API_VERSION: ClassVar[str] = REWRITE_API_VERSION
    KIND: ClassVar[str] = "InferenceModelRewrite"

    api_version: Literal["inference.networking.x-k8s.io/v1alpha2"] = (
        "inference.networking.x-k8s.io/v1alpha2"
    )
    kind: Literal["InferenceModelRewrite"] = "InferenceModelRewrite"
    spec: InferenceModelRewriteSpec
    status: InferenceModelRewriteStatus = Field(default_factory=InferenceModelRewriteStatus)


class LlmdInferenceModelRewrite(InferenceModelRewrite):
    """InferenceModelRewrite as llm-d-router serves it: the same type in ``llm-d.ai``."""

    API_VERSION: ClassVar[str] = f"{LLMD_GROUP}/v1alpha2"

    api_version: Literal["llm-d.ai/v1alpha2"] = "llm-d.ai/v1alpha2"  # type: ignore[assignment]
