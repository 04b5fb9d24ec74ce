"""Profile handlers and the conformance suite's response-header plugin."""

from __future__ import annotations

from collections.abc import Mapping

from endpoint_picker.requests.types import (
    DESTINATION_NAMESPACE,
    DESTINATION_SERVED_HEADER,
    InferenceRequest,
)
from endpoint_picker.scheduling.framework import (
    Profile,
    ProfileRunResult,
    SchedulingError,
    SchedulingResult,
)
from endpoint_picker.scheduling.plugins.base import PluginBase


class SingleProfileHandler(PluginBase):
    """``single-profile-handler``: run every profile once; exactly one must succeed."""

    type_name = "single-profile-handler"

    def pick_profiles(
        self,
        request: InferenceRequest,
        profiles: Mapping[str, Profile],
        results: Mapping[str, ProfileRunResult | None],
    ) -> list[str]:
        if len(results) == len(profiles):
            return []
        return list(profiles)

    def process_results(
        self, request: InferenceRequest, results: Mapping[str, ProfileRunResult | None]
    ) -> SchedulingResult:
        if len(results) != 1:
            raise SchedulingError("single profile handler is intended to be used with one profile")
        name, result = next(iter(results.items()))
        if result is None:
            raise SchedulingError(f"failed to run scheduler profile '{name}'")
        return SchedulingResult({name: result}, name, list(result.endpoints))


CONFORMANCE_SERVED_HEADER = "x-conformance-test-served-endpoint"


class DestinationEndpointServedVerifier(PluginBase):
    """``destination-endpoint-served-verifier`` (conformance only): echo the served endpoint the
    gateway reported (metadata ``envoy.lb/x-gateway-destination-endpoint-served``) back to the
    client in ``x-conformance-test-served-endpoint``."""

    type_name = "destination-endpoint-served-verifier"

    def process_response_headers(
        self,
        request: InferenceRequest,
        headers: dict[str, str],
        metadata: Mapping[str, Mapping[str, str]],
    ) -> None:
        lb = metadata.get(DESTINATION_NAMESPACE)
        if lb is None:
            headers[CONFORMANCE_SERVED_HEADER] = "fail: missing envoy lb metadata"
            return
        served = lb.get(DESTINATION_SERVED_HEADER)
        if served is None:
            headers[CONFORMANCE_SERVED_HEADER] = (
                "fail: missing destination endpoint served metadata"
            )
            return
        headers[CONFORMANCE_SERVED_HEADER] = served
