"""Requests sent between two scrapes count as queued: admission and the queue scorer see them at
once, and a scrape takes back only what was sent before it began."""

from __future__ import annotations

import asyncio

from aiohttp import web

from endpoint_picker.config import build_scheduler, load_config
from endpoint_picker.datalayer import DataLayer
from endpoint_picker.datastore import Datastore, Endpoint, Metrics
from endpoint_picker.flowcontrol import UtilizationDetector
from endpoint_picker.requests import PARSERS

NOW = 1000.0
PAGE = "# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting 1\n"


def endpoint(name: str, waiting: int = 0) -> Endpoint:
    ep = Endpoint(name=name, pod_name=name, address="127.0.0.1", port=8000)
    ep.metrics = Metrics(waiting_queue_size=waiting, update_time=NOW)
    return ep


def test_detector_counts_dispatches_the_last_scrape_has_not_seen() -> None:
    detector = UtilizationDetector()  # queueDepthThreshold 5
    ep = endpoint("a", waiting=3)
    assert not detector.endpoint_saturated(ep, NOW)
    ep.dispatched_since_scrape = 2
    assert detector.endpoint_saturated(ep, NOW)
    assert detector.saturation([ep], NOW) == 1.0


def test_a_burst_between_scrapes_spreads_over_equal_endpoints() -> None:
    scheduler = build_scheduler(load_config(None))
    eps = [endpoint(n) for n in "abcd"]
    picked: list[str] = []
    for i in range(8):
        body = f'{{"model": "m", "prompt": "request number {i} differs early"}}'.encode()
        req = PARSERS["openai-parser"].parse({}, body, "/v1/completions")
        chosen = scheduler.schedule(req, eps).endpoints[0]
        chosen.dispatched_since_scrape += 1  # what the director does on dispatch
        picked.append(chosen.name)
    assert sorted(picked) == sorted("abcd" * 2)  # two each, no pile-up on one


async def test_a_scrape_keeps_what_was_sent_after_it_began() -> None:
    ds = Datastore()
    started = asyncio.Event()
    proceed = asyncio.Event()

    async def metrics(_: web.Request) -> web.Response:
        started.set()
        await proceed.wait()
        return web.Response(text=PAGE)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    ds.set_static_endpoints({"a": ("127.0.0.1", port)})
    ep = ds.endpoint("a")
    assert ep is not None
    layer = DataLayer(ds, refresh_interval=10.0)
    await layer.start()  # the first scrape begins at once
    try:
        await asyncio.wait_for(started.wait(), 10)
        # The loop's first scrape began before these 3 (it was already waiting on the page);
        # restart the count cleanly: 2 sent before the next scrape starts, 3 during it.
        proceed.set()
        for _ in range(100):
            if ep.metrics.update_time > 0:
                break
            await asyncio.sleep(0.01)
        started.clear()
        proceed.clear()
        ep.dispatched_since_scrape = 2
        scrape = asyncio.create_task(layer.scrape_once(ep))
        await asyncio.wait_for(started.wait(), 10)
        ep.dispatched_since_scrape += 3
        proceed.set()
        await scrape
        assert ep.metrics.waiting_queue_size == 1
        assert ep.dispatched_since_scrape == 3
        assert ep.queue_depth == 4
    finally:
        proceed.set()
        await layer.stop()
        await runner.cleanup()
