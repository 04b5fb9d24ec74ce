"""The scheduling framework's extension points and result types.

A *profile* runs filters in order, then weighted scorers, then exactly one picker (upstream's
``SchedulerProfile.Run``). A *profile handler* chooses which profiles run and merges their
results. Plugins know only these types, the request and the endpoints; they never import the
config, the director or any front.

Scores travel as plain lists aligned with the endpoint list, not dicts: scheduling runs per
request and a list index is the cheapest association Python has.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from endpoint_picker.datastore import Endpoint
from endpoint_picker.requests.types import InferenceRequest, Usage

# ``request.state`` key of a traced request: profiles append (plugin name, extension point,
# start, end) in perf_counter seconds, from which the tracer makes one span per plugin.
TRACE_KEY = "_trace_plugins"

# ``request.state`` key of the headers that pre-request plugins want on the forwarded request
# (name -> value; llm-d's ``x-prefiller-host-port``): the director adds them.
FORWARD_HEADERS_KEY = "_forward_headers"


@dataclass(slots=True)
class PrefixMatch:
    """One request's prefix data, left in ``request.state`` by a prefix producer (approximate
    or precise): its block hashes and the blocks matched per endpoint name. The scheduler reads
    it too: a request's prefix match decides where it may wait for a full endpoint."""

    block_size_tokens: int
    hashes: list[int]
    matches: dict[str, int]

    @property
    def total(self) -> int:
        return len(self.hashes)


class SchedulingError(Exception):
    """A profile or profile handler could not produce a result (the scheduler maps it to 429)."""


class Plugin(Protocol):
    """Every plugin has its upstream type name and an instance name (default: the type)."""

    type_name: str
    name: str


@runtime_checkable
class Filter(Plugin, Protocol):
    def filter(self, request: InferenceRequest, endpoints: list[Endpoint]) -> list[Endpoint]:
        """Return the endpoints that may serve ``request`` (a subset, order kept)."""
        ...


@runtime_checkable
class Scorer(Plugin, Protocol):
    def score(self, request: InferenceRequest, endpoints: list[Endpoint]) -> list[float]:
        """One score in [0, 1] per endpoint, aligned with ``endpoints``."""
        ...


@runtime_checkable
class Picker(Plugin, Protocol):
    def pick(
        self, request: InferenceRequest, endpoints: list[Endpoint], scores: list[float]
    ) -> list[Endpoint]:
        """Choose the target endpoints, best first (the rest are fallbacks)."""
        ...


@runtime_checkable
class DataProducer(Plugin, Protocol):
    def prepare(self, request: InferenceRequest, endpoints: Sequence[Endpoint]) -> None:
        """Compute per-request data (into ``request.state``) before any profile runs."""
        ...


@runtime_checkable
class PreRequest(Plugin, Protocol):
    def pre_request(self, request: InferenceRequest, result: SchedulingResult) -> None:
        """Called once the request is about to be sent to ``result``'s primary endpoint."""
        ...


@runtime_checkable
class Admitter(Plugin, Protocol):
    def admit_request(self, request: InferenceRequest, endpoints: Sequence[Endpoint]) -> None:
        """Raise an InferenceError (e.g. 429) to turn ``request`` away before scheduling."""
        ...


@runtime_checkable
class ResponseComplete(Plugin, Protocol):
    def response_complete(self, request: InferenceRequest, endpoint: Endpoint) -> None:
        """Called once the response from ``endpoint`` has ended (success or not)."""
        ...


@runtime_checkable
class EndpointRemoved(Plugin, Protocol):
    def remove_endpoint(self, endpoint: Endpoint) -> None:
        """Drop any state kept for an endpoint that left the pool."""
        ...


@runtime_checkable
class ResponseHeaderProcessor(Plugin, Protocol):
    def process_response_headers(
        self,
        request: InferenceRequest,
        headers: dict[str, str],
        metadata: Mapping[str, Mapping[str, str]],
    ) -> None:
        """Add or change response ``headers``; ``metadata`` is the request's dynamic metadata
        by namespace (e.g. ``envoy.lb``), as the gateway sent it."""
        ...


@runtime_checkable
class ResponseBodyProcessor(Plugin, Protocol):
    def process_response_body(
        self,
        request: InferenceRequest | None,
        usage: Usage | None,
        end_of_stream: bool,
        metadata: dict[str, dict[str, Any]],
    ) -> None:
        """Write values for the gateway into ``metadata`` (namespace -> key -> value), which
        ext_proc returns as the body answer's dynamic metadata. ``request`` is None for a
        stream that began with the response; ``usage`` is the response's so far."""
        ...


@dataclass(slots=True)
class WeightedScorer:
    scorer: Scorer
    weight: float = 1.0


@dataclass(slots=True)
class ProfileRunResult:
    """What one profile chose: target endpoints, best first.

    ``candidates`` (after filters), ``scores`` (scorer name, weight, one score per candidate)
    and ``totals`` say why: the status page shows them per decision. They are the lists the
    profile computed anyway, kept by reference, not copies.
    """

    endpoints: list[Endpoint]
    candidates: list[Endpoint] = field(default_factory=list)
    scores: list[tuple[str, float, list[float]]] = field(default_factory=list)
    totals: list[float] = field(default_factory=list)


@dataclass(slots=True)
class SchedulingResult:
    """The scheduler's answer. ``endpoints`` = the primary profile's picks, primary first.

    ``destination_port``: send to this port of the chosen endpoints instead of theirs (llm-d's
    data-parallel handler picks a rank; the pod's primary port receives the request)."""

    profile_results: dict[str, ProfileRunResult | None]
    primary_profile_name: str
    endpoints: list[Endpoint] = field(default_factory=list)
    destination_port: int | None = None

    @property
    def primary(self) -> Endpoint:
        return self.endpoints[0]


class Profile(Protocol):
    """What a profile handler sees of a profile (see :class:`SchedulerProfile`)."""

    name: str


@runtime_checkable
class ProfileHandler(Plugin, Protocol):
    def pick_profiles(
        self,
        request: InferenceRequest,
        profiles: Mapping[str, Profile],
        results: Mapping[str, ProfileRunResult | None],
    ) -> list[str]:
        """Names of the profiles to run next; an empty list ends the scheduling cycle."""
        ...

    def process_results(
        self, request: InferenceRequest, results: Mapping[str, ProfileRunResult | None]
    ) -> SchedulingResult:
        """Merge profile results into the final answer (raise on failure)."""
        ...
