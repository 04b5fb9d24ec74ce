"""``disagg-profile-handler`` (llm-d): disaggregated scheduling over decode, prefill and encode
profiles.

Decode-first (the default ``stageOrder``): the decode profile runs; then the encode profile if
its decider says so for this request; then the prefill profile if the prefill decider says so
(the deciders see the chosen decode endpoint, whose cached prefix ``prefix-based-pd-decider``
reads). Prefill-first: prefill (when its profile exists), encode, then decode; a prefill decider
is not allowed in that order, as llm-d. The result's primary profile is decode; the request goes
to the decode endpoint with the prefiller's ``host:port`` in ``x-prefiller-host-port`` and the
encoders' in ``x-encoder-hosts-ports`` (the director forwards ``request.state[
FORWARD_HEADERS_KEY]``). Each finished decision is counted in llm-d's
``llm_d_epp_disagg_decision_total`` and logged at debug.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from endpoint_picker.datastore import Endpoint
from endpoint_picker.errors import ConfigError
from endpoint_picker.params import PluginParams
from endpoint_picker.pd_headers import ENCODERS_HEADER, PREFILLER_HEADER
from endpoint_picker.requests.types import InferenceRequest
from endpoint_picker.scheduling import metrics as m
from endpoint_picker.scheduling.framework import (
    FORWARD_HEADERS_KEY,
    Profile,
    ProfileRunResult,
    SchedulingError,
    SchedulingResult,
)
from endpoint_picker.scheduling.plugins.base import PluginBase

log = logging.getLogger(__name__)

PEER_ENDPOINT_KEY = "disagg-profile-handler:peer-endpoint"

_LEGACY = {
    "decodeProfile": ("profiles", "decode"),
    "prefillProfile": ("profiles", "prefill"),
    "encodeProfile": ("profiles", "encode"),
    "prefillDeciderPluginName": ("deciders", "prefill"),
    "encodeDeciderPluginName": ("deciders", "encode"),
    "deciderPluginName": ("deciders", "prefill"),  # pd-profile-handler's name, lower priority
}


class Decider(Protocol):
    def disaggregate(self, request: InferenceRequest, endpoint: Endpoint | None) -> bool: ...


class _Group(BaseModel):
    model_config = ConfigDict(
        extra="forbid", strict=True, frozen=True, alias_generator=to_camel, populate_by_name=True
    )


class ProfileNames(_Group):
    decode: str = "decode"
    prefill: str = "prefill"
    encode: str = "encode"


class DeciderNames(_Group):
    prefill: str = ""
    encode: str = ""


class DisaggParams(PluginParams):
    """llm-d's nested parameters; its deprecated flat ones (``decodeProfile``,
    ``prefillDeciderPluginName``, ...) are accepted and moved into them, but not mixed."""

    stage_order: str = "decode-first"
    profiles: ProfileNames = Field(default_factory=ProfileNames)
    deciders: DeciderNames = Field(default_factory=DeciderNames)

    @model_validator(mode="before")
    @classmethod
    def _legacy(cls, raw: Any) -> Any:
        if not isinstance(raw, Mapping) or not _LEGACY.keys() & raw.keys():
            return raw
        if "profiles" in raw or "deciders" in raw:
            raise ValueError(
                "use one format: nested profiles/deciders or the deprecated flat fields"
            )
        out: dict[str, Any] = {k: v for k, v in raw.items() if k not in _LEGACY}
        groups: dict[str, dict[str, Any]] = {"profiles": {}, "deciders": {}}
        for key in sorted(_LEGACY, key=lambda k: k == "deciderPluginName"):
            if raw.get(key):
                group, field = _LEGACY[key]
                groups[group].setdefault(field, raw[key])
        return out | groups

    @field_validator("stage_order")
    @classmethod
    def _order(cls, value: str) -> str:
        key = value.lower().replace("-", "").replace("_", "")
        if key in ("", "decodefirst", "decode"):
            return "decode-first"
        if key in ("prefillfirst", "prefill"):
            return "prefill-first"
        raise ValueError(f"must be 'decode-first' or 'prefill-first', got {value!r}")

    @model_validator(mode="after")
    def _prefill_first_has_no_decider(self) -> DisaggParams:
        if self.stage_order == "prefill-first" and self.deciders.prefill:
            raise ValueError("a prefill decider is not supported in prefill-first stage order")
        return self

    def plugin_refs(self) -> list[tuple[str, str]]:
        """(parameter path, plugin name) of the deciders it names, for the loader to check."""
        d = self.deciders
        return [
            (f"deciders.{k}", v) for k, v in (("prefill", d.prefill), ("encode", d.encode)) if v
        ]


def decision_type(encoded: bool, prefilled: bool) -> str:
    """llm-d's ``decision_type`` label."""
    if encoded and prefilled:
        return "encode-prefill-decode"
    if encoded:
        return "encode-decode"
    return "prefill-decode" if prefilled else "decode-only"


class DisaggProfileHandler(PluginBase):
    """``disagg-profile-handler``: decode always, prefill and encode when their deciders say so."""

    type_name = "disagg-profile-handler"
    params_model = DisaggParams

    def __init__(self, name: str | None = None, params: DisaggParams | None = None) -> None:
        super().__init__(name)
        self.params = params or DisaggParams()
        self.prefill_decider: Decider | None = None
        self.encode_decider: Decider | None = None

    def bind(self, plugins: Mapping[str, Any]) -> None:
        """Resolve the deciders the parameters name among the configured plugins."""
        for stage, ref in self.params.plugin_refs():
            obj = plugins.get(ref)
            if obj is None or not callable(getattr(obj, "disaggregate", None)):
                raise ConfigError(f"plugin {ref!r} is not a decider", path=f"parameters.{stage}")
            setattr(self, f"{stage.split('.')[1]}_decider", obj)

    # -- picking --------------------------------------------------------------------------------
    def pick_profiles(
        self,
        request: InferenceRequest,
        profiles: Mapping[str, Profile],
        results: Mapping[str, ProfileRunResult | None],
    ) -> list[str]:
        if self.params.stage_order == "prefill-first":
            return self._prefill_first(request, profiles, results)
        return self._decode_first(request, profiles, results)

    def _decode_first(
        self,
        request: InferenceRequest,
        profiles: Mapping[str, Profile],
        results: Mapping[str, ProfileRunResult | None],
    ) -> list[str]:
        names = self.params.profiles
        if names.decode not in results:
            return [names.decode] if names.decode in profiles else []
        decode = results[names.decode]
        if decode is None or not decode.endpoints:
            return []
        chosen = decode.endpoints[0]
        for stage, decider in (("encode", self.encode_decider), ("prefill", self.prefill_decider)):
            profile = getattr(names, stage)
            if profile not in profiles or profile in results:
                continue
            # A decider is asked again on the next call when it said no: deciders are pure.
            if decider is not None and decider.disaggregate(request, chosen):
                request.state[PEER_ENDPOINT_KEY] = chosen
                return [profile]
        self._record(request, results)
        return []

    def _prefill_first(
        self,
        request: InferenceRequest,
        profiles: Mapping[str, Profile],
        results: Mapping[str, ProfileRunResult | None],
    ) -> list[str]:
        names = self.params.profiles
        if names.decode in results:
            decode = results[names.decode]
            if decode is not None and decode.endpoints:
                self._record(request, results)
            return []
        if names.prefill in profiles and names.prefill not in results:
            return [names.prefill]
        encoder = self.encode_decider
        wants_encode = encoder is not None and encoder.disaggregate(request, None)
        if names.encode in profiles and names.encode not in results and wants_encode:
            return [names.encode]
        if names.decode not in profiles:
            return []
        prefill = results.get(names.prefill)
        if prefill is not None and prefill.endpoints:
            request.state[PEER_ENDPOINT_KEY] = prefill.endpoints[0]
        return [names.decode]

    def _record(
        self, request: InferenceRequest, results: Mapping[str, ProfileRunResult | None]
    ) -> None:
        names = self.params.profiles
        decision = decision_type(_ran(results.get(names.encode)), _ran(results.get(names.prefill)))
        model = request.target_model or "unknown"
        m.DISAGG_DECISIONS.labels(self.name, self.type_name, model, decision).inc()
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "disaggregation decision",
                extra={"request_id": request.request_id, "model": model, "decision": decision},
            )

    # -- results --------------------------------------------------------------------------------
    def process_results(
        self, request: InferenceRequest, results: Mapping[str, ProfileRunResult | None]
    ) -> SchedulingResult:
        names = self.params.profiles
        decode = results.get(names.decode)
        if decode is None or not decode.endpoints:
            raise SchedulingError("failed to find available decode workers")
        kept: dict[str, ProfileRunResult | None] = {names.decode: decode}
        for profile in (names.prefill, names.encode):
            res = results.get(profile)
            if res is not None:
                kept[profile] = res
        return SchedulingResult(kept, names.decode, list(decode.endpoints))

    def pre_request(self, request: InferenceRequest, result: SchedulingResult) -> None:
        """Say to the decode worker's sidecar which prefiller and encoders to use."""
        headers: dict[str, str] = request.state.setdefault(FORWARD_HEADERS_KEY, {})
        headers.pop(PREFILLER_HEADER, None)
        headers.pop(ENCODERS_HEADER, None)
        names = self.params.profiles
        prefill = result.profile_results.get(names.prefill)
        if prefill is not None and prefill.endpoints:
            headers[PREFILLER_HEADER] = prefill.endpoints[0].hostport
        encode = result.profile_results.get(names.encode)
        if encode is not None and encode.endpoints:
            headers[ENCODERS_HEADER] = ",".join(ep.hostport for ep in encode.endpoints)

    @classmethod
    def from_config(cls, name: str, params: Any) -> DisaggProfileHandler:
        return cls(name, params)


def _ran(result: ProfileRunResult | None) -> bool:
    return result is not None and bool(result.endpoints)
