"""The scheduler: runs profiles chosen by the profile handler and returns target endpoints.

This is the director's only entry into scheduling. It owns the plugins' lifecycle hooks
(data producers before the profiles, pre-request after the choice, response completion,
endpoint removal) so the director does not need to know which plugin implements what.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from time import perf_counter
from typing import Any

from endpoint_picker.datastore import Endpoint
from endpoint_picker.errors import InferenceError, ResourceExhausted
from endpoint_picker.metrics import FastHistogram
from endpoint_picker.requests.types import TOP_BAND_KEY, InferenceRequest, Usage
from endpoint_picker.scheduling import metrics as m
from endpoint_picker.scheduling.framework import (
    Admitter,
    DataProducer,
    EndpointRemoved,
    PrefixMatch,
    PreRequest,
    ProfileHandler,
    ProfileRunResult,
    ResponseBodyProcessor,
    ResponseComplete,
    ResponseHeaderProcessor,
    SchedulingError,
    SchedulingResult,
)
from endpoint_picker.scheduling.profile import NoEndpointsError, SchedulerProfile

log = logging.getLogger(__name__)

# A request has prefix affinity to an endpoint that holds its best match among the candidates,
# when that match covers at least this share of the prompt's blocks: a shorter match saves
# too little prefill to be worth waiting for a slot.
AFFINITY_MIN_MATCH = 0.5


def affine_endpoints(request: InferenceRequest, candidates: Sequence[Endpoint]) -> set[str]:
    """Names of the candidates ``request`` has affinity to: those holding its best prefix
    match (from any prefix producer's :class:`PrefixMatch`, once producers ran) when it
    covers at least :data:`AFFINITY_MIN_MATCH` of the prompt, and those running its LoRA
    adapter (``running_lora_adapters``)."""
    names: set[str] = set()
    for value in request.state.values():
        if not isinstance(value, PrefixMatch) or not value.total or not value.matches:
            continue
        get = value.matches.get
        best = max(get(ep.name, 0) for ep in candidates)
        if best and best >= AFFINITY_MIN_MATCH * value.total:
            names.update(ep.name for ep in candidates if get(ep.name, 0) == best)
    model = request.target_model
    names.update(ep.name for ep in candidates if model in ep.metrics.active_models)
    return names


# Bound on cached metric children (label sets follow the models clients name).
_MAX_CACHED = 10_000


class Scheduler:
    """Profiles + one profile handler + the request-control plugins that go with them."""

    def __init__(
        self,
        profiles: Sequence[SchedulerProfile],
        handler: ProfileHandler,
        *,
        plugins: Iterable[object] = (),
    ) -> None:
        if not profiles:
            raise ValueError("a scheduler needs at least one profile")
        # Dispatch-time room check (the learned-capacity detector's ``room_at_dispatch``, bound
        # by the runner): a request never goes to a full endpoint while another has room, unless
        # the endpoint holds the request's affinity (the second argument) and a small budget
        # allows it. The third argument asks for a slot the server is known to run (no probe):
        # for a request flow control dispatched from its top band (``TOP_BAND_KEY``).
        self.room_check: Callable[[Endpoint, bool, bool], bool] | None = None
        # Told of every dispatch (the learned-capacity detector's ``record_dispatch``, bound by
        # the runner): its server view counts requests still on their way to the endpoint.
        self.on_dispatch: Callable[[Endpoint], None] | None = None
        self.profiles: dict[str, SchedulerProfile] = {p.name: p for p in profiles}
        self.handler = handler
        seen: dict[int, object] = {}
        for p in profiles:
            members: list[object] = [*p.filters, *(ws.scorer for ws in p.scorers), p.picker]
            for obj in members:
                seen.setdefault(id(obj), obj)
        for extra in (*plugins, handler):  # a handler may have hooks too (disagg's pre-request)
            seen.setdefault(id(extra), extra)
        everything = list(seen.values())
        self.producers = [p for p in everything if isinstance(p, DataProducer)]
        self.admitters = [p for p in everything if isinstance(p, Admitter)]
        self.pre_request_plugins = [p for p in everything if isinstance(p, PreRequest)]
        self.response_plugins = [p for p in everything if isinstance(p, ResponseComplete)]
        self.removal_plugins = [p for p in everything if isinstance(p, EndpointRemoved)]
        self.response_header_processors: list[ResponseHeaderProcessor] = [
            p for p in everything if isinstance(p, ResponseHeaderProcessor)
        ]
        self.response_body_processors: list[ResponseBodyProcessor] = [
            p for p in everything if isinstance(p, ResponseBodyProcessor)
        ]
        self._producer_timers = [
            (p, m.plugin_timer(m.PREPARE_DATA, p.type_name, p.name)) for p in self.producers
        ]
        self._pre_request_timers = [
            (p, m.plugin_timer(m.PRE_REQUEST, p.type_name, p.name))
            for p in self.pre_request_plugins
        ]
        # Attempt counters by (target model, endpoint): labels() per request costs more than inc.
        self._attempts: dict[tuple[str, str, str, int], Any] = {}
        self._e2e_timer = FastHistogram(m.SCHEDULER_E2E_DURATION)
        self._handler_pick_timer = m.plugin_timer(m.PROFILE_PICKER, handler.type_name, handler.name)
        self._handler_proc_timer = m.plugin_timer(
            m.PROCESS_RESULTS, handler.type_name, handler.name
        )

    def schedule(
        self, request: InferenceRequest, candidates: Sequence[Endpoint]
    ) -> SchedulingResult:
        """Choose endpoints for ``request`` among ``candidates`` (primary first, then fallbacks).

        Raises :class:`ResourceExhausted` ("failed to find target endpoint: ...") when no
        profile yields an endpoint.
        """
        start = perf_counter()
        try:
            result = self._schedule(request, candidates)
        except InferenceError as err:
            self._record(start, request, None)
            if isinstance(err, ResourceExhausted):
                raise
            raise ResourceExhausted(f"failed to find target endpoint: {err.msg}") from err
        self._record(start, request, result)
        return result

    def _schedule(
        self, request: InferenceRequest, candidates: Sequence[Endpoint]
    ) -> SchedulingResult:
        if not candidates:
            raise ResourceExhausted("failed to find target endpoint: no candidate endpoints")
        for producer, timer in self._producer_timers:
            t = perf_counter()
            producer.prepare(request, candidates)
            timer.observe(perf_counter() - t)
        candidates = self._with_room(request, candidates)
        results: dict[str, ProfileRunResult | None] = {}
        errors: list[str] = []
        while True:
            t = perf_counter()
            names = self.handler.pick_profiles(request, self.profiles, results)
            self._handler_pick_timer.observe(perf_counter() - t)
            names = [n for n in names if n not in results]  # a handler cannot loop us forever
            if not names:
                break
            for name in names:
                profile = self.profiles.get(name)
                if profile is None:
                    raise ResourceExhausted(f"failed to find target endpoint: no profile {name!r}")
                try:
                    results[name] = profile.run(request, candidates)
                except NoEndpointsError as err:
                    results[name] = None
                    errors.append(f"profile {name!r}: {err}")
        if not results:
            raise ResourceExhausted(
                "failed to find target endpoint: failed to run any scheduler profile for "
                f"request {request.request_id}"
            )
        t = perf_counter()
        try:
            result = self.handler.process_results(request, results)
        except SchedulingError as err:
            detail = "; ".join([str(err), *errors])
            raise ResourceExhausted(f"failed to find target endpoint: {detail}") from err
        finally:
            self._handler_proc_timer.observe(perf_counter() - t)
        if not result.endpoints:
            raise ResourceExhausted("failed to find target endpoint: no endpoint chosen")
        return result

    def _with_room(
        self, request: InferenceRequest, candidates: Sequence[Endpoint]
    ) -> Sequence[Endpoint]:
        """The candidates with room, when some have and some do not; else all of them.

        Affinity (prefix, LoRA) then chooses among endpoints that can start the request now, so
        it does not queue inside a server, behind requests of any priority. A full endpoint
        stays a candidate only for a request with affinity to it (:func:`affine_endpoints`),
        and only as far as the room check allows (the learned-capacity detector's
        ``affinityBudget``): a cache miss elsewhere costs more than one slot's turnover there.

        A request of flow control's top band (``TOP_BAND_KEY``) first looks for a slot the
        server is known to run: a capacity probe (one slot above what a server was seen to run)
        may be refused, and the request would then queue in the server, behind a whole
        response, while holdback kept a real slot free for it elsewhere.
        """
        room = self.room_check
        if room is None:
            return candidates
        if request.state.get(TOP_BAND_KEY):
            kept = _with_room(request, candidates, lambda ep, affine: room(ep, affine, True))
            if kept:
                return kept
        kept = _with_room(request, candidates, lambda ep, affine: room(ep, affine, False))
        return kept if kept else candidates

    def _record(
        self, start: float, request: InferenceRequest, result: SchedulingResult | None
    ) -> None:
        self._e2e_timer.observe(perf_counter() - start)
        if result is None:
            m.SCHEDULER_ATTEMPTS.labels("failure", request.target_model, "", "", "").inc()
        else:
            self._success_counter(request.target_model, result.endpoints[0]).inc()

    def _success_counter(self, target_model: str, ep: Endpoint) -> Any:
        # Keyed by the label values, not the endpoint: an endpoint's port may change in place.
        key = (target_model, ep.pod_name, ep.namespace, ep.port)
        child = self._attempts.get(key)
        if child is None:
            if len(self._attempts) >= _MAX_CACHED:
                self._attempts.clear()
            child = self._attempts[key] = m.SCHEDULER_ATTEMPTS.labels(
                "success", target_model, ep.pod_name, ep.namespace, str(ep.port)
            )
        return child

    # -- hooks ------------------------------------------------------------------------------------
    def admit_request(self, request: InferenceRequest, candidates: Sequence[Endpoint]) -> None:
        """Admission plugins (llm-d's ``probabilistic-admitter``) may turn the request away."""
        for admitter in self.admitters:
            admitter.admit_request(request, candidates)

    def pre_request(self, request: InferenceRequest, result: SchedulingResult) -> None:
        """The request is about to go to ``result.endpoints[0]`` (upstream's PreRequest)."""
        if self.on_dispatch is not None and result.endpoints:
            self.on_dispatch(result.endpoints[0])
        for plugin, timer in self._pre_request_timers:
            t = perf_counter()
            plugin.pre_request(request, result)
            timer.observe(perf_counter() - t)

    def response_complete(self, request: InferenceRequest, endpoint: Endpoint) -> None:
        """The response from ``endpoint`` ended (success, error or cancel)."""
        for plugin in self.response_plugins:
            plugin.response_complete(request, endpoint)

    def process_response_headers(
        self,
        request: InferenceRequest,
        headers: dict[str, str],
        metadata: Mapping[str, Mapping[str, str]],
    ) -> None:
        """Let response-header plugins (e.g. the conformance verifier) edit ``headers``."""
        for plugin in self.response_header_processors:
            plugin.process_response_headers(request, headers, metadata)

    def process_response_body(
        self,
        request: InferenceRequest | None,
        usage: Usage | None,
        end_of_stream: bool,
    ) -> dict[str, dict[str, Any]]:
        """Run the response-body plugins (``request-attribute-reporter``): the dynamic metadata
        they wrote, by namespace (empty when none wrote any)."""
        metadata: dict[str, dict[str, Any]] = {}
        for plugin in self.response_body_processors:
            plugin.process_response_body(request, usage, end_of_stream, metadata)
        return metadata

    def remove_endpoint(self, endpoint: Endpoint) -> None:
        """Forget index state kept for an endpoint that left the pool."""
        for plugin in self.removal_plugins:
            plugin.remove_endpoint(endpoint)

    def __repr__(self) -> str:
        return f"Scheduler({list(self.profiles.values())}, handler={self.handler.name})"


def _with_room(
    request: InferenceRequest,
    candidates: Sequence[Endpoint],
    room: Callable[[Endpoint, bool], bool],
) -> Sequence[Endpoint]:
    """The candidates ``room`` keeps (all of them when it keeps every one): first without
    affinity, then, where some are full, with the request's affinity to each."""
    kept = [ep for ep in candidates if room(ep, False)]
    if len(kept) == len(candidates):
        return candidates
    affine = affine_endpoints(request, candidates)
    if affine:
        kept = [ep for ep in candidates if room(ep, ep.name in affine)]
    return kept
