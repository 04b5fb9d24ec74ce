"""Issue 18 item 15: gauges follow the present: a replaced pool's series go, and the pool
saturation gauge keeps moving while nothing is queued."""

from __future__ import annotations

import asyncio

from tests.unit.reliability_support import body, headers, make_world

from endpoint_picker.api import InferencePool
from endpoint_picker.datastore import Datastore
from endpoint_picker.metrics import REGISTRY
from endpoint_picker.runner.observability import MetricsServer


def _pool(name: str) -> InferencePool:
    return InferencePool.model_validate(
        {
            "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": {"app": "x"}}, "targetPorts": [{"number": 8000}]},
        }
    )


def _ready_pods(pool: str) -> float | None:
    return REGISTRY.get_sample_value("inference_pool_ready_pods", {"name": pool})


def test_a_replaced_pool_leaves_no_series_behind() -> None:
    datastore = Datastore()
    server = MetricsServer(datastore)
    datastore.set_pool(_pool("gauge-old-pool"))
    server.refresh()
    assert _ready_pods("gauge-old-pool") == 0
    datastore.set_pool(_pool("gauge-new-pool"))
    server.refresh()
    assert _ready_pods("gauge-new-pool") == 0
    assert _ready_pods("gauge-old-pool") is None


async def test_pool_saturation_follows_the_pool_while_idle() -> None:
    world = await make_world(
        "apiVersion: inference.networking.x-k8s.io/v1alpha1\n"
        "kind: EndpointPickerConfig\n"
        "plugins:\n- type: concurrency-detector\n  parameters: {maxConcurrency: 2}\n"
        "saturationDetector: {pluginRef: concurrency-detector}\n"
        "flowControl: {enabled: true}\n"
    )
    fc = world.admission
    fc.pool_name = "gauge-idle-pool"
    labels = {"inference_pool": "gauge-idle-pool"}
    try:
        ctxs = [await world.director.handle_request(headers(), body()) for _ in range(3)]
        fc.notify()
        await asyncio.sleep(0)
        sample = REGISTRY.get_sample_value
        assert (sample("inference_extension_flow_control_pool_saturation", labels) or 0) > 0
        for ctx in ctxs:
            world.director.finish(ctx)  # the pool is idle now; nothing is queued
        world.clock.advance(2)
        world.scrape()
        fc.notify()  # as the data layer does after each scrape
        await asyncio.sleep(0.01)
        assert sample("inference_extension_flow_control_pool_saturation", labels) == 0
    finally:
        await fc.stop()
