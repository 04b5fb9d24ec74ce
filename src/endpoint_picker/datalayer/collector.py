"""The scrape loops: one asyncio task per endpoint, following the datastore's endpoint set.

Each loop GETs ``<scheme>://<metrics_hostport><path>`` every ``refresh_interval`` with its own
per-request timeout, maps the page through the endpoint's engine map and stores a fresh
:class:`Metrics` stamped with ``clock.now()``. Loops are independent tasks sharing one
aiohttp session with no global connection limit, so a slow or dead server only ever delays
its own loop. A failed scrape leaves the old snapshot in place: its ``update_time`` ages and
consumers see it as stale, which is upstream's only health signal for model servers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp

from endpoint_picker.clock import SYSTEM_CLOCK, Clock
from endpoint_picker.datalayer.engines import EngineMap, EngineSelector, merge_engines
from endpoint_picker.datalayer.extract import ExtractError, extract
from endpoint_picker.datastore import ENGINE_TYPE_LABEL, Datastore, Endpoint, Event
from endpoint_picker.metrics import REGISTRY, Counter

log = logging.getLogger(__name__)

SCRAPE_ERRORS = Counter(
    "inference_extension_datalayer_scrape_errors_total",
    "Model-server metric scrapes that failed, by reason (fetch, status, parse, empty).",
    ("reason",),
    registry=REGISTRY,
)
SCRAPES = Counter(
    "inference_extension_datalayer_scrapes_total",
    "Model-server metric scrapes that stored a fresh snapshot.",
    registry=REGISTRY,
)


class ScrapeError(Exception):
    def __init__(self, reason: str, msg: str) -> None:
        super().__init__(msg)
        self.reason = reason


class DataLayer:
    """Keeps every endpoint's ``metrics`` fresh by scraping its model server."""

    def __init__(
        self,
        datastore: Datastore,
        *,
        clock: Clock = SYSTEM_CLOCK,
        refresh_interval: float = 0.05,
        timeout: float = 1.0,
        engines: Mapping[str, EngineMap] | None = None,
        default_engine: str = "vllm",
        label_key: str = ENGINE_TYPE_LABEL,
        on_update: Callable[[Endpoint], None] | None = None,
        scheme: str = "http",
        path: str = "/metrics",
        insecure_skip_verify: bool = True,
    ) -> None:
        if scheme not in ("http", "https"):
            raise ValueError(f"scheme must be http or https, got {scheme!r}")
        if refresh_interval <= 0 or timeout <= 0:
            raise ValueError("refresh_interval and timeout must be positive")
        self.datastore = datastore
        self.clock = clock
        self.refresh_interval = refresh_interval
        self.timeout = timeout
        self.selector = EngineSelector(merge_engines(engines), default_engine, label_key)
        self.on_update = on_update
        self.scheme = scheme
        self.path = path if path.startswith("/") else "/" + path
        self._ssl = not (scheme == "https" and insecure_skip_verify)
        self._session: aiohttp.ClientSession | None = None
        self._tasks: dict[Endpoint, asyncio.Task[None]] = {}
        self._unsubscribe: Callable[[], None] | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        """Open the HTTP session and start a loop for every current and future endpoint."""
        if self._session is not None:
            return
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=30)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            headers={"Accept": "text/plain;version=0.0.4;q=0.9,*/*;q=0.1"},
        )
        self._unsubscribe = self.datastore.subscribe(self._on_event)
        self._reconcile()

    async def stop(self) -> None:
        """Cancel every loop and close the session; safe to call twice."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> DataLayer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def scraping(self) -> frozenset[Endpoint]:
        """Endpoints with a running scrape loop (for tests and debugging)."""
        return frozenset(self._tasks)

    # -- endpoint set ----------------------------------------------------------------------------
    def _on_event(self, event: Event, obj: Any) -> None:
        if event is Event.ENDPOINT_ADDED:
            self._add(obj)
        elif event is Event.ENDPOINT_REMOVED:
            self._remove(obj)
        elif event is Event.CLEARED:
            self._reconcile()

    def _reconcile(self) -> None:
        current = set(self.datastore.endpoints())
        for ep in [ep for ep in self._tasks if ep not in current]:
            self._remove(ep)
        for ep in current:
            self._add(ep)

    def _add(self, endpoint: Endpoint) -> None:
        if endpoint not in self._tasks and self._session is not None:
            self._tasks[endpoint] = asyncio.get_running_loop().create_task(
                self._loop(endpoint), name=f"scrape:{endpoint.name}"
            )

    def _remove(self, endpoint: Endpoint) -> None:
        task = self._tasks.pop(endpoint, None)
        if task is not None:
            task.cancel()

    # -- one endpoint --------------------------------------------------------------------------
    async def _loop(self, endpoint: Endpoint) -> None:
        loop = asyncio.get_running_loop()
        failing: str | None = None  # last logged failure reason, for once-per-transition logs
        problems: tuple[str, ...] = ()
        while True:
            started = loop.time()
            try:
                found = await self.scrape_once(endpoint)
            except ScrapeError as e:
                SCRAPE_ERRORS.labels(e.reason).inc()
                if failing != e.reason:
                    log.warning("scraping %s failed (%s): %s", endpoint.name, e.reason, e)
                    failing = e.reason
            else:
                if failing is not None:
                    log.info("scraping %s recovered", endpoint.name)
                    failing = None
                if found != problems:
                    if found:
                        log.warning("metrics of %s incomplete: %s", endpoint.name, "; ".join(found))
                    problems = found
            # A ticker, like upstream's: a slow scrape eats into the wait rather than adding to it.
            await asyncio.sleep(max(0.0, self.refresh_interval - (loop.time() - started)))

    async def scrape_once(self, endpoint: Endpoint) -> tuple[str, ...]:
        """Scrape one endpoint now and store its metrics. Returns the incomplete-metric notes;
        raises ScrapeError when nothing could be stored."""
        sent_before = endpoint.dispatched_since_scrape
        text = await self._fetch(endpoint)
        engine = self.selector.for_labels(endpoint.labels)
        try:
            metrics, problems = extract(text, engine, endpoint.metrics, self.clock.now())
        except ExtractError as e:
            raise ScrapeError("parse", str(e)) from None
        if metrics is None:
            raise ScrapeError("empty", f"no {engine.name} metrics found: {'; '.join(problems)}")
        endpoint.metrics = metrics
        # This page counts what was sent before the scrape began; later dispatches stay pending.
        endpoint.dispatched_since_scrape = max(0, endpoint.dispatched_since_scrape - sent_before)
        SCRAPES.inc()
        if self.on_update is not None:
            try:
                self.on_update(endpoint)
            except Exception:  # a buggy listener must not stop the scrape loop
                log.exception("on_update listener failed for %s", endpoint.name)
        return tuple(problems)

    async def _fetch(self, endpoint: Endpoint) -> str:
        if self._session is None:
            raise RuntimeError("DataLayer not started")
        url = f"{self.scheme}://{endpoint.metrics_hostport}{self.path}"
        try:
            async with self._session.get(url, ssl=self._ssl) as resp:
                if resp.status != 200:
                    raise ScrapeError("status", f"GET {url}: HTTP {resp.status}")
                return (await resp.read()).decode("utf-8", "replace")
        except TimeoutError:
            raise ScrapeError("fetch", f"GET {url}: timed out after {self.timeout}s") from None
        except aiohttp.ClientError as e:
            raise ScrapeError("fetch", f"GET {url}: {e or type(e).__name__}") from None
