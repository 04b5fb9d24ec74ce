"""llm-d's deprecated P/D plugins, so configs written for them still run unchanged.

- ``pd-profile-handler``: the older P/D handler. Decode first, then prefill when its decider
  (``deciderPluginName``, default ``prefix-based-pd-decider``) says so; ``decodeProfile`` /
  ``prefillProfile`` name the profiles. ``primaryPort`` (0: off) sends the request to the decode
  pod's primary port with the picked ``ip:port`` in ``x-data-parallel-host-port``, as llm-d's
  does. ``prefixPluginType``, ``prefixPluginName`` and ``prefixMatchInfoProducerName`` are
  accepted and unused (llm-d never used the first two). Built on ``disagg-profile-handler``,
  which also sets the P/D headers itself.
- ``disagg-headers-handler`` and its older name ``prefill-header-handler``: pre-request plugins
  that write the prefill and encode endpoints the profiles picked into ``x-prefiller-host-port``
  and ``x-encoder-hosts-ports`` (``prefillProfile``, ``encodeProfile`` name the profiles), and
  clear them when that stage did not run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field

from endpoint_picker.params import PluginParams
from endpoint_picker.pd_headers import DATA_PARALLEL_HEADER, ENCODERS_HEADER, PREFILLER_HEADER
from endpoint_picker.requests.types import InferenceRequest
from endpoint_picker.scheduling.framework import (
    FORWARD_HEADERS_KEY,
    ProfileRunResult,
    SchedulingResult,
)
from endpoint_picker.scheduling.plugins.base import PluginBase
from endpoint_picker.scheduling.plugins.disagg import (
    DeciderNames,
    DisaggParams,
    DisaggProfileHandler,
    ProfileNames,
)


class PdProfileParams(PluginParams):
    """llm-d's ``PdProfileHandlerParameters``, with its defaults."""

    decode_profile: str = "decode"
    prefill_profile: str = "prefill"
    prefix_plugin_type: str = ""  # deprecated in llm-d: never used
    prefix_plugin_name: str = ""  # deprecated in llm-d: never used
    primary_port: int = Field(0, ge=0, le=65535)  # 0: off
    decider_plugin_name: str = Field("prefix-based-pd-decider", min_length=1)
    prefix_match_info_producer_name: str = ""

    def plugin_refs(self) -> list[tuple[str, str]]:
        """The decider it names, for the loader to check."""
        return [("deciderPluginName", self.decider_plugin_name)]

    def as_disagg(self) -> DisaggParams:
        return DisaggParams(
            profiles=ProfileNames(decode=self.decode_profile, prefill=self.prefill_profile),
            deciders=DeciderNames(prefill=self.decider_plugin_name),
        )


class PdProfileHandler(DisaggProfileHandler):
    """``pd-profile-handler`` (deprecated in llm-d): ``disagg-profile-handler`` for P/D only."""

    type_name = "pd-profile-handler"
    params_model = PdProfileParams  # type: ignore[assignment]

    def __init__(self, name: str | None = None, params: PdProfileParams | None = None) -> None:
        self.pd_params = params or PdProfileParams()
        super().__init__(name, self.pd_params.as_disagg())

    def process_results(
        self, request: InferenceRequest, results: Mapping[str, ProfileRunResult | None]
    ) -> SchedulingResult:
        out = super().process_results(request, results)
        if self.pd_params.primary_port:
            out.destination_port = self.pd_params.primary_port
        return out

    def pre_request(self, request: InferenceRequest, result: SchedulingResult) -> None:
        super().pre_request(request, result)
        if self.pd_params.primary_port:
            headers: dict[str, str] = request.state.setdefault(FORWARD_HEADERS_KEY, {})
            headers[DATA_PARALLEL_HEADER] = result.primary.hostport

    @classmethod
    def from_config(cls, name: str, params: Any) -> PdProfileHandler:
        return cls(name, params)


class HeadersParams(PluginParams):
    """llm-d's ``disaggHeadersHandlerParameters``."""

    prefill_profile: str = "prefill"
    encode_profile: str = "encode"


class DisaggHeadersHandler(PluginBase):
    """``disagg-headers-handler`` (deprecated in llm-d): the P/D headers from the profiles'
    picks, for configs whose profile handler does not set them."""

    type_name = "disagg-headers-handler"
    params_model = HeadersParams

    def __init__(self, name: str | None = None, params: HeadersParams | None = None) -> None:
        super().__init__(name)
        self.params = params or HeadersParams()

    def pre_request(self, request: InferenceRequest, result: SchedulingResult) -> None:
        headers: dict[str, str] = request.state.setdefault(FORWARD_HEADERS_KEY, {})
        headers.pop(PREFILLER_HEADER, None)
        headers.pop(ENCODERS_HEADER, None)
        prefill = result.profile_results.get(self.params.prefill_profile)
        if prefill is not None and prefill.endpoints:
            headers[PREFILLER_HEADER] = prefill.endpoints[0].hostport
        encode = result.profile_results.get(self.params.encode_profile)
        if encode is not None and encode.endpoints:
            headers[ENCODERS_HEADER] = ",".join(ep.hostport for ep in encode.endpoints)

    @classmethod
    def from_config(cls, name: str, params: Any) -> DisaggHeadersHandler:
        return cls(name, params)


class PrefillHeaderHandler(DisaggHeadersHandler):
    """``prefill-header-handler``: llm-d's older name for ``disagg-headers-handler``."""

    type_name = "prefill-header-handler"
