"""Filters: saturation detectors used as filters, and the conformance suite's header filter."""

from __future__ import annotations

from typing import Protocol

from endpoint_picker.clock import SYSTEM_CLOCK, Clock
from endpoint_picker.datastore import Endpoint
from endpoint_picker.requests.types import InferenceRequest
from endpoint_picker.scheduling.plugins.base import PluginBase


class EndpointSaturation(Protocol):
    """What flow control's saturation detectors offer per endpoint."""

    def endpoint_saturated(self, endpoint: Endpoint, now: float) -> bool: ...


class SaturationFilter(PluginBase):
    """A saturation detector as a filter: keep the endpoints it does not call saturated.

    ``fail_open`` (upstream's ``utilization-detector``) returns the input unchanged when every
    endpoint is saturated, so a busy pool still serves; ``concurrency-detector`` may return
    nothing (the request then fails with 429).
    """

    def __init__(
        self,
        detector: EndpointSaturation,
        *,
        type_name: str,
        name: str | None = None,
        fail_open: bool,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.type_name = type_name
        super().__init__(name)
        self.detector = detector
        self.fail_open = fail_open
        self.clock = clock

    def filter(self, request: InferenceRequest, endpoints: list[Endpoint]) -> list[Endpoint]:
        now = self.clock.now()
        saturated = self.detector.endpoint_saturated
        kept = [ep for ep in endpoints if not saturated(ep, now)]
        if not kept and self.fail_open:
            return endpoints
        return kept


TEST_SELECTION_HEADER = "test-epp-endpoint-selection"


def _split_host_port(item: str) -> tuple[str, str]:
    """Like Go's ``net.SplitHostPort``, but a bare host (IPv4, IPv6, bracketed) gives port ''."""
    if item.startswith("["):
        end = item.find("]")
        if end > 0 and item[end + 1 : end + 2] == ":" and item[end + 2 :]:
            return item[1:end], item[end + 2 :]
        return item.strip("[]"), ""
    if item.count(":") == 1:
        host, port = item.split(":")
        return host, port
    return item, ""


class HeaderBasedTestingFilter(PluginBase):
    """``header-based-testing-filter`` (conformance only): keep the endpoints named in header
    ``test-epp-endpoint-selection`` (``IP`` or ``IP:port``, comma separated), in header order,
    one per IP. No header -> no endpoints (the request then fails with 429).
    """

    type_name = "header-based-testing-filter"

    def filter(self, request: InferenceRequest, endpoints: list[Endpoint]) -> list[Endpoint]:
        value = request.headers.get(TEST_SELECTION_HEADER, "")
        if not value.strip():
            return []
        by_ip: dict[str, Endpoint] = {}
        by_hostport: dict[str, Endpoint] = {}
        for ep in endpoints:
            ip = ep.address.strip().strip("[]")
            if ip:
                by_ip[ip] = ep
                by_hostport[f"{ip}:{ep.port}"] = ep
        out: list[Endpoint] = []
        seen: set[str] = set()
        for raw in value.split(","):
            item = raw.strip()
            if not item:
                continue
            host, port = _split_host_port(item)
            host = host.strip("[]")
            hit = by_hostport.get(f"{host}:{port}") if port else by_ip.get(host)
            if hit is not None and hit.address not in seen:
                seen.add(hit.address)
                out.append(hit)
        return out
