"""The ``flowControl:`` block of EndpointPickerConfig, parsed strictly with upstream's names.

Upstream fields (``apix/config/v1alpha1`` ``FlowControlConfig``): ``maxBytes``, ``maxRequests``,
``defaultRequestTTL``, ``defaultPriorityBand``, ``priorityBands``, ``usageLimitPolicyPluginRef``.
llm-d-router's additions: ``defaultNegativePriorityBand`` (the template for bands below 0),
``noEndpointRequestTTL`` (applied, with llm-d-router's defaults: see docs/flow-control.md),
``enableEviction`` (accepted, recorded), ``saturationDetector``
(read by the config loader, which owns plugin references).
This project's extensions (documented in docs/flow-control.md): ``enabled`` (turns flow control
on or off whatever the feature gate says; see docs/configuration.md), ``flowGCTimeout`` and
``priorityBandGCTimeout`` (upstream's fixed 5m / 10m), and per-band ``usageLimit`` (a saturation
ceiling per band, for priority-based holdback).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from pydantic import Field

from endpoint_picker.errors import ConfigError
from endpoint_picker.params import PluginParams, validate_params
from endpoint_picker.units import parse_duration, parse_quantity

from .fairness import FAIRNESS_POLICIES
from .ordering import ORDERING_POLICIES

DEFAULT_BAND_MAX_BYTES = 1_000_000_000
STATIC_USAGE_LIMIT_POLICY = "static-usage-limit-policy"
DEFAULT_ORDERING = "fcfs-ordering-policy"
DEFAULT_FAIRNESS = "global-strict-fairness-policy"
FLOW_GC_TIMEOUT = 300.0
NO_ENDPOINT_REQUEST_TTL = 60.0  # llm-d-router's default when neither TTL is set
BAND_GC_TIMEOUT = 600.0

T = TypeVar("T")

# Keys that are flow-control settings (upstream's ``flowControlSettingsConfigured``): a section
# holding only ``saturationDetector`` / ``enableEviction`` does not ask for flow control.
SETTINGS_KEYS = frozenset(
    {
        "maxBytes",
        "maxRequests",
        "defaultRequestTTL",
        "noEndpointRequestTTL",
        "defaultPriorityBand",
        "defaultNegativePriorityBand",
        "priorityBands",
        "usageLimitPolicyPluginRef",
    }
)


class StaticUsageLimitParams(PluginParams):
    """``static-usage-limit-policy``: dispatch while pool saturation is below ``threshold``."""

    threshold: float = Field(1.0, gt=0)


@dataclass(frozen=True, slots=True)
class PriorityBandConfig:
    """One priority band (or the template for bands created on first use)."""

    priority: int = 0
    max_bytes: int = DEFAULT_BAND_MAX_BYTES  # 0 in config means this default
    max_requests: int = 0  # 0 = unlimited
    ordering_policy: str = DEFAULT_ORDERING
    fairness_policy: str = DEFAULT_FAIRNESS
    usage_limit: float | None = None  # extension: this band's saturation ceiling


@dataclass(frozen=True, slots=True)
class FlowControlConfig:
    """Flow control settings with upstream's defaults. Seconds for durations, bytes for sizes."""

    enabled: bool = True
    max_bytes: int = 0  # 0 = unlimited
    max_requests: int = 0  # 0 = unlimited
    default_request_ttl: float = 0.0  # 0 = no TTL
    default_priority_band: PriorityBandConfig = field(default_factory=PriorityBandConfig)
    default_negative_priority_band: PriorityBandConfig | None = None
    # Queue-wait budget while the pool has no ready endpoint (llm-d-router's field): follows
    # defaultRequestTTL when only that is set, 60 s when neither is; 0 = wait indefinitely.
    no_endpoint_request_ttl: float = NO_ENDPOINT_REQUEST_TTL
    enable_eviction: bool = False  # accepted from llm-d-router; no eviction here
    priority_bands: tuple[PriorityBandConfig, ...] = ()
    usage_limit_policy: str = STATIC_USAGE_LIMIT_POLICY
    usage_limit_threshold: float = 1.0  # static-usage-limit-policy `threshold`
    flow_gc_timeout: float = FLOW_GC_TIMEOUT
    band_gc_timeout: float = BAND_GC_TIMEOUT

    def band(self, priority: int) -> PriorityBandConfig:
        """The configured band for ``priority``, or the template stamped with it (the negative
        template for priorities below 0 when one is configured)."""
        for b in self.priority_bands:
            if b.priority == priority:
                return b
        template = self.default_priority_band
        if priority < 0 and self.default_negative_priority_band is not None:
            template = self.default_negative_priority_band
        return replace(template, priority=priority)

    def ceiling(self, band: PriorityBandConfig) -> float:
        """The saturation at or above which ``band`` stops dispatching."""
        return band.usage_limit if band.usage_limit is not None else self.usage_limit_threshold

    @classmethod
    def from_dict(
        cls,
        d: Mapping[str, Any] | None,
        *,
        plugins: Sequence[Mapping[str, Any]] | None = None,
        path: str = "flowControl",
    ) -> FlowControlConfig:
        """Parse the ``flowControl:`` mapping. ``plugins`` is the config's ``plugins:`` list, used
        to resolve ``*PolicyRef`` names to plugin types and the usage-limit ``threshold`` (its
        ``parameters`` raw, or already a validated :class:`StaticUsageLimitParams`)."""
        if d is None:
            return cls()
        r = _Reader(d, path)
        refs = _plugin_types(plugins or ())
        template = _band(
            r.get("defaultPriorityBand", _mapping, {}),
            f"{path}.defaultPriorityBand",
            refs,
            template=True,
        )
        negative = None
        if r.get("defaultNegativePriorityBand", _mapping, None) is not None:
            negative = _band(
                r.get("defaultNegativePriorityBand", _mapping, {}),
                f"{path}.defaultNegativePriorityBand",
                refs,
                template=True,
            )
        r.get("saturationDetector", _mapping, None)  # the loader resolves this reference
        bands: list[PriorityBandConfig] = []
        seen: set[int] = set()
        no_bands: Sequence[Any] = ()
        for i, raw in enumerate(r.get("priorityBands", _sequence, no_bands)):
            bpath = f"{path}.priorityBands[{i}]"
            band = _band(_mapping(raw), bpath, refs, template=False)
            if band.priority in seen:
                raise ConfigError(f"duplicate priority {band.priority}", path=f"{bpath}.priority")
            seen.add(band.priority)
            bands.append(band)
        ulp = r.get("usageLimitPolicyPluginRef", _string, STATIC_USAGE_LIMIT_POLICY)
        ulp_type, ulp_params = refs.get(ulp, (ulp, {}))
        if ulp_type != STATIC_USAGE_LIMIT_POLICY:
            raise ConfigError(
                f"unknown usage limit policy {ulp!r} (known: {STATIC_USAGE_LIMIT_POLICY})",
                path=f"{path}.usageLimitPolicyPluginRef",
            )
        if isinstance(ulp_params, StaticUsageLimitParams):
            threshold = ulp_params.threshold
        else:
            where = f"plugins[{ulp}].parameters"
            threshold = validate_params(StaticUsageLimitParams, ulp_params, path=where).threshold
        ttl = r.get("defaultRequestTTL", _non_negative_duration, None)
        cfg = cls(
            enabled=r.get("enabled", _bool, True),
            max_bytes=r.get("maxBytes", parse_quantity, 0),
            max_requests=r.get("maxRequests", parse_quantity, 0),
            default_request_ttl=ttl or 0.0,
            default_priority_band=template,
            default_negative_priority_band=negative,
            no_endpoint_request_ttl=r.get(
                "noEndpointRequestTTL",
                _non_negative_duration,
                NO_ENDPOINT_REQUEST_TTL if ttl is None else ttl,
            ),
            enable_eviction=r.get("enableEviction", _bool, False),
            priority_bands=tuple(bands),
            usage_limit_policy=ulp_type,
            usage_limit_threshold=threshold,
            flow_gc_timeout=r.get("flowGCTimeout", _positive_duration, FLOW_GC_TIMEOUT),
            band_gc_timeout=r.get("priorityBandGCTimeout", _positive_duration, BAND_GC_TIMEOUT),
        )
        r.finish()
        if cfg.band_gc_timeout < cfg.flow_gc_timeout:
            raise ConfigError("must be >= flowGCTimeout", path=f"{path}.priorityBandGCTimeout")
        return cfg


def _band(
    d: Mapping[str, Any],
    path: str,
    refs: Mapping[str, tuple[str, Any]],
    *,
    template: bool,
) -> PriorityBandConfig:
    r = _Reader(d, path)
    priority = r.get("priority", _int, 0) if template else r.require("priority", _int)
    max_bytes = r.get("maxBytes", parse_quantity, 0) or DEFAULT_BAND_MAX_BYTES
    ordering = _policy(r, "orderingPolicyRef", DEFAULT_ORDERING, ORDERING_POLICIES, refs)
    fairness = _policy(r, "fairnessPolicyRef", DEFAULT_FAIRNESS, FAIRNESS_POLICIES, refs)
    band = PriorityBandConfig(
        priority=0 if template else priority,  # the template's priority is ignored, as upstream
        max_bytes=max_bytes,
        max_requests=r.get("maxRequests", parse_quantity, 0),
        ordering_policy=ordering,
        fairness_policy=fairness,
        usage_limit=r.get("usageLimit", _positive_float, None),
    )
    r.finish()
    return band


def _policy(
    r: _Reader,
    key: str,
    default: str,
    known: Mapping[str, object],
    refs: Mapping[str, tuple[str, Any]],
) -> str:
    ref = r.get(key, _string, default)
    kind = refs.get(ref, (ref, {}))[0]
    if kind not in known:
        raise ConfigError(
            f"unknown policy {ref!r} (known types: {', '.join(sorted(known))})",
            path=f"{r.path}.{key}",
        )
    return kind


def _plugin_types(plugins: Sequence[Mapping[str, Any]]) -> dict[str, tuple[str, Any]]:
    out: dict[str, tuple[str, Any]] = {}
    for p in plugins:
        kind = str(p.get("type", ""))
        params = p.get("parameters") or {}
        out[str(p.get("name") or kind)] = (kind, params)
    return out


class _Reader:
    """Reads a mapping field by field and fails on anything left unread (strict schema)."""

    def __init__(self, d: Mapping[str, Any], path: str) -> None:
        if not isinstance(d, Mapping):
            raise ConfigError(f"expected a mapping, got {type(d).__name__}", path=path)
        self.d, self.path, self.seen = d, path, set[str]()

    def get(self, key: str, conv: Callable[[Any], T], default: T) -> T:
        self.seen.add(key)
        if key not in self.d or self.d[key] is None:
            return default
        return self._convert(key, conv)

    def require(self, key: str, conv: Callable[[Any], T]) -> T:
        self.seen.add(key)
        if key not in self.d or self.d[key] is None:
            raise ConfigError("required field is missing", path=f"{self.path}.{key}")
        return self._convert(key, conv)

    def _convert(self, key: str, conv: Callable[[Any], T]) -> T:
        try:
            return conv(self.d[key])
        except (ValueError, TypeError) as exc:
            raise ConfigError(str(exc), path=f"{self.path}.{key}") from None

    def finish(self) -> None:
        for key in self.d:
            if key not in self.seen:
                raise ConfigError("unknown field", path=f"{self.path}.{key}")


def _mapping(v: Any) -> Mapping[str, Any]:
    if not isinstance(v, Mapping):
        raise ValueError(f"expected a mapping, got {type(v).__name__}")
    return v


def _sequence(v: Any) -> Sequence[Any]:
    if not isinstance(v, list | tuple):
        raise ValueError(f"expected a list, got {type(v).__name__}")
    return v


def _string(v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise ValueError(f"expected a non-empty string, got {v!r}")
    return v


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"expected true or false, got {v!r}")
    return v


def _int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"expected an integer, got {v!r}")
    return v


def _non_negative_int(v: Any) -> int:
    n = _int(v)
    if n < 0:
        raise ValueError(f"must not be negative, got {n}")
    return n


def _positive_float(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not v > 0:
        raise ValueError(f"expected a number > 0, got {v!r}")
    return float(v)


def _non_negative_duration(v: Any) -> float:
    s = parse_duration(v)
    if s < 0:
        raise ValueError(f"must not be negative, got {v!r}")
    return s


def _positive_duration(v: Any) -> float:
    s = parse_duration(v)
    if s <= 0:
        raise ValueError(f"must be > 0, got {v!r}")
    return s
