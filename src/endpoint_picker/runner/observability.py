"""The metrics port: ``/metrics`` (the EPP registry), ``/healthz``, upstream's pool gauges, and
the live status page (``/``, ``/status.json``; see :mod:`endpoint_picker.runner.status`).

Pool gauges are computed on a timer (``--refresh-prometheus-metrics-interval``, default 5 s), never
per request; the per-endpoint queue gauge is a collector read at scrape time.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from endpoint_picker import __version__
from endpoint_picker.clock import SYSTEM_CLOCK, Clock
from endpoint_picker.datalayer.freshness import pool_stats
from endpoint_picker.datastore import Datastore
from endpoint_picker.metrics import INFO, REGISTRY, Gauge
from endpoint_picker.runner.status import StatusPage

_POOL = ("name",)
POOL_KV = Gauge(
    "inference_pool_average_kv_cache_utilization",
    "[ALPHA] The average kv cache utilization for an inference server pool.",
    _POOL,
    registry=REGISTRY,
)
POOL_QUEUE = Gauge(
    "inference_pool_average_queue_size",
    "[ALPHA] The average number of requests pending in the model server queue.",
    _POOL,
    registry=REGISTRY,
)
POOL_RUNNING = Gauge(
    "inference_pool_average_running_requests",
    "[ALPHA] The average number of requests currently being processed by model servers.",
    _POOL,
    registry=REGISTRY,
)
POOL_READY = Gauge(
    "inference_pool_ready_pods",
    "[ALPHA] The number of ready pods in the inference server pool.",
    _POOL,
    registry=REGISTRY,
)


class PerPodQueue(Collector):
    """``inference_pool_per_pod_queue_size{name, model_server_pod}``, read at scrape time."""

    def __init__(self, datastore: Datastore, pool_name: Callable[[], str]) -> None:
        self.datastore = datastore
        self.pool_name = pool_name

    def collect(self) -> Iterator[GaugeMetricFamily]:
        fam = GaugeMetricFamily(
            "inference_pool_per_pod_queue_size",
            "[ALPHA] The total number of requests pending in the model server queue for each "
            "underlying pod.",
            labels=["name", "model_server_pod"],
        )
        name = self.pool_name()
        for ep in self.datastore.endpoints():
            fam.add_metric([name, ep.name], ep.metrics.waiting_queue_size)
        yield fam


class MetricsServer:
    def __init__(
        self,
        datastore: Datastore,
        *,
        host: str = "127.0.0.1",
        port: int = 9090,
        refresh_interval: float = 5.0,
        staleness_threshold: float = 2.0,
        ready: Callable[[], bool] = lambda: True,
        clock: Clock = SYSTEM_CLOCK,
        status: StatusPage | None = None,
        ssl_context: ssl.SSLContext | None = None,
        middlewares: Sequence[Any] = (),
    ) -> None:
        self.ssl_context = ssl_context  # --metrics-cert-dir
        self.middlewares = list(middlewares)  # --metrics-endpoint-auth (runner/metrics_auth.py)
        self.datastore = datastore
        self.status = status
        self.host, self.port = host, port
        self.refresh_interval = refresh_interval
        self.staleness_threshold = staleness_threshold
        self.ready = ready
        self.clock = clock
        self._runner: web.AppRunner | None = None
        self._task: asyncio.Task[None] | None = None
        self._collector = PerPodQueue(datastore, self.pool_name)
        self._named: str | None = None  # the pool name the gauges carry now

    def pool_name(self) -> str:
        pool = self.datastore.pool
        return pool.metadata.name if pool is not None else ""

    def refresh(self) -> None:
        stats = pool_stats(self.datastore.endpoints(), self.clock.now(), self.staleness_threshold)
        name = self.pool_name()
        if self._named is not None and self._named != name:
            for gauge in (POOL_KV, POOL_QUEUE, POOL_RUNNING, POOL_READY):
                gauge.remove(self._named)  # a renamed or replaced pool leaves no stale series
        self._named = name
        POOL_KV.labels(name).set(stats.average_kv_cache_utilization)
        POOL_QUEUE.labels(name).set(stats.average_queue_size)
        POOL_RUNNING.labels(name).set(stats.average_running_requests)
        POOL_READY.labels(name).set(stats.ready_pods)

    async def _metrics(self, _: web.Request) -> web.Response:
        # Rendered on a worker thread: a large registry must not stall the request loop. The
        # client's collect() copies each metric's children under its lock, and the per-pod
        # collector reads the datastore's endpoint snapshot, built here on the loop.
        self.datastore.endpoints()
        body = await asyncio.to_thread(generate_latest, REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, _: web.Request) -> web.Response:
        ok = self.ready()
        return web.Response(status=200 if ok else 503, text="ok\n" if ok else "not ready\n")

    async def _loop(self) -> None:
        while True:
            self.refresh()
            await asyncio.sleep(self.refresh_interval)

    async def start(self) -> None:
        INFO.labels("", __version__).set(1)
        try:
            REGISTRY.register(self._collector)
        except ValueError:
            pass  # another instance in this process registered it already
        app = web.Application(middlewares=self.middlewares)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        if self.status is not None:
            self.status.add_routes(app)
            await self.status.start()
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.ssl_context)
        await site.start()
        if self.port == 0:
            server = site._server
            assert server is not None
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self._task = asyncio.create_task(self._loop(), name="pool-gauges")

    async def stop(self) -> None:
        if self.status is not None:
            await self.status.stop()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        try:
            REGISTRY.unregister(self._collector)
        except KeyError:
            pass
