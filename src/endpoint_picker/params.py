"""How a plugin declares its ``parameters``: one strict pydantic model per plugin type.

Every plugin type (scheduling, flow control, data layer, parsers) names a subclass of
:class:`PluginParams` in the config registry; the config loader validates a plugin's
``parameters`` against it once, and the plugin's factory receives the validated model. The
model is also what ``epp config --show`` prints (defaults filled in), so the declaration, the
check and the documentation of a parameter are one line.

Upstream's names are camelCase (``maxNumOfEndpoints``); fields here are snake_case with the
camelCase alias generated. Types are strict, as Go's decoder is: ``"5"`` is not an integer and
``yes`` is not a boolean. Durations and quantities go through :mod:`endpoint_picker.units`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PlainSerializer,
    ValidationError,
)
from pydantic.alias_generators import to_camel

from endpoint_picker import units
from endpoint_picker.errors import ConfigError
from endpoint_picker.validation import did_you_mean, field_path

P = TypeVar("P", bound="PluginParams")


class PluginParams(BaseModel):
    """Base of every plugin's parameter model: strict, camelCase, immutable."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        frozen=True,
        alias_generator=to_camel,
        populate_by_name=True,
    )


class NoParams(PluginParams):
    """For plugin types that take no parameters (any key is an error)."""


def format_duration(seconds: float) -> str:
    """Seconds as a Go duration string (``0.2`` -> ``200ms``), for ``epp config --show``."""
    if seconds == 0:
        return "0s"
    for unit, scale in (("h", 3600.0), ("m", 60.0), ("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        value = seconds / scale
        if abs(value) >= 1 and abs(value - round(value)) < 1e-9:
            return f"{round(value)}{unit}"
    return f"{seconds:g}s"


def _duration(value: Any) -> float:
    return units.parse_duration(value)


def _quantity(value: Any) -> int:
    return units.parse_quantity(value)


Duration = Annotated[
    float, BeforeValidator(_duration), PlainSerializer(format_duration, return_type=str)
]
"""A Go duration (``200ms``, ``1m30s``) or a number of seconds; held as float seconds."""

Quantity = Annotated[int, BeforeValidator(_quantity)]
"""A Kubernetes quantity (``10Gi``, ``500M``) or an integer; held as an int (rounded up)."""


def validate_params(
    model: type[P], raw: Any, *, path: str = "parameters", file: str | None = None
) -> P:
    """``raw`` (a plugin's ``parameters``, ``None`` for none) validated against ``model``.

    Raises :class:`ConfigError` for the first problem; :func:`param_errors` gives them all.
    """
    params, errors = check_params(model, raw, path=path)
    if errors:
        first = errors[0]
        raise ConfigError(first.reason, file=file, path=first.path)
    assert params is not None
    return params


def check_params(
    model: type[P], raw: Any, *, path: str = "parameters"
) -> tuple[P | None, list[ConfigError]]:
    """Validate ``raw`` against ``model``: the model, or ``None`` and every error found."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        return None, [ConfigError(f"must be a mapping, got {type(raw).__name__}", path=path)]
    try:
        return model.model_validate(dict(raw)), []
    except ValidationError as exc:
        return None, param_errors(exc, model, path)


def param_errors(exc: ValidationError, model: type[BaseModel], path: str) -> list[ConfigError]:
    """Each pydantic error as a ConfigError with the full path and a reason that says the fix."""
    out: list[ConfigError] = []
    for err in exc.errors(include_url=False):
        out.append(ConfigError(error_reason(err, model), path=join_path(path, err["loc"])))
    return out


def join_path(prefix: str, loc: Any) -> str:
    """``prefix`` followed by a pydantic location: ``plugins[0].parameters`` + ``('x',)``."""
    sub = field_path(tuple(loc))
    if not prefix or not sub:
        return prefix or sub
    return prefix + sub if sub.startswith("[") else f"{prefix}.{sub}"


def known_fields(model: type[BaseModel]) -> list[str]:
    """The names a model accepts, as written in configs (aliases)."""
    return [f.alias or name for name, f in model.model_fields.items()]


def _nested_model(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model that holds the field at ``loc`` (for listing its known fields)."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = next(
            (f for n, f in current.model_fields.items() if part in (n, f.alias)),
            None,
        )
        if field is None:
            return None
        current = field.annotation
        args = getattr(current, "__args__", None)
        if args:  # list[Model] / Model | None
            current = next(
                (a for a in args if isinstance(a, type) and issubclass(a, BaseModel)), current
            )
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def error_reason(err: Any, model: type[BaseModel]) -> str:
    """One pydantic error in words, with the fix where there is one."""
    kind, ctx, loc = err["type"], err.get("ctx") or {}, tuple(err["loc"])
    got = repr(err.get("input"))
    got = got if len(got) <= 60 else got[:57] + "..."
    if kind == "extra_forbidden":
        holder = _nested_model(model, loc)
        known = known_fields(holder) if holder is not None else []
        name = str(loc[-1]) if loc else ""
        hint = did_you_mean(name, known)
        listing = f" (known: {', '.join(known)})" if known and not hint else ""
        if not known:
            listing = " (this plugin takes no parameters)" if holder is not None else ""
        return f"unknown field{hint}{listing}"
    if kind == "missing":
        return "required field is missing"
    if kind in ("int_type", "int_from_float", "int_parsing"):
        return f"must be an integer, got {got}"
    if kind in ("float_type", "float_parsing"):
        return f"must be a number, got {got}"
    if kind in ("bool_type", "bool_parsing"):
        return f"must be true or false, got {got}"
    if kind == "string_type":
        return f"must be a string, got {got}"
    if kind in ("list_type", "tuple_type"):
        return f"must be a list, got {got}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"must be a mapping, got {got}"
    if kind == "literal_error":
        return f"must be one of {ctx['expected']}, got {got}"
    bounds = {"greater_than": "> {gt}", "greater_than_equal": ">= {ge}"}
    bounds |= {"less_than": "< {lt}", "less_than_equal": "<= {le}"}
    if kind in bounds:
        return f"must be {bounds[kind].format(**ctx)}, got {got}"
    if kind in ("value_error", "assertion_error"):
        return str(ctx.get("error", err["msg"]))
    return str(err["msg"])


__all__ = [
    "Duration",
    "NoParams",
    "PluginParams",
    "Quantity",
    "check_params",
    "error_reason",
    "format_duration",
    "known_fields",
    "param_errors",
    "validate_params",
]
