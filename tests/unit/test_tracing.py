"""Tracing: one server span per request with parse, flow-control wait, scheduling (one child per
plugin) and response children; context from and to ``traceparent``. Real director, parser, flow
controller and scheduler from the default config; spans go to the SDK's in-memory exporter.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import SpanKind, StatusCode

from endpoint_picker.clock import FakeClock
from endpoint_picker.config import build, load_config
from endpoint_picker.datastore import Datastore
from endpoint_picker.director import Director
from endpoint_picker.errors import InferenceError
from endpoint_picker.flowcontrol import build_admission
from endpoint_picker.tracing import RequestTracer, provider

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


async def _director(tracer: RequestTracer | None) -> tuple[Director, object]:
    clock = FakeClock()
    datastore = Datastore()
    datastore.set_static_endpoints({"a": ("10.0.0.1", 8000), "b": ("10.0.0.2", 8000)})
    for ep in datastore.endpoints():
        ep.metrics.update_time = clock.now()
    built = build(load_config(None), clock=clock)
    admission = build_admission(built.flow_control, built.detector, datastore.endpoints, clock)
    await admission.start()
    director = Director(
        datastore, built.parser, admission, built.scheduler, clock=clock, tracer=tracer
    )
    return director, admission


@pytest.fixture
async def traced() -> AsyncIterator[tuple[Director, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    tracer = RequestTracer(provider(SimpleSpanProcessor(exporter), sampler=ALWAYS_ON))
    director, admission = await _director(tracer)
    yield director, exporter
    await admission.stop()  # type: ignore[attr-defined]


def _body(model: str = "m1") -> bytes:
    return json.dumps({"model": model, "prompt": "hello tracing", "max_tokens": 4}).encode()


async def test_request_spans_children_and_propagation(
    traced: tuple[Director, InMemorySpanExporter],
) -> None:
    director, exporter = traced
    headers = {":path": "/v1/completions", "traceparent": PARENT}
    ctx = await director.handle_request(headers, _body())
    # The model server gets this request's own span as parent, in the same trace.
    forwarded = ctx.headers_to_set["traceparent"]
    assert forwarded.startswith(f"00-{TRACE_ID}-") and forwarded != PARENT
    director.handle_response_headers(ctx, {":status": "200"})
    director.handle_response_body(ctx, b'{"usage":{"prompt_tokens":3}}', True)

    spans = {s.name: s for s in exporter.get_finished_spans()}
    root = spans["gateway.request"]
    assert root.kind is SpanKind.SERVER
    assert format(root.context.trace_id, "032x") == TRACE_ID
    assert root.parent is not None and format(root.parent.span_id, "016x") == "00f067aa0ba902b7"
    assert forwarded.split("-")[2] == format(root.context.span_id, "016x")
    assert root.attributes is not None and root.attributes["model"] == "m1"
    assert root.attributes["http.response.status_code"] == 200
    assert root.status.status_code is not StatusCode.ERROR
    root_id = root.context.span_id
    for name in (
        "gateway.request.parse",
        "gateway.flow_control.wait",
        "gateway.scheduling",
        "gateway.response",
    ):
        parent = spans[name].parent
        assert parent is not None and parent.span_id == root_id
    sched = spans["gateway.scheduling"]
    plugins = [
        s
        for s in exporter.get_finished_spans()
        if s.parent and s.parent.span_id == sched.context.span_id
    ]
    # The default profile: queue, kv-cache and prefix scorers and the picker, one span each.
    names = {str(s.attributes["plugin.name"]) for s in plugins if s.attributes}
    assert {"queue-scorer", "kv-cache-utilization-scorer", "prefix-cache-scorer"} <= names
    assert any(s.name == "gateway.scheduling.picker" for s in plugins)

    def interval(span: ReadableSpan) -> tuple[int, int]:
        assert span.start_time is not None and span.end_time is not None
        return span.start_time, span.end_time

    for s in plugins:  # children lie within their parent's interval
        assert interval(sched)[0] <= interval(s)[0] <= interval(s)[1] <= interval(sched)[1]
    assert interval(root)[0] <= interval(spans["gateway.request.parse"])[0]
    assert interval(spans["gateway.response"])[1] <= interval(root)[1]


async def test_rejected_request_ends_its_span_with_an_error(
    traced: tuple[Director, InMemorySpanExporter],
) -> None:
    director, exporter = traced
    with pytest.raises(InferenceError):
        await director.handle_request({":path": "/v1/completions"}, b"{not json")
    (root,) = [s for s in exporter.get_finished_spans() if s.name == "gateway.request"]
    assert root.status.status_code is StatusCode.ERROR
    assert "gateway.request.parse" in {s.name for s in exporter.get_finished_spans()}


async def test_tracing_off_adds_no_header_and_no_state() -> None:
    director, admission = await _director(None)
    ctx = await director.handle_request(
        {":path": "/v1/completions", "traceparent": PARENT}, _body()
    )
    assert "traceparent" not in ctx.headers_to_set
    assert ctx.span is None and not ctx.request.state.get("_trace_plugins")
    director.finish(ctx)
    await admission.stop()  # type: ignore[attr-defined]
