"""Composition: one place that builds the EPP from options, in upstream's start-up order.

config -> datastore -> sources -> data layer -> admission -> scheduler -> director -> metrics port
-> front: the ext_proc server (``front="extproc"``) or the fast front (``front="fast"``: pick
over ext_authz HTTP, complete over Envoy's gRPC access log; see ``docs/fast-front.md``).
``Stack`` adds what ``epp run`` starts around it on this machine: simulated model servers and a
managed Envoy.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from endpoint_picker.clock import SYSTEM_CLOCK, Clock
from endpoint_picker.datastore import Datastore, Event
from endpoint_picker.director import Director
from endpoint_picker.errors import ConfigError
from endpoint_picker.runner.upstream_flags import UpstreamSettings

log = logging.getLogger("endpoint_picker")


@dataclass
class EppOptions:
    """Every knob of one EPP process (flag names as upstream, see ``epp run --help``)."""

    manifests: list[str] = field(default_factory=list)
    endpoints: list[str] = field(default_factory=list)  # "ip:port" or "name=ip:port"
    pool_name: str | None = None
    config_file: str | None = None
    config_text: str | None = None
    host: str = "127.0.0.1"
    grpc_port: int = 9002
    grpc_health_port: int | None = 9003
    metrics_port: int | None = 9090
    secure_serving: bool = True
    cert_path: str | None = None
    refresh_metrics_interval: float = 0.05
    refresh_prometheus_metrics_interval: float = 5.0
    metrics_staleness_threshold: float = 2.0
    disable_endpoint_subset_filter: bool = False
    model_server_metrics_port: int = 0
    kubernetes_args: Any = None  # an argparse namespace with the Kubernetes flags, or None
    front: str = "extproc"  # "extproc" (GIE protocol) or "fast" (needs an Envoy config we write)
    pick_port: int = 9004  # fast front: ext_authz HTTP pick endpoint (+ /healthz)
    als_port: int = 9005  # fast front: Envoy gRPC access-log service
    upstream: UpstreamSettings = field(default_factory=UpstreamSettings)  # upstream's other flags
    # KV-event address per endpoint name, for servers sharing one IP (``epp run --simulate``).
    kv_events_addresses: dict[str, str] = field(default_factory=dict)
    pick_host: str = "127.0.0.1"  # fast front ports: loopback, unauthenticated (issue 18)
    als_host: str = "127.0.0.1"
    max_request_body_bytes: int = 16 * 1024 * 1024  # ext_proc front: larger bodies get 413


class Epp:
    """The EPP process: every part wired, started and stopped in order."""

    def __init__(self, options: EppOptions, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.options = options
        self.clock = clock
        self.datastore = Datastore(model_server_metrics_port=options.model_server_metrics_port)
        self._tasks: list[asyncio.Task[Any]] = []
        self._stoppers: list[Any] = []
        self.director: Director | None = None
        self.extproc: Any = None
        self.fastfront: Any = None
        self.health: Any = None
        self.metrics_server: Any = None
        self.admission: Any = None
        self.source: Any = None
        self.draining = False  # set on SIGTERM in Kubernetes mode: not ready, still serving

    async def start(self) -> None:
        from endpoint_picker.config import build, load_config, load_config_text
        from endpoint_picker.datalayer import DataLayer
        from endpoint_picker.extproc import ExtProcServer
        from endpoint_picker.flowcontrol import build_admission
        from endpoint_picker.runner.observability import MetricsServer
        from endpoint_picker.runner.status import DecisionLog, StatusPage

        o = self.options
        if o.front not in ("extproc", "fast"):
            raise ConfigError(f"front must be 'extproc' or 'fast', got {o.front!r}")
        if o.config_file and o.config_text:
            raise ConfigError("--config-file and --config-text are mutually exclusive")
        cfg = load_config_text(o.config_text) if o.config_text else load_config(o.config_file)
        built = build(cfg, clock=self.clock)  # every plugin, once
        await self._start_source()

        pool = self.datastore.pool
        self.admission = build_admission(
            built.flow_control,
            built.detector,
            self.datastore.endpoints,
            self.clock,
            pool_name=pool.metadata.name if pool else "",
            ready_threshold=o.metrics_staleness_threshold,
        )
        await self._start_part(self.admission)
        scheduler = built.scheduler
        wire_detector(scheduler, built.detector, self.clock)
        self.datastore.subscribe(
            lambda event, obj: (
                scheduler.remove_endpoint(obj) if event == Event.ENDPOINT_REMOVED else None
            )
        )
        decisions = DecisionLog(clock=self.clock)
        tracer = None
        if o.upstream.tracing:
            from endpoint_picker.tracing import from_flag

            tracer = from_flag(True)

            async def stop_tracing() -> None:
                assert tracer is not None
                tracer.shutdown()  # flushes the spans still batched

            self._stoppers.append(stop_tracing)
        for plugin in built.plugins.values():  # e.g. the precise producer's KV-event streams
            attach = getattr(plugin, "attach", None)
            if attach is not None:
                attach(self.datastore, o.kv_events_addresses, o.host)
                await self._start_part(plugin)
        self.director = Director(
            self.datastore,
            built.parser,
            self.admission,
            scheduler,
            clock=self.clock,
            disable_subset_filter=o.disable_endpoint_subset_filter,
            decisions=decisions,
            tracer=tracer,
            staleness_threshold=o.metrics_staleness_threshold,
        )
        self.director.emit_endpoint_scores = o.upstream.emit_endpoint_scores
        notify = getattr(self.admission, "notify", None)
        datalayer = DataLayer(
            self.datastore,
            clock=self.clock,
            refresh_interval=o.refresh_metrics_interval,
            on_update=(lambda _ep: notify()) if notify else None,
            **_layer_kwargs(built.data_layer, o.upstream),
        )
        await self._start_part(datalayer)

        if o.metrics_port is not None:
            from endpoint_picker.runner.metrics_auth import metrics_guard

            ssl_context, middlewares = await metrics_guard(o.upstream, self.source)
            self.metrics_server = MetricsServer(
                self.datastore,
                host=o.host,
                port=o.metrics_port,
                refresh_interval=o.refresh_prometheus_metrics_interval,
                staleness_threshold=o.metrics_staleness_threshold,
                ready=self.ready,
                clock=self.clock,
                status=StatusPage(
                    self.datastore,
                    decisions,
                    lambda: self.admission,
                    staleness_threshold=o.metrics_staleness_threshold,
                    clock=self.clock,
                ),
                ssl_context=ssl_context,
                middlewares=middlewares,
            )
            await self._start_part(self.metrics_server)
        if o.front == "fast":
            from endpoint_picker.fastfront import FastFront

            self.fastfront = FastFront(
                self.director,
                o.pick_host,
                o.pick_port,
                o.als_port,
                als_host=o.als_host,
                ready=self.ready,
            )
            await self._start_part(self.fastfront)
            if o.grpc_health_port is not None:
                # The same probe port and service names as with the ext_proc front.
                from endpoint_picker.extproc.health import HealthServer

                self.health = HealthServer(o.host, o.grpc_health_port, self.ready)
                await self._start_part(self.health)
            return
        self.extproc = ExtProcServer(
            self.director,
            host=o.host,
            port=o.grpc_port,
            health_port=o.grpc_health_port,
            secure=o.secure_serving,
            cert_path=o.cert_path,
            ready=self.ready,
            cert_reload=o.upstream.cert_reload,
            max_recv=o.upstream.grpc_max_recv,
            max_send=o.upstream.grpc_max_send,
            max_body_bytes=o.max_request_body_bytes,
            stream_metrics=o.upstream.grpc_stream_metrics,
        )
        await self._start_part(self.extproc)

    async def _start_part(self, part: Any) -> None:
        """Start ``part`` and register its ``stop`` (stopped in reverse order of starting)."""
        await part.start()
        self._stoppers.append(part.stop)

    async def _start_source(self) -> None:
        o = self.options
        if o.kubernetes_args is not None:
            from endpoint_picker.sources.k8s_mode import from_args

            source = from_args(o.kubernetes_args, self.datastore)
            if source is not None:
                # A kubeconfig that cannot be used is a start-up error (as upstream's
                # "Failed to get Kubernetes rest config"), not a source that never gets ready.
                await source.api_client()
                self.source = source
                self._tasks.append(asyncio.create_task(source.run(), name="kubernetes-source"))
                self._stoppers.append(source.stop)
                return
        from endpoint_picker.sources.files import FileSource

        files = FileSource(self.datastore, o.manifests, o.endpoints, pool_name=o.pool_name)
        files.load_or_raise()
        self.source = files
        self._tasks.append(asyncio.create_task(files.run(), name="file-source"))

        async def stop_files() -> None:
            files.stop()

        self._stoppers.append(stop_files)

    def ready(self) -> bool:
        if self.draining:
            return False
        is_ready = getattr(self.source, "is_ready", None)
        return bool(is_ready()) if callable(is_ready) else True

    @property
    def grpc_port(self) -> int:
        return int(self.extproc.port)

    async def stop(self) -> None:
        for stop in reversed(self._stoppers):
            try:
                result = stop()
                if asyncio.iscoroutine(result):
                    await result
            except Exception:  # stopping must go on for the other parts
                log.exception("error while stopping")
        self._stoppers.clear()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()


def wire_detector(scheduler: Any, detector: Any, clock: Clock) -> None:
    """Give the scheduler the saturation detector's dispatch hooks, where it has them (the
    learned-capacity detector): the room check at dispatch, and the dispatch count its server
    view adds to the last scrape."""
    room = getattr(detector, "room_at_dispatch", None)
    if room is not None:
        scheduler.room_check = lambda ep, affine, top: bool(room(ep, clock.now(), affine, top))
    record = getattr(detector, "record_dispatch", None)
    if record is not None:
        scheduler.on_dispatch = lambda ep: record(ep, clock.now())


def _layer_kwargs(built_layer: dict[str, Any] | None, up: UpstreamSettings) -> dict[str, Any]:
    """DataLayer kwargs. Without a ``dataLayer`` in the config (upstream's legacy metrics path)
    upstream's deprecated flags apply: ``--model-server-metrics-*`` set the scrape, and the
    legacy metric-name flags replace specs of the default engine, as they set upstream's one
    mapping for every pod. A config with a ``dataLayer`` wins, as upstream's does."""
    from endpoint_picker.datalayer.engines import with_legacy_specs
    from endpoint_picker.datalayer.params import from_params

    if built_layer is not None:
        if up.scrape_params or up.legacy_metrics:
            log.info("the config's dataLayer sets the metrics: legacy metric flags ignored")
        return built_layer
    kwargs: dict[str, Any] = from_params(up.scrape_params)
    if up.legacy_metrics:
        engines = kwargs["engines"]
        default = kwargs["default_engine"]
        engines[default] = with_legacy_specs(engines[default], up.legacy_metrics)
    return kwargs
