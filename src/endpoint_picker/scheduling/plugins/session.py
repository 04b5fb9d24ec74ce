"""``session-affinity-scorer`` (llm-d): 1.0 for the endpoint that served the session before,
0.0 for the rest.

Two strategies (``strategy``):

- ``encoded_endpoint_header`` (default, stateless): the request header (``x-session-token``)
  holds the base64 of the served pod's ``namespace/name``; the response carries the same header
  for the client to send back.
- ``session_id`` (stateful): the session id is read from the first non-empty source (a request
  header, or a request attribute another plugin published in ``request.state``); the scorer
  keeps session -> endpoint bindings, refreshed on use and dropped after ``evictionTtlSeconds``
  unused. Nothing is written to the client.

``profileName`` (e.g. ``prefill``): pin that profile's pick instead of the primary endpoint.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from endpoint_picker.datastore import Endpoint
from endpoint_picker.params import PluginParams
from endpoint_picker.requests.types import InferenceRequest
from endpoint_picker.scheduling.framework import SchedulingResult
from endpoint_picker.scheduling.plugins.base import PluginBase


class EncodedEndpointHeaderConfig(PluginParams):
    header: str = "x-session-token"

    @field_validator("header")
    @classmethod
    def _normal(cls, value: str) -> str:
        return value.strip().lower() or "x-session-token"


class SessionIdSource(PluginParams):
    header: str = ""
    attribute: str = ""
    producer: str = ""  # llm-d accepts it; the attribute is looked up by key alone here

    @model_validator(mode="after")
    def _exactly_one(self) -> SessionIdSource:
        if bool(self.header) == bool(self.attribute):
            raise ValueError("exactly one of header or attribute must be set")
        return self


class SessionIdConfig(PluginParams):
    sources: list[SessionIdSource] = Field(
        default_factory=lambda: [SessionIdSource(header="x-session-id")]
    )
    eviction_ttl_seconds: float = Field(300.0, gt=0)
    eviction_sweep_seconds: float = Field(10.0, gt=0)


class SessionAffinityParams(PluginParams):
    strategy: Literal["encoded_endpoint_header", "session_id"] = "encoded_endpoint_header"
    profile_name: str = ""
    encoded_endpoint_header_config: EncodedEndpointHeaderConfig = Field(
        default_factory=EncodedEndpointHeaderConfig
    )
    session_id_config: SessionIdConfig = Field(default_factory=SessionIdConfig)


def endpoint_id(ep: Endpoint) -> str:
    """llm-d's endpoint id: ``namespace/name``."""
    return f"{ep.namespace}/{ep.name}"


def decode_token(token: str) -> str:
    """The pod id a session token names ("" for none or an undecodable token)."""
    try:
        return base64.b64decode(token, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return ""


class SessionAffinityScorer(PluginBase):
    """``session-affinity-scorer``: a soft pin of a session to the endpoint that served it."""

    type_name = "session-affinity-scorer"
    params_model = SessionAffinityParams

    def __init__(
        self,
        name: str | None = None,
        params: SessionAffinityParams | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(name)
        self.params = params or SessionAffinityParams()
        self.header = self.params.encoded_endpoint_header_config.header
        self.clock = clock
        self.bindings: dict[str, tuple[str, float]] = {}  # session -> (endpoint id, last use)
        self._next_sweep = 0.0
        self._target_key = f"session-affinity:{self.name}:target"

    @property
    def stateful(self) -> bool:
        return self.params.strategy == "session_id"

    def session_id(self, request: InferenceRequest) -> str:
        for src in self.params.session_id_config.sources:
            if src.header:
                value = request.headers.get(src.header.lower(), "")
            else:
                found = request.state.get(src.attribute)
                value = found if isinstance(found, str) else ""
            if value:
                return value
        return ""

    def _bound(self, request: InferenceRequest) -> str:
        if not self.stateful:
            return decode_token(request.headers.get(self.header, ""))
        binding = self.bindings.get(self.session_id(request))
        if binding is None:
            return ""
        ttl = self.params.session_id_config.eviction_ttl_seconds
        return binding[0] if self.clock() - binding[1] <= ttl else ""

    def score(self, request: InferenceRequest, endpoints: list[Endpoint]) -> list[float]:
        pinned = self._bound(request)
        return [1.0 if pinned and endpoint_id(ep) == pinned else 0.0 for ep in endpoints]

    def _target(self, result: SchedulingResult) -> Endpoint | None:
        profile = self.params.profile_name
        if not profile:
            return result.endpoints[0] if result.endpoints else None
        run = result.profile_results.get(profile)
        return run.endpoints[0] if run is not None and run.endpoints else None

    def pre_request(self, request: InferenceRequest, result: SchedulingResult) -> None:
        target = self._target(result)
        if target is None:
            return
        request.state[self._target_key] = target
        if self.stateful:
            session = self.session_id(request)
            now = self.clock()
            if session:
                self.bindings[session] = (endpoint_id(target), now)
            self._sweep(now)

    def _sweep(self, now: float) -> None:
        cfg = self.params.session_id_config
        if now < self._next_sweep:
            return
        self._next_sweep = now + cfg.eviction_sweep_seconds
        expired = [s for s, (_, t) in self.bindings.items() if now - t > cfg.eviction_ttl_seconds]
        for session in expired:
            del self.bindings[session]

    def process_response_headers(
        self,
        request: InferenceRequest,
        headers: dict[str, str],
        metadata: Mapping[str, Mapping[str, str]],
    ) -> None:
        """Write the session token for the client to send back (header strategy only)."""
        target = request.state.get(self._target_key)
        if self.stateful or not isinstance(target, Endpoint):
            return
        headers[self.header] = base64.b64encode(endpoint_id(target).encode()).decode()

    def remove_endpoint(self, endpoint: Endpoint) -> None:
        gone = endpoint_id(endpoint)
        for session in [s for s, (ep, _) in self.bindings.items() if ep == gone]:
            del self.bindings[session]

    @classmethod
    def from_config(cls, name: str, params: Any) -> SessionAffinityScorer:
        return cls(name, params)
