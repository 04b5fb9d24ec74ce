"""What llm-d's precise-prefix configs use besides the producers: ``no-hit-lru-scorer``,
``active-request-scorer`` and ``endpoint-notification-source`` (the data source whose
extractors hear of endpoints coming and going); ``decode-filter`` is in :mod:`.roles`.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from endpoint_picker.datastore import Endpoint
from endpoint_picker.params import PluginParams
from endpoint_picker.requests.types import InferenceRequest
from endpoint_picker.scheduling.framework import PrefixMatch, SchedulingResult
from endpoint_picker.scheduling.plugins.base import PluginBase
from endpoint_picker.scheduling.plugins.precise_params import ActiveRequestParams, NoHitLruParams
from endpoint_picker.scheduling.plugins.prefix import match_state_key

COLD_KEY = "no-hit-lru:cold"


class NoHitLruScorer(PluginBase):
    """Spread *cold* requests (no cached prefix anywhere) over the servers that took a cold
    request least recently, so new prefixes grow everywhere evenly; warm requests get a
    neutral 0.5 so prefix affinity decides them.

    Cold: the prefix producer's match info shows no endpoint with a matched block (no info at
    all counts as cold). Never-used endpoints score 1.0; used ones from near 1 (least recent)
    down to near 0 (most recent). At most ``lruSize`` endpoints are remembered.
    """

    type_name = "no-hit-lru-scorer"
    params_model = NoHitLruParams

    def __init__(self, name: str | None = None, params: NoHitLruParams | None = None) -> None:
        super().__init__(name)
        self.params = params or NoHitLruParams()
        self.state_key = match_state_key(self.params.prefix_match_info_producer_name)
        self._lru: OrderedDict[str, None] = OrderedDict()  # least recent first

    def _cold(self, request: InferenceRequest) -> bool:
        state = request.state.get(self.state_key)
        cold = not isinstance(state, PrefixMatch) or not any(state.matches.values())
        request.state[COLD_KEY] = cold
        return cold

    def score(self, request: InferenceRequest, endpoints: list[Endpoint]) -> list[float]:
        if not self._cold(request):
            return [0.5] * len(endpoints)
        rank = {name: i for i, name in enumerate(self._lru)}
        n = len(rank)
        out: list[float] = []
        for ep in endpoints:
            i = rank.get(ep.name)
            out.append(1.0 if i is None else (n - i) / (n + 1))
        return out

    def pre_request(self, request: InferenceRequest, result: SchedulingResult) -> None:
        if not result.endpoints or not request.state.get(COLD_KEY):
            return
        name = result.endpoints[0].name
        self._lru.pop(name, None)
        self._lru[name] = None
        while len(self._lru) > self.params.lru_size:
            self._lru.popitem(last=False)

    def remove_endpoint(self, endpoint: Endpoint) -> None:
        self._lru.pop(endpoint.name, None)

    @classmethod
    def from_config(cls, name: str, params: Any) -> NoHitLruScorer:
        return cls(name, params)


class ActiveRequestScorer(PluginBase):
    """Fewer requests in flight scores higher: at or below ``idleThreshold`` 1.0; busier
    endpoints within ``[0, maxBusyScore]``, the busiest 0. The counts are the director's own
    in-flight accounting (``Endpoint.inflight_requests``, taken at dispatch, released at
    completion), which is what llm-d's ``inflight-load-producer`` tracks."""

    type_name = "active-request-scorer"
    params_model = ActiveRequestParams

    def __init__(self, name: str | None = None, params: ActiveRequestParams | None = None) -> None:
        super().__init__(name)
        self.params = params or ActiveRequestParams()

    def score(self, request: InferenceRequest, endpoints: list[Endpoint]) -> list[float]:
        idle, top = self.params.idle_threshold, self.params.max_busy_score
        counts = [ep.inflight_requests for ep in endpoints]
        busiest = max(counts, default=0)
        out: list[float] = []
        for c in counts:
            if c <= idle:
                out.append(1.0)
            else:
                out.append(top * (busiest - c) / (busiest - idle))
        return out

    @classmethod
    def from_config(cls, name: str, params: Any) -> ActiveRequestScorer:
        return cls(name, params)


class EndpointNotificationSource(PluginBase):
    """``endpoint-notification-source``: endpoint add/remove events for its extractors. The
    datastore already announces them to every subscriber, so this holds no state."""

    type_name = "endpoint-notification-source"


class LoadAwareParams(PluginParams):
    """llm-d's ``threshold``: the waiting queue at which the score reaches 0 (a value <= 0 is
    taken as the default, as llm-d does)."""

    threshold: int = 128


class LoadAwareScorer(PluginBase):
    """``load-aware-scorer``: an empty queue scores 0.5; a queue of ``q`` scores
    ``0.5 * (1 - min(q, threshold) / threshold)``, so a loaded endpoint never outscores an
    idle one and the score never exceeds 0.5 (llm-d's shape). The queue is
    ``Endpoint.queue_depth`` (the scraped waiting count plus requests sent since the scrape)."""

    type_name = "load-aware-scorer"
    params_model = LoadAwareParams

    def __init__(self, name: str | None = None, params: LoadAwareParams | None = None) -> None:
        super().__init__(name)
        self.params = params or LoadAwareParams()
        given = self.params.threshold
        self.threshold = float(given if given > 0 else LoadAwareParams().threshold)

    def score(self, request: InferenceRequest, endpoints: list[Endpoint]) -> list[float]:
        top = self.threshold
        return [0.5 * (1.0 - min(ep.queue_depth, top) / top) for ep in endpoints]

    @classmethod
    def from_config(cls, name: str, params: Any) -> LoadAwareScorer:
        return cls(name, params)
