"""OpenTelemetry tracing of each request's journey, switched on by ``--tracing``.

Configuration is upstream's (GIE's ``InitTracing``) and the standard ``OTEL_*`` variables:
``OTEL_SERVICE_NAME`` (default ``gateway-api-inference-extension/epp``),
``OTEL_TRACES_EXPORTER`` (``otlp``: OTLP/gRPC to ``OTEL_EXPORTER_OTLP_ENDPOINT``, default
``http://localhost:4317``; ``console``: JSON spans on stdout, upstream's default),
``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG`` (default ``parentbased_traceidratio``, 0.1).

Spans per request: ``gateway.request`` (server span; its parent is the client's ``traceparent``
header, and its own context is sent on to the model server in ``traceparent``), with children
``gateway.request.parse``, ``gateway.flow_control.wait``, ``gateway.scheduling`` (one child per
plugin, ``gateway.scheduling.<extension point>``) and ``gateway.response``.

The request path measures these phases anyway; spans are made from those timestamps, so with
tracing off the only cost is one ``is None`` test per phase. Scheduling plugin timings are
recorded only for a traced request (:data:`TRACE_KEY` in ``request.state``).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from opentelemetry import trace
from opentelemetry.propagate import extract, inject
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, Sampler, TraceIdRatioBased
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from endpoint_picker import __version__
from endpoint_picker.scheduling.framework import TRACE_KEY

log = logging.getLogger(__name__)

DEFAULT_SERVICE_NAME = "gateway-api-inference-extension/epp"
DEFAULT_ENDPOINT = "http://localhost:4317"
__all__ = ["TRACE_KEY", "RequestTracer", "from_flag", "provider"]


def _sampler() -> Sampler:
    kind = os.environ.get("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    try:
        ratio = float(os.environ.get("OTEL_TRACES_SAMPLER_ARG", "0.1"))
    except ValueError:
        ratio = 0.1
    if kind == "always_on":
        ratio = 1.0
    elif kind == "always_off":
        ratio = 0.0
    elif kind != "parentbased_traceidratio":
        log.error(
            "unsupported OTEL_TRACES_SAMPLER %r: using parentbased_traceidratio %.2f", kind, ratio
        )
    return ParentBased(TraceIdRatioBased(ratio))


def _exporter() -> SpanExporter:
    kind = os.environ.get("OTEL_TRACES_EXPORTER", "console")
    if kind == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        os.environ.setdefault("OTEL_EXPORTER_OTLP_ENDPOINT", DEFAULT_ENDPOINT)
        return OTLPSpanExporter(insecure=True)
    if kind != "console":
        log.error("unsupported OTEL_TRACES_EXPORTER %r: using console", kind)
    return ConsoleSpanExporter()


def provider(processor: SpanProcessor | None = None, sampler: Sampler | None = None) -> Any:
    """A tracer provider from the ``OTEL_*`` environment (``processor`` replaces the exporter)."""
    os.environ.setdefault("OTEL_SERVICE_NAME", DEFAULT_SERVICE_NAME)
    resource = Resource.create({"service.version": __version__})
    tp = TracerProvider(sampler=sampler or _sampler(), resource=resource)
    tp.add_span_processor(processor or BatchSpanProcessor(_exporter()))
    return tp


class RequestTracer:
    """Makes one request's spans from the timestamps the request path records."""

    def __init__(self, tracer_provider: Any) -> None:
        self.provider = tracer_provider
        self.tracer = tracer_provider.get_tracer("gateway-api-inference-extension", __version__)
        # perf_counter -> epoch nanoseconds (the request path times phases with perf_counter).
        self._offset_ns = time.time_ns() - time.perf_counter_ns()

    def ns(self, perf: float) -> int:
        return self._offset_ns + int(perf * 1e9)

    def start(self, headers: dict[str, str], at: float) -> Span | None:
        """The request's server span, child of the client's ``traceparent`` if it sent one."""
        span: Span = self.tracer.start_span(
            "gateway.request",
            context=extract(headers),
            kind=SpanKind.SERVER,
            start_time=self.ns(at),
        )
        return span if span.is_recording() else None

    def child(self, parent: Span, name: str, t0: float, t1: float, **attrs: Any) -> Span:
        ctx = trace.set_span_in_context(parent)
        span: Span = self.tracer.start_span(
            name, context=ctx, start_time=self.ns(t0), attributes=attrs
        )
        span.end(end_time=self.ns(t1))
        return span

    def scheduling(self, parent: Span, t0: float, t1: float, plugins: list[Any]) -> None:
        span = self.tracer.start_span(
            "gateway.scheduling", context=trace.set_span_in_context(parent), start_time=self.ns(t0)
        )
        ctx = trace.set_span_in_context(span)
        for name, point, p0, p1 in plugins:
            child = self.tracer.start_span(
                f"gateway.scheduling.{point}",
                context=ctx,
                start_time=self.ns(p0),
                attributes={"plugin.name": name, "plugin.extension_point": point},
            )
            child.end(end_time=self.ns(p1))
        span.end(end_time=self.ns(t1))

    @staticmethod
    def propagate(span: Span, headers: dict[str, str]) -> None:
        """Write the span's context into ``headers`` (``traceparent``) for the model server."""
        inject(headers, context=trace.set_span_in_context(span))

    def end(self, span: Span, at: float, error: str | None = None) -> None:
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, error))
        span.end(end_time=self.ns(at))

    def shutdown(self) -> None:
        self.provider.shutdown()


def from_flag(enabled: bool) -> RequestTracer | None:
    """``--tracing``: a tracer from the environment, or None (tracing off)."""
    if not enabled:
        return None
    tracer = RequestTracer(provider())
    log.info(
        "tracing on: exporter %s, sampler %s",
        os.environ.get("OTEL_TRACES_EXPORTER", "console"),
        os.environ.get("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
    )
    return tracer
