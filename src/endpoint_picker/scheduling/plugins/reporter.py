"""``request-attribute-reporter``: a CEL expression over the response's usage, reported to the
gateway in the ext_proc answer's dynamic metadata (upstream's
``pkg/epp/framework/plugins/requestcontrol/requestattributereporter``).

The typical use is the request's cost (``usage.prompt_tokens + usage.completion_tokens``) in
``envoy.lb``, for a gateway's rate limits, billing or cost-aware balancing. Semantics follow
upstream's, case for case:

- ``attributes`` holds exactly one entry; ``key.name`` and ``expression`` are required,
  ``key.namespace`` defaults to ``envoy.lb``; ``condition`` is optional.
- The only variable is ``usage``: upstream's ``Usage`` as JSON turned into a
  ``google.protobuf.Struct``, so ``prompt_tokens``, ``completion_tokens`` and ``total_tokens``
  are always present (zero when unknown) and every number is a double;
  ``prompt_token_details.cached_tokens`` exists only when the server reported it.
- A condition that errors or is not ``true`` reports nothing; an expression that errors or
  yields neither a number nor an int reports nothing; the value is truncated to an integer and
  a zero is not reported. Each failure is logged, never raised: a report must not break the
  response.
- Expressions compile when the config loads, so a syntax error, or a variable other than
  ``usage``, is a config error with its path.

CEL comes from ``common-expression-language`` (Rust bindings): strict types as cel-go (``1 +
2.0`` is an error, not 3.0) and 30-40 us per evaluation. Its package import costs about half a
second (it also loads a CLI), so it is imported only when a config names this plugin.
"""

from __future__ import annotations

import logging
import re
from math import isfinite
from typing import Any

from pydantic import Field, field_validator, model_validator

from endpoint_picker.params import PluginParams
from endpoint_picker.requests.types import DESTINATION_NAMESPACE, InferenceRequest, Usage
from endpoint_picker.scheduling.plugins.base import PluginBase

log = logging.getLogger(__name__)

VARIABLE = "usage"


def compile_cel(expression: str) -> Any:
    """Compile ``expression``; raises ValueError with the parser's message, or when it names a
    variable other than ``usage`` (cel-go's checker refuses undeclared names at load)."""
    import cel  # deferred: see the module docstring

    try:
        program = cel.compile(expression)
    except ValueError as err:
        raise ValueError(f"invalid CEL: {err}") from None
    unknown = sorted(set(program.variables()) - {VARIABLE} - _bound_names(expression))
    if unknown:
        raise ValueError(f"undeclared reference {unknown[0]!r} (only {VARIABLE!r} is declared)")
    return program


def _bound_names(expression: str) -> set[str]:
    """Names a comprehension macro binds (``usage.x.map(v, v * 2)``: ``v``), which the
    library lists among the variables; cel-go declares them, so they are not errors."""
    return set(_MACRO_VAR.findall(expression))


_MACRO_VAR = re.compile(r"\.(?:all|exists|exists_one|map|filter)\(\s*([A-Za-z_]\w*)\s*,")


class AttributeKey(PluginParams):
    """Where the value goes: ``dynamic_metadata[namespace][name]``."""

    namespace: str = ""
    name: str = ""


class Attribute(PluginParams):
    key: AttributeKey = Field(default_factory=AttributeKey)
    expression: str = ""  # must yield a number
    condition: str = ""  # optional; must yield true for the value to be reported

    @field_validator("expression", "condition")
    @classmethod
    def _compiles(cls, value: str) -> str:
        if value.strip():
            compile_cel(value)
        return value

    @model_validator(mode="after")
    def _required(self) -> Attribute:
        if not self.key.name:
            raise ValueError("key.name cannot be empty")
        if not self.expression.strip():
            raise ValueError("expression cannot be empty")
        return self


class RequestAttributeReporterParams(PluginParams):
    """Upstream's ``Config``: exactly one attribute (no default: ``epp config --plugins``
    shows ``none``)."""

    attributes: list[Attribute] = Field(default_factory=list)

    @field_validator("attributes")
    @classmethod
    def _exactly_one(cls, value: list[Attribute]) -> list[Attribute]:
        if len(value) != 1:
            raise ValueError(f"must contain exactly one entry, got {len(value)}")
        return value


def usage_struct(usage: Usage | None) -> dict[str, Any]:
    """``usage`` as upstream's CEL sees it: its Go struct marshalled to JSON, then read as a
    protobuf Struct (all three counts present, numbers as doubles)."""
    u = usage or Usage()
    out: dict[str, Any] = {
        "prompt_tokens": float(u.prompt_tokens),
        "completion_tokens": float(u.completion_tokens),
        "total_tokens": float(u.prompt_tokens + u.completion_tokens),
    }
    if u.cached_tokens is not None:
        out["prompt_token_details"] = {"cached_tokens": float(u.cached_tokens)}
    return out


class RequestAttributeReporter(PluginBase):
    """Upstream's ``request-attribute-reporter`` (response-body extension point)."""

    type_name = "request-attribute-reporter"
    params_model = RequestAttributeReporterParams

    def __init__(
        self,
        name: str | None = None,
        *,
        namespace: str,
        key: str,
        expression: str,
        condition: str = "",
    ) -> None:
        super().__init__(name)
        self.namespace = namespace or DESTINATION_NAMESPACE
        self.key = key
        self.expression = expression
        self.condition = condition
        self._expression = compile_cel(expression)
        self._condition = compile_cel(condition) if condition else None

    @classmethod
    def from_config(cls, name: str, params: Any) -> RequestAttributeReporter:
        attr = params.attributes[0]  # exactly one: checked by the parameter model
        return cls(
            name,
            namespace=attr.key.namespace,
            key=attr.key.name,
            expression=attr.expression,
            condition=attr.condition,
        )

    def process_response_body(
        self,
        request: InferenceRequest | None,
        usage: Usage | None,
        end_of_stream: bool,
        metadata: dict[str, dict[str, Any]],
    ) -> None:
        """Evaluate against ``usage`` and, when there is a non-zero value, write it into
        ``metadata[namespace][key]``."""
        value = self.value(usage)
        if value:
            metadata.setdefault(self.namespace, {})[self.key] = float(value)

    def value(self, usage: Usage | None) -> int | None:
        """The integer to report, or None (condition unmet, or an evaluation error)."""
        context = {VARIABLE: usage_struct(usage)}
        if self._condition is not None:
            try:
                ok = self._condition.execute(context)
            except Exception as err:  # the library raises KeyError, TypeError, ValueError...
                log.error("%s: condition %r failed: %s", self.name, self.condition, err)
                return None
            if ok is not True:
                return None
        try:
            result = self._expression.execute(context)
        except Exception as err:
            log.error("%s: expression %r failed: %s", self.name, self.expression, err)
            return None
        if isinstance(result, bool) or not isinstance(result, int | float) or not isfinite(result):
            log.error("%s: expression %r gave %r, not a number", self.name, self.expression, result)
            return None
        return int(result)
