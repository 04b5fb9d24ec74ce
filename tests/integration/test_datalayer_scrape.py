"""The data layer scraping real servers over HTTP on 127.0.0.1.

1. aiohttp servers serving vLLM metric text rendered by prometheus_client (the library vLLM
   itself exports with), whose values change; plus one dead and one hanging server, which
   must not hold back the healthy loops.
2. Real simulator instances (``endpoint_picker.sim``) under load: the scraped metrics follow it.
"""

from __future__ import annotations

import asyncio
import socket
from collections import Counter as Tally
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest

from endpoint_picker.datalayer import SCRAPE_ERRORS, DataLayer
from endpoint_picker.datastore import Datastore, Endpoint

pytestmark = pytest.mark.integration


class VllmPage:
    """A vLLM-shaped /metrics page built with prometheus_client; set() changes the gauges."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ("engine", "model_name")
        r = self.registry
        self.waiting = Gauge("vllm:num_requests_waiting", "Waiting.", labels, registry=r)
        self.running = Gauge("vllm:num_requests_running", "Running.", labels, registry=r)
        self.kv = Gauge("vllm:kv_cache_usage_perc", "KV-cache usage.", labels, registry=r)
        cache = ("block_size", "num_gpu_blocks")
        info = Gauge("vllm:cache_config_info", "Cache config.", cache, registry=r)
        info.labels("16", "2048").set(1)
        ttft = Histogram("vllm:time_to_first_token_seconds", "TTFT.", labels, registry=r)
        ttft.labels("0", "m").observe(0.12)
        self.set(0, 0, 0.0)

    def set(self, waiting: int, running: int, kv: float) -> None:
        self.waiting.labels("0", "m").set(waiting)
        self.running.labels("0", "m").set(running)
        self.kv.labels("0", "m").set(kv)

    def render(self) -> bytes:
        out: bytes = generate_latest(self.registry)
        return out


@dataclass
class MetricsServer:
    page: VllmPage = field(default_factory=VllmPage)
    hang: asyncio.Event | None = None  # when set, requests wait on it (a hung server)
    pending: int = 0
    port: int = 0
    runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        if self.hang is not None:
            self.pending += 1
            try:
                await self.hang.wait()
            finally:
                self.pending -= 1
        return web.Response(body=self.page.render(), content_type="text/plain")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self.handle)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]

    async def stop(self) -> None:
        if self.hang is not None:
            self.hang.set()
        if self.runner is not None:
            await self.runner.cleanup()


def must(endpoint: Endpoint | None) -> Endpoint:
    assert endpoint is not None
    return endpoint


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def wait_for(cond: Callable[[], bool], limit: float = 20.0) -> None:
    """Poll ``cond``; the limit only turns a hang into a failure, it asserts no speed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not cond():
        if loop.time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.01)


@pytest.fixture
async def servers() -> AsyncIterator[list[MetricsServer]]:
    started = [MetricsServer(), MetricsServer(), MetricsServer(hang=asyncio.Event())]
    for s in started:
        await s.start()
    yield started
    for s in started:
        await s.stop()


async def test_scrapes_follow_changing_values_and_bad_servers_do_not_delay(
    servers: list[MetricsServer],
) -> None:
    a, b, hung = servers
    dead = free_port()
    ds = Datastore()
    ds.set_static_endpoints(
        {
            "a": ("127.0.0.1", a.port),
            "b": ("127.0.0.1", b.port),
            "hung": ("127.0.0.1", hung.port),
            "dead": ("127.0.0.1", dead),
        }
    )
    updates: Tally[str] = Tally()
    fetch_errors = SCRAPE_ERRORS.labels("fetch")._value.get()

    def on_update(ep: Endpoint) -> None:
        updates[ep.name] += 1

    ep = {name: must(ds.endpoint(name)) for name in ("a", "b", "hung", "dead")}
    async with DataLayer(ds, refresh_interval=0.01, timeout=30.0, on_update=on_update):
        # The hung server holds a request open (it would, for 30 s) ...
        await wait_for(lambda: hung.pending == 1)
        start = dict(updates)
        # ... and meanwhile the healthy endpoints keep getting fresh snapshots.
        await wait_for(lambda: all(updates[n] >= start.get(n, 0) + 10 for n in ("a", "b")))
        assert hung.pending == 1 and updates["hung"] == 0

        a.page.set(waiting=9, running=3, kv=0.8)
        await wait_for(lambda: ep["a"].metrics.waiting_queue_size == 9)
        ma = ep["a"].metrics
        assert (ma.running_requests_size, ma.kv_cache_usage_percent) == (3, 0.8)
        assert (ma.cache_block_size, ma.cache_num_blocks) == (16, 2048)
        assert ep["b"].metrics.waiting_queue_size == 0

        b.page.set(waiting=2, running=1, kv=0.1)
        a.page.set(waiting=0, running=0, kv=0.0)
        await wait_for(
            lambda: (
                ep["b"].metrics.waiting_queue_size == 2 and ep["a"].metrics.waiting_queue_size == 0
            )
        )
        # Never-scraped endpoints stay never-scraped (stale), and the dead one counts errors.
        assert ep["hung"].metrics.update_time == 0.0
        assert ep["dead"].metrics.update_time == 0.0
        assert SCRAPE_ERRORS.labels("fetch")._value.get() > fetch_errors


async def test_short_timeout_abandons_a_hung_server_and_recovers(
    servers: list[MetricsServer],
) -> None:
    _, _, hung = servers
    ds = Datastore()
    ds.set_static_endpoints({"hung": ("127.0.0.1", hung.port)})
    ep = ds.endpoint("hung")
    assert ep is not None
    before = SCRAPE_ERRORS.labels("fetch")._value.get()
    async with DataLayer(ds, refresh_interval=0.01, timeout=0.05):
        await wait_for(lambda: SCRAPE_ERRORS.labels("fetch")._value.get() >= before + 2)
        assert ep.metrics.update_time == 0.0
        assert hung.hang is not None
        hung.hang.set()  # the server comes back
        await wait_for(lambda: ep.metrics.update_time > 0)


async def test_scrapes_real_simulators_under_load() -> None:
    from endpoint_picker.sim import start_fleet

    fleet = await start_fleet(2, "tiny-test", inter_token_latency=0.05)
    ds = Datastore()
    ds.set_static_endpoints({f"sim-{i}": ("127.0.0.1", p) for i, p in enumerate(fleet.ports)})
    busy, idle = ds.endpoint("sim-0"), ds.endpoint("sim-1")
    assert busy is not None and idle is not None
    load: list[asyncio.Task[None]] = []
    try:
        async with aiohttp.ClientSession() as client, DataLayer(ds, refresh_interval=0.01):
            await wait_for(lambda: busy.metrics.update_time > 0 and idle.metrics.update_time > 0)
            assert busy.metrics.cache_block_size == 4  # the profile's block size, from the page
            assert busy.metrics.cache_num_blocks == 256
            assert busy.metrics.waiting_queue_size == busy.metrics.running_requests_size == 0

            async def complete() -> None:
                body = {"model": "sim-model", "prompt": "hello " * 40, "max_tokens": 200}
                url = f"http://127.0.0.1:{fleet.ports[0]}/v1/completions"
                async with client.post(url, json=body) as resp:
                    await resp.read()

            load = [asyncio.create_task(complete()) for _ in range(7)]
            # tiny-test runs at most 4 sequences: 4 running, 3 waiting, KV in use.
            await wait_for(
                lambda: (
                    busy.metrics.running_requests_size == 4 and busy.metrics.waiting_queue_size == 3
                )
            )
            assert busy.metrics.kv_cache_usage_percent > 0
            assert idle.metrics.running_requests_size == 0
            assert idle.metrics.kv_cache_usage_percent == 0
            assert idle.metrics.update_time > 0
    finally:
        for task in load:
            task.cancel()
        await asyncio.gather(*load, return_exceptions=True)
        await fleet.stop()
