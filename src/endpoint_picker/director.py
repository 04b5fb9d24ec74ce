"""One request's journey: parse, objective, admit, candidates, schedule, respond, account.

The director takes and returns plain Python values (header dicts, body bytes, a context object),
never protobuf messages or HTTP objects: every front (Envoy ext_proc, the fast ext_authz front, an
in-process transport) drives the same policy through these four calls, so behaviour cannot drift
between fronts. The cut is here on purpose: fronts translate, the director decides.

Accounting invariants: every context handed out by :meth:`Director.handle_request` is finished
exactly once (:meth:`Director.finish` is idempotent), and finishing releases the in-flight load
the request put on its endpoint, then wakes flow control, which may now dispatch. The other half:
a dispatched request is scheduled and counted in flight *inside* admission, by the synchronous
``dispatch`` callback :meth:`Admission.admit` runs, so flow control never measures saturation
between a dispatch and its accounting, whatever a later edit adds to this module.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from time import perf_counter
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from endpoint_picker import latency, request_log
from endpoint_picker import metrics as m
from endpoint_picker.clock import SYSTEM_CLOCK, Clock
from endpoint_picker.datalayer.freshness import DEFAULT_STALENESS_THRESHOLD
from endpoint_picker.datalayer.freshness import candidates as ready_candidates
from endpoint_picker.datastore import Datastore, Endpoint
from endpoint_picker.errors import Code, InferenceError, Internal, ServiceUnavailable
from endpoint_picker.metrics import FastHistogram
from endpoint_picker.requests.common import base_request
from endpoint_picker.requests.registry import PARSER_KEY
from endpoint_picker.requests.rewrite import pick_target, rewrite_model_name
from endpoint_picker.requests.types import (
    CHARS_PER_TOKEN,
    DESTINATION_HEADER,
    DESTINATION_NAMESPACE,
    DESTINATION_SERVED_HEADER,
    REQUEST_ID_HEADER,
    InferenceRequest,
    Usage,
)
from endpoint_picker.scheduling.framework import FORWARD_HEADERS_KEY, TRACE_KEY

if TYPE_CHECKING:
    from endpoint_picker.tracing import RequestTracer

log = logging.getLogger(__name__)

# Bound on cached metric children (label sets follow the models clients name).
_MAX_SERIES = 10_000


class Parser(Protocol):
    def parse(self, headers: dict[str, str], body: bytes, path: str = "") -> InferenceRequest: ...

    def usage_tracker(self, content_type: str | None = None) -> UsageSink | None: ...


T = TypeVar("T")


class Admission(Protocol):
    async def admit(self, request: InferenceRequest, dispatch: Callable[[], T]) -> T:
        """Wait for the request's turn, then return ``dispatch()``, called before the next
        dispatch decision; raise the client-facing error of any other outcome."""
        ...


class SchedulingResult(Protocol):
    endpoints: list[Endpoint]


class Scheduler(Protocol):
    def schedule(
        self, request: InferenceRequest, candidates: Sequence[Endpoint]
    ) -> SchedulingResult: ...

    def admit_request(self, request: InferenceRequest, candidates: Sequence[Endpoint]) -> None: ...

    def pre_request(self, request: InferenceRequest, result: Any) -> None: ...

    def response_complete(self, request: InferenceRequest, endpoint: Endpoint) -> None: ...

    def process_response_headers(
        self,
        request: InferenceRequest,
        headers: dict[str, str],
        metadata: dict[str, dict[str, str]],
    ) -> None: ...


class DecisionSink(Protocol):
    """Where the director reports decisions and outcomes (the status page's log)."""

    def record(self, request: InferenceRequest, result: Any, waited: float) -> None: ...

    def outcome(self, request: InferenceRequest | None, status: str) -> None: ...


class UsageSink(Protocol):
    def feed(self, chunk: bytes) -> None: ...

    @property
    def usage(self) -> Usage | None: ...


@dataclass(slots=True)
class _Series:
    """One (model, target model) pair's labelled metric children, looked up once.

    ``labels()`` takes a lock and walks a dict per call; the director records about ten
    samples per request, so the lookups cost more than the samples themselves. Histograms are
    wrapped in ``FastHistogram`` (same samples, a fraction of ``observe()``'s cost).
    """

    request_sizes: Any
    response_sizes: Any
    duration: Any
    input_tokens: Any
    output_tokens: Any
    cached_tokens: Any
    ntpot: Any
    ttft: Any
    tpot: Any
    running: Any  # None when the request named no model

    @classmethod
    def of(cls, model: str, target: str) -> _Series:
        labels = (model, target)
        return cls(
            FastHistogram(m.REQUEST_SIZES.labels(*labels)),
            FastHistogram(m.RESPONSE_SIZES.labels(*labels)),
            FastHistogram(m.REQUEST_DURATION.labels(*labels)),
            FastHistogram(m.INPUT_TOKENS.labels(*labels)),
            FastHistogram(m.OUTPUT_TOKENS.labels(*labels)),
            FastHistogram(m.CACHED_TOKENS.labels(*labels)),
            FastHistogram(m.NTPOT.labels(*labels)),
            FastHistogram(m.REQUEST_TTFT.labels(*labels)),
            FastHistogram(m.REQUEST_TPOT.labels(*labels)),
            m.RUNNING_REQUESTS.labels(model) if model else None,
        )


@dataclass(eq=False)
class RequestContext:
    """What a front needs to forward one request, and what the director needs to finish it."""

    request: InferenceRequest
    destination: str  # comma-joined "ip:port" list, primary first
    body: bytes  # the request body to forward
    headers_to_set: dict[str, str] = field(default_factory=dict)
    endpoint: Endpoint | None = None
    received_at: float = 0.0
    dispatched_at: float = 0.0  # left flow control (clock time): the wait's end
    first_byte_at: float = 0.0  # first response body bytes: the TTFT mark
    response_status: int = 0
    response_bytes: int = 0
    streaming: bool = False
    content_type: str | None = None
    usage: Usage | None = None
    finished: bool = False
    _tracker: UsageSink | None = None
    _no_tracker: bool = False
    _inflight_tokens: int = 0
    # Tracing (only for a sampled request): the request's span, and when the response began.
    span: Any = None
    response_started: float = 0.0
    # For the gateway, as ext_proc dynamic metadata (namespace -> key -> value): the primary
    # profile's score per candidate "ip:port" (--emit-endpoint-scores), and what response-body
    # plugins (request-attribute-reporter) reported, which rides on every later body answer.
    endpoint_scores: dict[str, float] | None = None
    response_metadata: dict[str, dict[str, Any]] | None = None
    _reported_usage: Any = None
    _reported: bool = False


class Director:
    def __init__(
        self,
        datastore: Datastore,
        parser: Parser,
        admission: Admission,
        scheduler: Scheduler,
        *,
        clock: Clock = SYSTEM_CLOCK,
        disable_subset_filter: bool = False,
        decisions: DecisionSink | None = None,
        tracer: RequestTracer | None = None,
        staleness_threshold: float = DEFAULT_STALENESS_THRESHOLD,
    ) -> None:
        self.datastore = datastore
        self.staleness_threshold = staleness_threshold  # --metrics-staleness-threshold: "ready"
        self.decisions = decisions
        self.tracer = tracer
        self.parser = parser
        self.admission = admission
        self.scheduler = scheduler
        self.clock = clock
        self.disable_subset_filter = disable_subset_filter
        # llm-d-router's --emit-endpoint-scores: keep each decision's scores for the front.
        self.emit_endpoint_scores = False
        # Response-body plugins run only when configured: no per-chunk cost otherwise.
        self._body_plugins = bool(getattr(scheduler, "response_body_processors", None))
        # Counters of every outcome, so totals can be reconciled with clients (demo, benchmarks).
        self.outcomes: dict[str, int] = {}
        self._series: dict[tuple[str, str], _Series] = {}
        self._totals: dict[tuple[str, str, int], Any] = {}

    # -- request path ------------------------------------------------------------------------------
    async def handle_request(
        self,
        headers: dict[str, str],
        body: bytes,
        *,
        has_body: bool = True,
        subset_hint: list[str] | None = None,
    ) -> RequestContext:
        """Decide when and where a request goes. Raises :class:`InferenceError` to answer it."""
        received = self.clock.now()
        if not has_body:
            return self._header_only(headers, received)
        request: InferenceRequest | None = None
        span = self.tracer.start(headers, perf_counter()) if self.tracer is not None else None
        t0 = t1 = 0.0  # phase boundaries, taken only for a traced request
        try:
            if span is not None:
                t0 = perf_counter()
            request = self.parser.parse(headers, body, headers.get(":path", ""))
            self._apply_rewrite(request)
            request.priority = self.datastore.priority_of(request.objective)
            admitted = request
            trace = None
            if span is not None:
                t1 = perf_counter()
                request.state[TRACE_KEY] = []
                trace = (span, t0, t1)
            return await self.admission.admit(
                request, lambda: self._dispatch(admitted, body, received, subset_hint, trace)
            )
        except InferenceError as err:
            self._count_error(request, err.code.value)
            request_log.rejected(
                request,
                err.code.value,
                err.msg,
                err.http_status or 500,
                wait=self.clock.now() - received,
            )
            if span is not None:
                self._trace_phases(span, request, t0, t1, 0.0)
                self._end_span(span, f"{err.code.value}: {err.msg}")
            raise
        except asyncio.CancelledError:
            # The client went away while queued; flow control has already dropped the request.
            self._outcome(request, "cancelled")
            if span is not None:
                self._trace_phases(span, request, t0, t1, 0.0)
                self._end_span(span, "cancelled")
            raise

    def _dispatch(
        self,
        request: InferenceRequest,
        body: bytes,
        received: float,
        subset_hint: list[str] | None,
        trace: tuple[Any, float, float] | None = None,
    ) -> RequestContext:
        """Schedule an admitted request and count it in flight: synchronous by design, run by
        admission itself, so the next admission decision sees this request's load.
        ``trace``: the request's span and its parse start and end, when it is traced."""
        t2 = perf_counter() if trace is not None else 0.0
        candidates = ready_candidates(
            self._candidates(subset_hint), self.clock.now(), self.staleness_threshold
        )
        if not candidates:
            raise ServiceUnavailable("failed to find endpoint candidates for serving the request")
        self.scheduler.admit_request(request, candidates)
        result = self.scheduler.schedule(request, candidates)
        if not result.endpoints:
            raise Internal("scheduler returned no endpoints")
        self.scheduler.pre_request(request, result)
        if self.decisions is not None:
            self.decisions.record(request, result, self.clock.now() - received)
        forward = self._rewrite_body(request, body)
        primary = result.endpoints[0]
        ctx = RequestContext(
            request=request,
            destination=_destination(result),
            body=forward,
            endpoint=primary,
            received_at=received,
            dispatched_at=self.clock.now(),
            streaming=request.stream,
        )
        ctx.headers_to_set[REQUEST_ID_HEADER] = request.request_id
        if self.emit_endpoint_scores:
            ctx.endpoint_scores = _endpoint_scores(result)
        forward_headers = request.state.get(FORWARD_HEADERS_KEY)
        if forward_headers:  # e.g. llm-d's x-prefiller-host-port from disagg-profile-handler
            ctx.headers_to_set.update(forward_headers)
        if trace is not None:
            span, t0, t1 = trace
            self._trace_phases(span, request, t0, t1, t2)
            ctx.span = span
            span.set_attribute("endpoint", primary.hostport)
            self.tracer.propagate(span, ctx.headers_to_set)  # type: ignore[union-attr]
        ctx._inflight_tokens = len(request.prompt_text) // CHARS_PER_TOKEN + (
            request.max_tokens or 0
        )
        primary.inflight_requests += 1
        primary.inflight_tokens += ctx._inflight_tokens
        primary.dispatched_since_scrape += 1
        self._total(request).inc()
        series = self._series_of(request)
        series.request_sizes.observe(len(forward))
        if series.running is not None:
            series.running.inc()
        return ctx

    def _series_of(self, request: InferenceRequest) -> _Series:
        key = (request.incoming_model, request.target_model)
        series = self._series.get(key)
        if series is None:
            if len(self._series) >= _MAX_SERIES:
                self._series.clear()
            series = self._series[key] = _Series.of(*key)
        return series

    def _total(self, request: InferenceRequest) -> Any:
        key = (request.incoming_model, request.target_model, request.priority)
        child = self._totals.get(key)
        if child is None:
            if len(self._totals) >= _MAX_SERIES:
                self._totals.clear()
            child = self._totals[key] = m.REQUEST_TOTAL.labels(*key[:2], str(key[2]))
        return child

    def _header_only(self, headers: dict[str, str], received: float) -> RequestContext:
        # Upstream picks a uniformly random endpoint for body-less requests (e.g. GET /v1/models).
        endpoints = self.datastore.endpoints()
        if not endpoints:
            raise Internal("no pods available in datastore")
        request = base_request(headers, b"")
        ctx = RequestContext(
            request=request,
            destination=random.choice(endpoints).hostport,
            body=b"",
            received_at=received,
            finished=True,  # nothing to account for
        )
        ctx.headers_to_set[REQUEST_ID_HEADER] = request.request_id
        return ctx

    def _candidates(self, subset_hint: list[str] | None) -> Sequence[Endpoint]:
        endpoints = self.datastore.endpoints()
        if self.disable_subset_filter or subset_hint is None:
            return endpoints
        # The hint lists "ip:port" strings; upstream matches on IP only (all ranks of a pod).
        ips = {h.rsplit(":", 1)[0].strip("[]") for h in subset_hint if isinstance(h, str)}
        return [ep for ep in endpoints if ep.address in ips]

    def _apply_rewrite(self, request: InferenceRequest) -> None:
        """An InferenceModelRewrite rule for the requested model draws the target model by
        weight; as upstream it wins over the rewrite header, and only JSON bodies change."""
        if request.body is None or not request.incoming_model:
            return
        found = self.datastore.rewrites.rule_for(request.incoming_model)
        if found is None:
            return
        name, rule = found
        target = pick_target(rule)
        if target:
            request.target_model = target
            m.MODEL_REWRITE_DECISIONS.labels(name, request.incoming_model, target).inc()

    @staticmethod
    def _rewrite_body(request: InferenceRequest, body: bytes) -> bytes:
        # Re-serialise only when the model name really changes (upstream always does; we keep the
        # client's bytes otherwise, which is cheaper and byte-exact).
        if request.body is None or request.target_model == request.incoming_model:
            return body
        request.body["model"] = request.target_model
        return json.dumps(request.body, separators=(",", ":")).encode()

    def response_only(self) -> RequestContext:
        """A context for a stream that begins with the response (the gateway sent no request
        phase): nothing was routed or is in flight, but the response is still read for usage,
        given to response-body plugins and counted, under empty model labels, as upstream's
        hermetic "SSE token counting" case expects."""
        request = InferenceRequest(request_id="", headers={})
        return RequestContext(
            request=request, destination="", body=b"", received_at=self.clock.now()
        )

    # -- response path -----------------------------------------------------------------------------
    def handle_response_headers(
        self, ctx: RequestContext, headers: dict[str, str]
    ) -> dict[str, str]:
        """Record status and content type; returns headers that response plugins add or change."""
        status = headers.get(":status") or headers.get("status") or "200"
        if ctx.span is not None:
            ctx.response_started = perf_counter()
        ctx.response_status = int(status) if status.isdigit() else 0
        ctx.content_type = headers.get("content-type")
        if ctx.content_type and "text/event-stream" in ctx.content_type:
            ctx.streaming = True
        served = headers.get(DESTINATION_SERVED_HEADER)
        if served and ctx.endpoint is not None and served != ctx.destination.split(",")[0]:
            self._move_load(ctx, served)
        edited = dict(headers)
        metadata = {DESTINATION_NAMESPACE: {DESTINATION_SERVED_HEADER: served}} if served else {}
        self.scheduler.process_response_headers(ctx.request, edited, metadata)
        return {k: v for k, v in edited.items() if headers.get(k) != v}

    def record_response(
        self,
        ctx: RequestContext,
        *,
        response_bytes: int,
        duration_s: float | None = None,
        usage: Usage | None = None,
    ) -> None:
        """What a front that never sees the response body measured (see ``DirectorLike``).

        ``duration_s`` is the proxy's own (client's first byte to last byte sent), so a late
        report (the access log's flush interval) does not lengthen the recorded duration.
        ``usage`` (an estimate) counts only when no body was parsed for the real one.
        """
        if ctx.finished:
            return
        ctx.response_bytes = response_bytes
        if duration_s is not None:
            ctx.received_at = self.clock.now() - duration_s
        if usage is not None and ctx._tracker is None:
            ctx.usage = usage

    def handle_response_body(self, ctx: RequestContext, chunk: bytes, end_of_stream: bool) -> bytes:
        ctx.response_bytes += len(chunk)
        if chunk and not ctx.first_byte_at:
            ctx.first_byte_at = self.clock.now()
        if ctx._tracker is None and not ctx._no_tracker:
            # With several parsers (requests/registry.py), the one that parsed the request.
            parser = ctx.request.state.get(PARSER_KEY) or self.parser
            ctx._tracker = parser.usage_tracker(ctx.content_type)
            ctx._no_tracker = ctx._tracker is None
        if ctx._tracker is not None:
            ctx._tracker.feed(chunk)
        if self._body_plugins and (ctx.streaming or end_of_stream):
            self._report(ctx, end_of_stream)
        req = ctx.request
        if req.incoming_model and req.target_model and req.incoming_model != req.target_model:
            chunk = rewrite_model_name(chunk, req.target_model, req.incoming_model)
        if end_of_stream:
            self.finish(ctx)
        return chunk

    def _report(self, ctx: RequestContext, end_of_stream: bool) -> None:
        """Run the response-body plugins as upstream does on each streamed chunk (a held JSON
        body: once, at its end), with the usage so far; skipped while the usage is the one
        they already saw, since their answer depends on nothing else."""
        usage = ctx._tracker.usage if ctx._tracker is not None else ctx.usage
        if ctx._reported and usage is ctx._reported_usage:
            return
        ctx._reported, ctx._reported_usage = True, usage
        metadata = self.scheduler.process_response_body(  # type: ignore[attr-defined]
            ctx.request, usage, end_of_stream
        )
        ctx.response_metadata = metadata or None

    def finish(self, ctx: RequestContext, *, error: BaseException | None = None) -> None:
        """Close a request's books: exactly once, whatever happened to the stream."""
        if ctx.finished:
            return
        ctx.finished = True
        req = ctx.request
        series = self._series_of(req)
        ep = ctx.endpoint
        if ep is not None:
            ep.inflight_requests = max(0, ep.inflight_requests - 1)
            ep.inflight_tokens = max(0, ep.inflight_tokens - ctx._inflight_tokens)
            self.scheduler.response_complete(req, ep)
        if series.running is not None:
            series.running.dec()
        outcome = "completed"
        if error is not None or (ctx.response_status and ctx.response_status >= 400):
            outcome = Code.MODEL_SERVER_ERROR.value if error is None else _error_code(error)
            self._count_error(req, outcome)
        else:
            self._outcome(req, outcome)
        duration = self.clock.now() - ctx.received_at
        request_log.finished(
            req,
            ep.hostport if ep is not None else "",
            outcome,
            ctx.response_status,
            wait=ctx.dispatched_at - ctx.received_at,
            ttft=ctx.first_byte_at - ctx.received_at if ctx.first_byte_at else None,
            duration=duration,
        )
        series.duration.observe(duration)
        series.response_sizes.observe(ctx.response_bytes)
        usage = ctx._tracker.usage if ctx._tracker is not None else ctx.usage
        ctx.usage = usage
        if usage is not None:
            series.input_tokens.observe(usage.prompt_tokens)
            series.output_tokens.observe(usage.completion_tokens)
            if usage.cached_tokens is not None:
                series.cached_tokens.observe(usage.cached_tokens)
            if usage.completion_tokens > 0:
                series.ntpot.observe(duration / usage.completion_tokens)
        if ctx.first_byte_at and error is None:
            self._record_latency(ctx, series, usage)
        if ctx.span is not None:
            self._trace_response(ctx, error)
        notify = getattr(self.admission, "notify", None)
        if notify is not None:
            notify()

    # -- tracing (only for sampled requests; see endpoint_picker.tracing) ------------------------
    def _trace_phases(
        self, span: Any, request: InferenceRequest | None, t0: float, t1: float, t2: float
    ) -> None:
        tracer = self.tracer
        assert tracer is not None
        now = perf_counter()
        if request is None:  # parsing failed
            tracer.child(span, "gateway.request.parse", t0, now)
            return
        span.set_attributes(
            {
                "request_id": request.request_id,
                "model": request.incoming_model,
                "target_model": request.target_model,
                "objective": request.objective or "",
                "priority": request.priority,
                "fairness_id": request.fairness_id,
            }
        )
        tracer.child(span, "gateway.request.parse", t0, t1)
        if t2:
            tracer.child(span, "gateway.flow_control.wait", t1, t2)
            tracer.scheduling(span, t2, now, request.state.pop(TRACE_KEY, []))
        else:  # not dispatched: the wait ended with the error
            tracer.child(span, "gateway.flow_control.wait", t1, now)

    def _trace_response(self, ctx: RequestContext, error: BaseException | None) -> None:
        tracer = self.tracer
        assert tracer is not None
        span = ctx.span
        if ctx.response_started:
            tracer.child(
                span,
                "gateway.response",
                ctx.response_started,
                perf_counter(),
                status=ctx.response_status,
            )
        span.set_attribute("http.response.status_code", ctx.response_status)
        if error is not None:
            self._end_span(span, repr(error))
        else:
            failed = ctx.response_status >= 400
            self._end_span(span, f"status {ctx.response_status}" if failed else None)
        ctx.span = None

    def _end_span(self, span: Any, error: str | None) -> None:
        assert self.tracer is not None
        self.tracer.end(span, perf_counter(), error)

    def _record_latency(self, ctx: RequestContext, series: _Series, usage: Usage | None) -> None:
        """TTFT: the first response bytes' time; TPOT, for a streamed answer of more than one
        token: the time after them divided by the tokens after the first (``latency``)."""
        req = ctx.request
        tpot = None
        if ctx.streaming and usage is not None and usage.completion_tokens > 1:
            tpot = (self.clock.now() - ctx.first_byte_at) / (usage.completion_tokens - 1)
        labels = (req.incoming_model, req.target_model)
        latency.record(
            (series.ttft, series.tpot),
            labels,
            req.headers,
            ctx.first_byte_at - ctx.received_at,
            tpot,
        )

    def _move_load(self, ctx: RequestContext, served: str) -> None:
        """Envoy used a fallback endpoint: move the in-flight load to the one that serves."""
        other = self.datastore.endpoint_by_hostport(served)
        if other is None or ctx.endpoint is None:
            return
        ctx.endpoint.inflight_requests = max(0, ctx.endpoint.inflight_requests - 1)
        ctx.endpoint.inflight_tokens = max(0, ctx.endpoint.inflight_tokens - ctx._inflight_tokens)
        other.inflight_requests += 1
        other.inflight_tokens += ctx._inflight_tokens
        ctx.endpoint = other

    def _outcome(self, request: InferenceRequest | None, status: str) -> None:
        self.outcomes[status] = self.outcomes.get(status, 0) + 1
        if self.decisions is not None:
            self.decisions.outcome(request, status)

    def _count_error(self, request: InferenceRequest | None, code: str) -> None:
        self._outcome(request, code)
        model = request.incoming_model if request else ""
        target = request.target_model if request else ""
        m.REQUEST_ERRORS.labels(model, target, code).inc()


def _error_code(error: BaseException) -> str:
    if isinstance(error, InferenceError):
        return error.code.value
    return Code.UNKNOWN.value


__all__ = ["DESTINATION_HEADER", "Director", "RequestContext"]


def _endpoint_scores(result: Any) -> dict[str, float] | None:
    """llm-d-router's ``x-gateway-destination-endpoint-scores``: the primary profile's weighted
    total for every candidate it scored ("ip:port" -> score), picked or not; None when no
    profile result carries candidates (e.g. a handler that rebuilt the result)."""
    results = getattr(result, "profile_results", None) or {}
    primary = results.get(getattr(result, "primary_profile_name", ""))
    if primary is None or not primary.candidates or len(primary.totals) != len(primary.candidates):
        return None
    return {
        ep.hostport: total for ep, total in zip(primary.candidates, primary.totals, strict=True)
    }


def _destination(result: SchedulingResult) -> str:
    """The chosen endpoints as Envoy's comma-joined ``ip:port`` list, primary first (on
    ``result.destination_port`` where the handler names one)."""
    port: int | None = getattr(result, "destination_port", None)
    if port is None:
        return ",".join(ep.hostport for ep in result.endpoints)
    return ",".join(ep.hostport.rsplit(":", 1)[0] + f":{port}" for ep in result.endpoints)
