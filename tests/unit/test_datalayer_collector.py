"""DataLayer against real HTTP servers on 127.0.0.1: storing snapshots, staleness on a
FakeClock, error reasons, once-per-transition logging, following the datastore's endpoints."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from endpoint_picker.clock import FakeClock
from endpoint_picker.datalayer import (
    SCRAPE_ERRORS,
    DataLayer,
    ScrapeError,
    is_fresh,
    pool_stats,
)
from endpoint_picker.datastore import ENGINE_TYPE_LABEL, Datastore, Endpoint

VLLM = """# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{{model_name="m"}} {q}
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{{model_name="m"}} {r}
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{{model_name="m"}} {kv}
# TYPE vllm:cache_config_info gauge
vllm:cache_config_info{{block_size="16",num_gpu_blocks="1024"}} 1.0
# TYPE vllm:lora_requests_info gauge
vllm:lora_requests_info{{max_lora="2",running_lora_adapters="a",waiting_lora_adapters=""}} 5.0
"""
SGLANG = """sglang:num_queue_reqs 8
sglang:num_running_reqs 1
sglang:token_usage 0.75
sglang:cache_config_info{page_size="1",num_pages="4096"} 1
"""


@dataclass
class Server:
    """A real aiohttp server whose /metrics body and status the test changes."""

    body: str = VLLM.format(q=1, r=2, kv=0.25)
    status: int = 200
    hits: int = 0
    port: int = 0
    paths: list[str] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.hits += 1
        self.paths.append(request.path)
        return web.Response(text=self.body, status=self.status, content_type="text/plain")


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    srv = Server()
    app = web.Application()
    app.router.add_get("/{tail:.*}", srv.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    srv.port = runner.addresses[0][1]
    yield srv
    await runner.cleanup()


def free_port() -> int:
    """A port nothing listens on (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def endpoint(port: int, **labels: str) -> Endpoint:
    return Endpoint(name=f"ep-{port}", pod_name="p", address="127.0.0.1", port=port, labels=labels)


async def wait_for(cond: Callable[[], bool], limit: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + limit
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.005)


async def test_scrape_stores_fresh_snapshot_and_staleness_follows_clock(server: Server) -> None:
    clock = FakeClock(100.0)
    updated: list[Endpoint] = []
    ep = endpoint(server.port)
    async with DataLayer(Datastore(), clock=clock, on_update=updated.append) as dl:
        assert ep.metrics.update_time == 0.0 and not is_fresh(ep.metrics, clock.now())
        old = ep.metrics
        assert await dl.scrape_once(ep) == ()
        assert ep.metrics is not old  # a fresh object: readers holding the old one see no tear
        m = ep.metrics
        assert (m.waiting_queue_size, m.running_requests_size, m.kv_cache_usage_percent) == (
            1,
            2,
            0.25,
        )
        assert (m.cache_block_size, m.cache_num_blocks, m.max_active_models) == (16, 1024, 2)
        assert m.update_time == 100.0
        assert updated == [ep]
        assert server.paths == ["/metrics"]

        clock.advance(1.9)
        assert is_fresh(ep.metrics, clock.now())
        clock.advance(0.2)
        assert not is_fresh(ep.metrics, clock.now())
        assert is_fresh(ep.metrics, clock.now(), threshold=5.0)

        # The server goes bad: the old snapshot stays, and only ages.
        server.status = 503
        with pytest.raises(ScrapeError) as info:
            await dl.scrape_once(ep)
        assert info.value.reason == "status"
        assert ep.metrics is m and m.update_time == 100.0

        server.status, server.body = 200, VLLM.format(q=7, r=0, kv=0.5)
        await dl.scrape_once(ep)
        assert ep.metrics.waiting_queue_size == 7 and ep.metrics.update_time == clock.now()


async def test_pool_stats_count_only_fresh_endpoints() -> None:
    clock = FakeClock(50.0)
    eps = [endpoint(i) for i in (1, 2, 3)]
    for ep, (q, kv, t) in zip(eps, [(2, 0.2, 49.0), (4, 0.6, 48.5), (100, 1.0, 40.0)], strict=True):
        ep.metrics.waiting_queue_size, ep.metrics.kv_cache_usage_percent = q, kv
        ep.metrics.update_time = t
    stats = pool_stats(eps, clock.now())
    assert stats.ready_pods == 2
    assert stats.average_queue_size == pytest.approx(3.0)
    assert stats.average_kv_cache_utilization == pytest.approx(0.4)
    clock.advance(10)
    assert pool_stats(eps, clock.now()).ready_pods == 0


async def test_engine_label_selects_the_map(server: Server) -> None:
    server.body = SGLANG
    ep = endpoint(server.port, **{ENGINE_TYPE_LABEL: "sglang"})
    async with DataLayer(Datastore(), clock=FakeClock()) as dl:
        await dl.scrape_once(ep)
        assert (ep.metrics.waiting_queue_size, ep.metrics.kv_cache_usage_percent) == (8, 0.75)
        assert ep.metrics.cache_num_blocks == 4096
        # Same page read as vLLM (the default): nothing found, nothing stored.
        plain = endpoint(server.port)
        with pytest.raises(ScrapeError) as info:
            await dl.scrape_once(plain)
        assert info.value.reason == "empty"
        assert plain.metrics.update_time == 0.0


async def test_error_reasons(server: Server) -> None:
    async with DataLayer(Datastore(), timeout=2.0, path="custom") as dl:
        server.body = "vllm:num_requests_waiting{model=oops 3\n"
        with pytest.raises(ScrapeError) as info:
            await dl.scrape_once(endpoint(server.port))
        assert info.value.reason == "parse"
        assert server.paths[-1] == "/custom"
        with pytest.raises(ScrapeError) as info:
            await dl.scrape_once(endpoint(free_port()))
        assert info.value.reason == "fetch"
        assert "127.0.0.1" in str(info.value)


async def test_errors_logged_once_per_transition_and_counted(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    ds = Datastore()
    before = SCRAPE_ERRORS.labels("status")._value.get()
    caplog.set_level(logging.INFO, logger="endpoint_picker.datalayer.collector")
    server.status = 500
    ds.set_static_endpoints({"a": ("127.0.0.1", server.port)})
    async with DataLayer(ds, refresh_interval=0.005) as dl:
        await wait_for(lambda: server.hits >= 5)
        failures = [r for r in caplog.records if "failed" in r.getMessage()]
        assert len(failures) == 1 and "HTTP 500" in failures[0].getMessage()
        assert SCRAPE_ERRORS.labels("status")._value.get() - before >= 5
        server.status = 200
        hits = server.hits
        await wait_for(lambda: server.hits >= hits + 5)
        recovered = [r for r in caplog.records if "recovered" in r.getMessage()]
        assert len(recovered) == 1
        assert ds.endpoint("a") in dl.scraping


async def test_follows_datastore_endpoints(server: Server) -> None:
    ds = Datastore()
    ds.set_static_endpoints({"a": ("127.0.0.1", server.port)})
    seen: list[str] = []
    dl = DataLayer(ds, refresh_interval=0.005, on_update=lambda ep: seen.append(ep.name))
    await dl.start()
    try:
        a = ds.endpoint("a")
        assert a is not None and dl.scraping == {a}  # existing endpoints picked up at start
        ds.set_static_endpoints({"a": ("127.0.0.1", server.port), "b": ("127.0.0.1", server.port)})
        b = ds.endpoint("b")
        assert b is not None and dl.scraping == {a, b}
        await wait_for(lambda: "b" in seen and b.metrics.update_time > 0)
        ds.set_static_endpoints({"b": ("127.0.0.1", server.port)})
        assert dl.scraping == {b}
        a_count = seen.count("a")
        b_count = seen.count("b")
        await wait_for(lambda: seen.count("b") >= b_count + 5)
        assert seen.count("a") == a_count  # removed endpoints are no longer scraped
    finally:
        await dl.stop()
    assert dl.scraping == frozenset()
    n = len(seen)
    # A fence instead of a pause: a second data layer on the same endpoints scrapes 5 times at
    # the same interval; the stopped one, were it still running, would have scraped meanwhile.
    fence: list[str] = []
    async with DataLayer(ds, refresh_interval=0.005, on_update=lambda ep: fence.append(ep.name)):
        await wait_for(lambda: len(fence) >= 5)
    assert len(seen) == n  # nothing runs after stop
    await dl.stop()  # idempotent


async def test_bad_on_update_does_not_stop_the_loop(server: Server) -> None:
    ds = Datastore()
    ds.set_static_endpoints({"a": ("127.0.0.1", server.port)})
    calls = 0

    def boom(ep: Endpoint) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("listener bug")

    async with DataLayer(ds, refresh_interval=0.005, on_update=boom):
        await wait_for(lambda: calls >= 3)


def test_constructor_validation() -> None:
    with pytest.raises(ValueError, match="scheme"):
        DataLayer(Datastore(), scheme="ftp")
    with pytest.raises(ValueError, match="positive"):
        DataLayer(Datastore(), refresh_interval=0)
