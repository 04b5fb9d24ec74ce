"""Issue 18 items 7 and 10: with every endpoint down, requests get 503 within
noEndpointRequestTTL; stale endpoints leave the candidate set and flow control's view."""

from __future__ import annotations

import asyncio

import pytest
from tests.unit.reliability_support import body, headers, make_world, wait_for

from endpoint_picker.clock import FakeClock
from endpoint_picker.datastore import Endpoint
from endpoint_picker.errors import ServiceUnavailable
from endpoint_picker.flowcontrol import FlowControlConfig, FlowController, UtilizationDetector
from endpoint_picker.flowcontrol.types import Outcome
from endpoint_picker.requests.types import InferenceRequest

# A detector that reads only in-flight counts, so the tests see the ready-endpoint rules alone.
CONFIG = """
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: concurrency-detector
  parameters: {maxConcurrency: 100}
saturationDetector: {pluginRef: concurrency-detector}
flowControl: {enabled: true}
"""


def _endpoint(name: str, scraped_at: float) -> Endpoint:
    ep = Endpoint(name=name, pod_name=name, address="10.0.0.1", port=8000)
    ep.metrics.update_time = scraped_at
    return ep


def _request() -> InferenceRequest:
    return InferenceRequest(request_id="r", headers={}, raw_body=b"x")


@pytest.mark.parametrize(
    ("block", "ttl"),
    [
        ({}, 60.0),  # neither set: llm-d-router's 60 s
        ({"defaultRequestTTL": "30s"}, 30.0),  # follows defaultRequestTTL
        ({"defaultRequestTTL": "30s", "noEndpointRequestTTL": "0s"}, 0.0),
        ({"noEndpointRequestTTL": "5m"}, 300.0),
    ],
)
def test_no_endpoint_request_ttl_defaults(block: dict[str, str], ttl: float) -> None:
    assert FlowControlConfig.from_dict(block).no_endpoint_request_ttl == ttl


async def test_with_every_endpoint_down_a_queued_request_gets_503_within_the_ttl() -> None:
    clock = FakeClock()
    eps = [_endpoint("a", clock.now()), _endpoint("b", clock.now())]
    clock.advance(10)  # both stopped answering their scrapes
    fc = FlowController(FlowControlConfig(), UtilizationDetector(), lambda: eps, clock)
    await fc.start()
    try:
        task = asyncio.ensure_future(fc.admit(_request()))
        await wait_for(lambda: fc.registry.len == 1)
        clock.advance(59)
        await asyncio.sleep(0.2)  # a few recheck cycles: still inside the budget
        assert not task.done()
        clock.advance(2)
        with pytest.raises(ServiceUnavailable, match="no ready endpoint"):
            await asyncio.wait_for(task, 10)
        assert fc.outcomes[Outcome.EVICTED_NO_ENDPOINTS] == 1
    finally:
        await fc.stop()


async def test_held_requests_are_released_only_to_ready_endpoints() -> None:
    world = await make_world(CONFIG)
    try:
        a, _ = world.datastore.endpoints()
        world.clock.advance(10)  # both down
        queued = [
            asyncio.ensure_future(world.director.handle_request(headers(), body()))
            for _ in range(5)
        ]
        await wait_for(lambda: world.admission.registry.len == 5)
        a.metrics.update_time = world.clock.now()  # a came back; b is still down
        world.admission.notify()
        ctxs = await asyncio.wait_for(asyncio.gather(*queued), 10)
        assert {ctx.endpoint.name for ctx in ctxs if ctx.endpoint} == {a.name}
        for ctx in ctxs:
            world.director.finish(ctx)
    finally:
        await world.admission.stop()


async def test_an_endpoint_whose_scrapes_fail_leaves_the_candidate_set() -> None:
    world = await make_world(CONFIG)
    try:
        a, b = world.datastore.endpoints()
        chosen: set[str] = set()
        world.clock.advance(2.5)  # b's /metrics has timed out since: stale (over 2 s)
        for _ in range(20):
            world.clock.advance(0.01)
            a.metrics.update_time = world.clock.now()  # a answers every scrape
            a.dispatched_since_scrape = 0
            ctx = await world.director.handle_request(headers(), body())
            assert ctx.endpoint is not None
            chosen.add(ctx.endpoint.name)
            world.director.finish(ctx)
        assert chosen == {a.name}
        b.metrics.update_time = world.clock.now()  # b answers again: back in the set
        for _ in range(20):
            a.dispatched_since_scrape = b.dispatched_since_scrape = 0
            ctx = await world.director.handle_request(headers(), body())
            assert ctx.endpoint is not None
            chosen.add(ctx.endpoint.name)
        assert chosen == {a.name, b.name}
    finally:
        await world.admission.stop()


async def test_the_ready_rule_follows_metrics_staleness_threshold() -> None:
    """With ``--metrics-staleness-threshold 5s`` an endpoint whose last scrape is 2.5 s old is
    still ready: it keeps its share, where the default 2 s would have dropped it."""
    world = await make_world(CONFIG, staleness=5.0)
    try:
        a, b = world.datastore.endpoints()
        world.clock.advance(2.5)
        a.metrics.update_time = world.clock.now()
        chosen: set[str] = set()
        for _ in range(20):
            a.dispatched_since_scrape = b.dispatched_since_scrape = 0
            ctx = await world.director.handle_request(headers(), body())
            assert ctx.endpoint is not None
            chosen.add(ctx.endpoint.name)
            world.director.finish(ctx)
        assert chosen == {a.name, b.name}
        world.clock.advance(3)  # b's scrape is now 5.5 s old: stale under the 5 s threshold
        a.metrics.update_time = world.clock.now()
        chosen.clear()
        for _ in range(20):
            a.dispatched_since_scrape = 0
            ctx = await world.director.handle_request(headers(), body())
            assert ctx.endpoint is not None
            chosen.add(ctx.endpoint.name)
            world.director.finish(ctx)
        assert chosen == {a.name}
    finally:
        await world.admission.stop()
