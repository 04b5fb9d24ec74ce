"""The director with real parts: Datastore, openai parser, flow controller and scheduler built
from the default config, on a FakeClock. Only the front is absent (tests call its four methods).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TypeVar

import pytest

from endpoint_picker.api import InferenceObjective
from endpoint_picker.clock import FakeClock
from endpoint_picker.config import build, load_config
from endpoint_picker.config.loader import load_config_text
from endpoint_picker.datastore import Datastore, Endpoint
from endpoint_picker.director import Director, RequestContext
from endpoint_picker.errors import BadRequest, Internal, ResourceExhausted, ServiceUnavailable
from endpoint_picker.flowcontrol import FlowController, Outcome, build_admission
from endpoint_picker.metrics import REGISTRY
from endpoint_picker.requests.types import Usage

OBJECTIVE = "x-gateway-inference-objective"
REWRITE = "x-gateway-model-name-rewrite"
SERVED = "x-gateway-destination-endpoint-served"
T = TypeVar("T")
ADDRESSES = {"a": ("10.0.0.1", 8000), "b": ("10.0.0.2", 8000), "c": ("10.0.0.3", 8000)}


@dataclass
class World:
    director: Director
    datastore: Datastore
    admission: FlowController
    clock: FakeClock

    def endpoint(self, name: str) -> Endpoint:
        ep = self.datastore.endpoint(name)
        assert ep is not None
        return ep

    def scrape(self) -> None:
        """Fresh, idle metrics for every endpoint (an unsaturated pool)."""
        for ep in self.datastore.endpoints():
            ep.metrics.update_time = self.clock.now()


def _objective(name: str, priority: int | None) -> InferenceObjective:
    spec: dict[str, object] = {"poolRef": {"name": "pool"}}
    if priority is not None:
        spec["priority"] = priority
    return InferenceObjective.model_validate(
        {
            "apiVersion": "inference.networking.x-k8s.io/v1alpha2",
            "kind": "InferenceObjective",
            "metadata": {"name": name},
            "spec": spec,
        }
    )


async def _world(*, disable_subset_filter: bool = False, config_text: str | None = None) -> World:
    clock = FakeClock()
    datastore = Datastore()
    datastore.set_static_endpoints(ADDRESSES)
    datastore.set_objective(_objective("critical", 10))
    datastore.set_objective(_objective("sheddable", -10))
    datastore.set_objective(_objective("unset", None))
    cfg = load_config(None) if config_text is None else load_config_text(config_text)
    built = build(cfg, clock=clock)
    admission = build_admission(built.flow_control, built.detector, datastore.endpoints, clock)
    assert isinstance(admission, FlowController)
    await admission.start()
    director = Director(
        datastore,
        built.parser,
        admission,
        built.scheduler,
        clock=clock,
        disable_subset_filter=disable_subset_filter,
    )
    world = World(director, datastore, admission, clock)
    world.scrape()
    return world


@pytest.fixture
async def world() -> AsyncIterator[World]:
    w = await _world()
    yield w
    await w.admission.stop()


def _body(model: str = "m1", prompt: str = "hello world", **extra: object) -> bytes:
    return json.dumps({"model": model, "prompt": prompt, "max_tokens": 8, **extra}).encode()


def _headers(**extra: str) -> dict[str, str]:
    return {":path": "/v1/completions", "x-request-id": str(uuid.uuid4()), **extra}


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# -- priority ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("headers", "priority"),
    [
        ({OBJECTIVE: "critical"}, 10),
        ({OBJECTIVE: "sheddable"}, -10),
        ({OBJECTIVE: "unset"}, 0),  # an objective without a priority
        ({OBJECTIVE: "no-such-objective"}, 0),
        ({}, 0),
    ],
)
async def test_priority_comes_from_the_objective(
    world: World, headers: dict[str, str], priority: int
) -> None:
    model = f"prio-{uuid.uuid4().hex[:8]}"
    ctx = await world.director.handle_request(_headers(**headers), _body(model))
    assert ctx.request.priority == priority
    labels = {"model_name": model, "target_model_name": model, "priority": str(priority)}
    assert _sample("inference_objective_request_total", **labels) == 1
    world.director.finish(ctx)


# -- candidates ----------------------------------------------------------------------------------
async def test_subset_hint_limits_the_candidates(world: World) -> None:
    for _ in range(5):
        ctx = await world.director.handle_request(
            _headers(), _body(), subset_hint=["10.0.0.2:8000"]
        )
        assert ctx.destination == "10.0.0.2:8000"  # the only candidate, so no fallbacks either
        assert ctx.endpoint is world.endpoint("b")
        world.director.finish(ctx)


async def test_subset_hint_matches_by_ip_as_upstream(world: World) -> None:
    ctx = await world.director.handle_request(_headers(), _body(), subset_hint=["10.0.0.3:1"])
    assert ctx.endpoint is world.endpoint("c")
    world.director.finish(ctx)


@pytest.mark.parametrize("hint", [[], ["10.9.9.9:8000"]])
async def test_an_empty_or_unmatched_subset_is_503(world: World, hint: list[str]) -> None:
    before = world.director.outcomes.get("ServiceUnavailable", 0)
    with pytest.raises(ServiceUnavailable) as err:
        await world.director.handle_request(_headers(), _body(), subset_hint=hint)
    assert err.value.http_status == 503
    assert err.value.body == (
        "inference error: ServiceUnavailable - "
        "failed to find endpoint candidates for serving the request"
    )
    assert world.director.outcomes["ServiceUnavailable"] == before + 1
    assert all(ep.inflight_requests == 0 for ep in world.datastore.endpoints())


async def test_the_subset_filter_can_be_disabled() -> None:
    w = await _world(disable_subset_filter=True)
    try:
        chosen = set()
        for _ in range(6):
            ctx = await w.director.handle_request(_headers(), _body(), subset_hint=[])
            assert ctx.endpoint is not None
            chosen.add(ctx.endpoint.name)
            w.director.finish(ctx)
        assert chosen <= set(ADDRESSES)
        assert chosen  # served despite an empty hint
    finally:
        await w.admission.stop()


# -- in-flight accounting ------------------------------------------------------------------------
async def test_inflight_load_is_released_exactly_once(world: World) -> None:
    body = _body(prompt="x" * 40)  # 10 tokens by the 4-chars rule, plus max_tokens 8
    ctx = await world.director.handle_request(_headers(), body)
    ep = ctx.endpoint
    assert ep is not None
    assert (ep.inflight_requests, ep.inflight_tokens) == (1, 18)
    assert ep.dispatched_since_scrape == 1  # visible to load signals before the next scrape
    other = await world.director.handle_request(_headers(), body)
    assert other.endpoint is not None
    total = sum(e.inflight_requests for e in world.datastore.endpoints())
    assert total == 2
    completed = world.director.outcomes.get("completed", 0)
    world.director.handle_response_headers(ctx, {":status": "200"})
    world.director.handle_response_body(ctx, b'{"usage": null}', True)  # end of stream: finish
    world.director.finish(ctx)  # the front's ``finally`` finishes again: a no-op
    world.director.finish(ctx, error=RuntimeError("late"))
    assert world.director.outcomes["completed"] == completed + 1
    assert sum(e.inflight_requests for e in world.datastore.endpoints()) == 1
    world.director.finish(other)
    world.director.finish(other)
    assert [(e.inflight_requests, e.inflight_tokens) for e in world.datastore.endpoints()] == [
        (0, 0)
    ] * 3
    assert world.director.outcomes["completed"] == completed + 2


async def test_running_requests_gauge_returns_to_zero(world: World) -> None:
    model = f"run-{uuid.uuid4().hex[:8]}"
    contexts = [await world.director.handle_request(_headers(), _body(model)) for _ in range(3)]
    assert _sample("inference_objective_running_requests", model_name=model) == 3
    for ctx in contexts:
        world.director.finish(ctx)
        world.director.finish(ctx)
    assert _sample("inference_objective_running_requests", model_name=model) == 0


async def test_a_fallback_endpoint_takes_over_the_load(world: World) -> None:
    ctx = await world.director.handle_request(_headers(), _body())
    first = ctx.endpoint
    assert first is not None
    other = next(ep for ep in world.datastore.endpoints() if ep is not first)
    world.director.handle_response_headers(ctx, {":status": "200", SERVED: other.hostport})
    assert (first.inflight_requests, other.inflight_requests) == (0, 1)
    world.director.finish(ctx)
    assert other.inflight_requests == 0 and other.inflight_tokens == 0


async def test_a_client_that_leaves_while_queued_is_counted_and_holds_nothing(
    world: World,
) -> None:
    world.clock.advance(60)  # every endpoint's metrics are now stale: the pool is saturated
    task = asyncio.create_task(world.director.handle_request(_headers(), _body()))
    for _ in range(5):
        await asyncio.sleep(0)
    assert world.admission.registry.len == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert world.director.outcomes["cancelled"] == 1
    assert world.admission.outcomes[Outcome.EVICTED_CONTEXT_CANCELLED] == 1
    assert world.admission.registry.len == 0
    assert all(ep.inflight_requests == 0 for ep in world.datastore.endpoints())


# -- bodies and model names ----------------------------------------------------------------------
async def test_the_body_is_forwarded_byte_exact_without_a_rewrite(world: World) -> None:
    body = b'{ "model" : "m1",  "prompt": "spaces kept", "max_tokens": 2 }'
    ctx = await world.director.handle_request(_headers(), body)
    assert ctx.body is body
    world.director.finish(ctx)


async def test_a_model_rewrite_goes_out_and_comes_back(world: World) -> None:
    ctx = await world.director.handle_request(_headers(**{REWRITE: "target"}), _body("asked"))
    assert ctx.request.incoming_model == "asked"
    assert ctx.request.target_model == "target"
    forwarded = json.loads(ctx.body)
    assert forwarded["model"] == "target"
    assert forwarded["prompt"] == "hello world"
    world.director.handle_response_headers(ctx, {":status": "200", "content-type": "x"})
    chunk = b'{"id":"1","model":"target","usage":{"prompt_tokens":3,"completion_tokens":2}}'
    out = world.director.handle_response_body(ctx, chunk, True)
    assert out == chunk.replace(b'"model":"target"', b'"model":"asked"')
    assert ctx.finished


async def test_sse_usage_is_recorded(world: World) -> None:
    model = f"sse-{uuid.uuid4().hex[:8]}"
    ctx = await world.director.handle_request(_headers(), _body(model, stream=True))
    world.director.handle_response_headers(
        ctx, {":status": "200", "content-type": "text/event-stream"}
    )
    assert ctx.streaming
    usage = {"prompt_tokens": 4, "completion_tokens": 7}
    events = [
        b'data: {"choices":[{"text":"a"}],"usage":null}\n\n',
        b'data: {"choices":[],"usage":' + json.dumps(usage).encode() + b"}\n\n",
        b"data: [DONE]\n\n",
    ]
    for i, event in enumerate(events):
        world.director.handle_response_body(ctx, event, i == len(events) - 1)
    assert ctx.usage is not None
    assert (ctx.usage.prompt_tokens, ctx.usage.completion_tokens) == (4, 7)
    labels = {"model_name": model, "target_model_name": model}
    assert _sample("inference_objective_output_tokens_sum", **labels) == 7
    assert _sample("inference_objective_input_tokens_sum", **labels) == 4


async def test_a_front_without_the_body_records_what_its_proxy_measured(world: World) -> None:
    model = f"est-{uuid.uuid4().hex[:8]}"
    ctx = await world.director.handle_request(_headers(), _body(model))
    world.clock.advance(5.0)  # the access log came late; the proxy measured 0.5 s
    world.director.handle_response_headers(ctx, {":status": "200"})
    estimate = Usage(prompt_tokens=3, completion_tokens=6, estimated=True)
    world.director.record_response(ctx, response_bytes=321, duration_s=0.5, usage=estimate)
    world.director.finish(ctx)
    labels = {"model_name": model, "target_model_name": model}
    assert _sample("inference_objective_request_duration_seconds_sum", **labels) == 0.5
    assert _sample("inference_objective_response_sizes_sum", **labels) == 321
    assert _sample("inference_objective_output_tokens_sum", **labels) == 6
    assert ctx.usage is estimate
    # After the books are closed, a late report changes nothing.
    world.director.record_response(ctx, response_bytes=999, duration_s=9.0)
    assert ctx.response_bytes == 321


# -- admission and in-flight accounting ----------------------------------------------------------
class _CheckingAdmission:
    """A FAKE admission that records the pool's in-flight count right after ``dispatch()``
    returns, i.e. before ``admit`` itself returns to the director."""

    def __init__(self, datastore: Datastore) -> None:
        self.datastore = datastore
        self.inflight_after_dispatch: list[int] = []

    async def admit(self, request: object, dispatch: Callable[[], T]) -> T:
        ctx = dispatch()
        self.inflight_after_dispatch.append(
            sum(ep.inflight_requests for ep in self.datastore.endpoints())
        )
        return ctx


async def test_requests_are_counted_in_flight_inside_admission(world: World) -> None:
    # Flow control measures saturation right after a dispatch's caller resumes; the count must
    # already be there, so it happens in the callback admission runs, not after admit returns.
    checking = _CheckingAdmission(world.datastore)
    world.director.admission = checking
    first = await world.director.handle_request(_headers(), _body())
    second = await world.director.handle_request(_headers(), _body())
    assert checking.inflight_after_dispatch == [1, 2]
    world.director.finish(first)
    world.director.finish(second)


# -- disaggregation -----------------------------------------------------------------------------
PD_CONFIG = """
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
featureGates: [flowControl]
plugins:
- type: prefill-filter
- type: decode-filter
- type: prefix-based-pd-decider
  parameters: {nonCachedTokens: 16}
- type: disagg-profile-handler
  parameters: {deciders: {prefill: prefix-based-pd-decider}}
schedulingProfiles:
- name: prefill
  plugins: [{pluginRef: prefill-filter}]
- name: decode
  plugins: [{pluginRef: decode-filter}]
"""


async def test_disaggregated_request_carries_the_prefiller_header() -> None:
    world = await _world(config_text=PD_CONFIG)
    try:
        world.endpoint("a").labels["llm-d.ai/role"] = "prefill"
        for name in ("b", "c"):
            world.endpoint(name).labels["llm-d.ai/role"] = "decode"
        ctx = await world.director.handle_request(_headers(), _body(prompt="long " * 100))
        assert ctx.endpoint is not None and ctx.endpoint.name in ("b", "c")
        assert ctx.headers_to_set["x-prefiller-host-port"] == "10.0.0.1:8000"
        world.director.finish(ctx)
        short = await world.director.handle_request(_headers(), _body(prompt="hi"))
        assert "x-prefiller-host-port" not in short.headers_to_set
        world.director.finish(short)
    finally:
        await world.admission.stop()


DP_CONFIG = """
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
featureGates: [flowControl]
plugins:
- type: data-parallel-profile-handler
  parameters: {primaryPort: 9000}
- type: probabilistic-admitter
schedulingProfiles:
- name: default
  plugins: []
"""


async def test_data_parallel_goes_to_the_primary_port_and_admitter_sheds() -> None:
    world = await _world(config_text=DP_CONFIG)
    try:
        ctx = await world.director.handle_request(_headers(), _body())
        assert ctx.endpoint is not None
        assert ctx.destination.split(",")[0] == f"{ctx.endpoint.address}:9000"
        assert ctx.headers_to_set["x-data-parallel-host-port"] == ctx.endpoint.hostport
        world.director.finish(ctx)
        for ep in world.datastore.endpoints():  # every queue at the admitter's threshold
            ep.metrics.waiting_queue_size = 5
        critical = await world.director.handle_request(_headers(**{OBJECTIVE: "critical"}), _body())
        world.director.finish(critical)
        with pytest.raises(ResourceExhausted, match="probabilistic-admitter"):
            await world.director.handle_request(_headers(**{OBJECTIVE: "sheddable"}), _body())
    finally:
        await world.admission.stop()


# -- header-only requests ------------------------------------------------------------------------
async def test_header_only_requests_go_to_any_endpoint_and_need_no_books(world: World) -> None:
    hostports = {ep.hostport for ep in world.datastore.endpoints()}
    completed = world.director.outcomes.get("completed", 0)
    ctx = await world.director.handle_request({":path": "/v1/models"}, b"", has_body=False)
    assert isinstance(ctx, RequestContext)
    assert ctx.destination in hostports
    assert ctx.finished
    assert ctx.headers_to_set["x-request-id"]  # made up when the client sent none
    world.director.finish(ctx)
    assert world.director.outcomes.get("completed", 0) == completed
    assert all(ep.inflight_requests == 0 for ep in world.datastore.endpoints())


async def test_header_only_without_endpoints_is_an_internal_error(world: World) -> None:
    world.datastore.set_static_endpoints({})
    with pytest.raises(Internal):
        await world.director.handle_request({":path": "/v1/models"}, b"", has_body=False)


# -- errors --------------------------------------------------------------------------------------
@pytest.mark.parametrize("body", [b"{oops", b'{"prompt": "no model"}'])
async def test_parse_errors_are_counted(world: World, body: bytes) -> None:
    before = _sample("inference_objective_request_error_total", error_code="BadRequest",
                     model_name="", target_model_name="")  # fmt: skip
    with pytest.raises(BadRequest):
        await world.director.handle_request(_headers(), body)
    assert world.director.outcomes["BadRequest"] == 1
    after = _sample("inference_objective_request_error_total", error_code="BadRequest",
                    model_name="", target_model_name="")  # fmt: skip
    assert after == before + 1
    assert world.admission.registry.len == 0


async def test_upstream_errors_and_broken_streams_are_counted(world: World) -> None:
    model = f"err-{uuid.uuid4().hex[:8]}"
    labels = {"model_name": model, "target_model_name": model}
    failed = await world.director.handle_request(_headers(), _body(model))
    world.director.handle_response_headers(failed, {":status": "503"})
    world.director.handle_response_body(failed, b"busy", True)
    broken = await world.director.handle_request(_headers(), _body(model))
    world.director.finish(broken, error=ConnectionResetError())
    assert world.director.outcomes["ModelServerError"] == 1
    assert world.director.outcomes["Unknown"] == 1
    assert "completed" not in world.director.outcomes
    errors = "inference_objective_request_error_total"
    assert _sample(errors, **labels, error_code="ModelServerError") == 1
    assert _sample(errors, **labels, error_code="Unknown") == 1
    assert all(ep.inflight_requests == 0 for ep in world.datastore.endpoints())
