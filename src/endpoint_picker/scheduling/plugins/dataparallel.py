"""``data-parallel-profile-handler`` (llm-d, deprecated there in favour of Istio >= 1.28.1):
one profile picks a data-parallel rank's endpoint (``ip:rankPort``); the request is sent to the
pod's ``primaryPort`` with the rank's ``ip:port`` in ``x-data-parallel-host-port``, so the
pod's sidecar hands it to that rank.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field

from endpoint_picker.params import PluginParams
from endpoint_picker.pd_headers import DATA_PARALLEL_HEADER
from endpoint_picker.requests.types import InferenceRequest
from endpoint_picker.scheduling.framework import (
    FORWARD_HEADERS_KEY,
    Profile,
    ProfileRunResult,
    SchedulingError,
    SchedulingResult,
)
from endpoint_picker.scheduling.plugins.base import PluginBase


class DataParallelParams(PluginParams):
    """llm-d's ``primaryPort`` (default 8000): the port the request is sent to."""

    primary_port: int = Field(8000, ge=1, le=65535)


class DataParallelProfileHandler(PluginBase):
    """``data-parallel-profile-handler``: exactly one profile; its pick goes to the primary
    port, the picked rank in the header."""

    type_name = "data-parallel-profile-handler"
    params_model = DataParallelParams

    def __init__(self, name: str | None = None, params: DataParallelParams | None = None) -> None:
        super().__init__(name)
        self.params = params or DataParallelParams()

    def pick_profiles(
        self,
        request: InferenceRequest,
        profiles: Mapping[str, Profile],
        results: Mapping[str, ProfileRunResult | None],
    ) -> list[str]:
        if len(results) == len(profiles) or len(profiles) != 1:
            return []
        return list(profiles)

    def process_results(
        self, request: InferenceRequest, results: Mapping[str, ProfileRunResult | None]
    ) -> SchedulingResult:
        if len(results) != 1:
            raise SchedulingError(
                "data parallel profile handler is intended to be used with a single profile"
            )
        name, result = next(iter(results.items()))
        if result is None or not result.endpoints:
            raise SchedulingError(f"failed to run scheduler profile '{name}'")
        out = SchedulingResult({name: result}, name, list(result.endpoints))
        out.destination_port = self.params.primary_port
        return out

    def pre_request(self, request: InferenceRequest, result: SchedulingResult) -> None:
        headers: dict[str, str] = request.state.setdefault(FORWARD_HEADERS_KEY, {})
        headers[DATA_PARALLEL_HEADER] = result.primary.hostport

    @classmethod
    def from_config(cls, name: str, params: Any) -> DataParallelProfileHandler:
        return cls(name, params)
