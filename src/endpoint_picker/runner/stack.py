"""``epp run``'s whole stack on this machine: simulated model servers, the EPP, a managed Envoy.

Everything binds to 127.0.0.1 unless told otherwise, and everything started here is stopped here,
by the handles that started it. The managed Envoy is watched: when it exits on its own it is
started again (logged at ERROR with its log's tail); more than ``ENVOY_RESTARTS`` exits within a
minute, or a restart that fails, set :attr:`Stack.failed`, and ``epp run`` exits non-zero
instead of answering ``/healthz`` while clients get connection refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from endpoint_picker.runner.app import Epp, EppOptions

log = logging.getLogger(__name__)

ENVOY_RESTARTS = 3  # exits within a minute that are restarted; one more ends the run


@dataclass
class StackOptions:
    epp: EppOptions = field(default_factory=EppOptions)
    listen_port: int = 8081
    admin_port: int | None = None
    simulate: int = 0
    simulate_pd: tuple[int, int] | None = None  # (prefill, decode) role-labelled simulators
    simulate_dp: int = 0  # one simulated pod with this many data-parallel ranks
    sim_host: str = "127.0.0.1"  # where --simulate-dp's ranks bind
    sim_profile: str = "8b-h100"
    sim_base_port: int = 0
    sim_overrides: dict[str, Any] = field(default_factory=dict)
    envoy: bool = True
    mode: str = "duplex"
    failure_mode: str = "FailClose"
    envoy_concurrency: int = 1
    access_log_path: str | None = None
    front: str = "extproc"  # "extproc" or "fast" (also sets epp.front)
    als_flush_interval: float = 0.05  # fast front: Envoy's access-log flush interval (seconds)


class Stack:
    def __init__(self, options: StackOptions) -> None:
        self.options = options
        options.epp.front = options.front
        self.fleet: Any = None
        self.epp = Epp(options.epp)
        self.envoy: Any = None
        self.failed = asyncio.Event()  # set when the managed Envoy cannot be kept running
        self.envoy_restarts = 0
        self._watch: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        port = self.envoy.port if self.envoy is not None else self.options.listen_port
        return f"http://127.0.0.1:{port}"

    @property
    def pool_endpoints(self) -> list[str]:
        return [ep.hostport for ep in self.epp.datastore.endpoints()]

    async def start(self) -> None:
        o = self.options
        try:
            if o.simulate_pd is not None:
                await self._start_pd_fleet(*o.simulate_pd)
            elif o.simulate_dp:
                await self._start_dp_fleet(o.simulate_dp)
            elif o.simulate:
                from endpoint_picker.runner.sim_kvevents import sim_kv_event_overrides
                from endpoint_picker.sim import start_fleet

                kv_overrides = sim_kv_event_overrides(o.epp)
                self.fleet = await start_fleet(
                    o.simulate,
                    o.sim_profile,
                    base_port=o.sim_base_port,
                    **{**kv_overrides, **o.sim_overrides},
                )
                for i, server in enumerate(self.fleet.servers):
                    if server.kv_events is not None and "kv_events_port" in kv_overrides:
                        o.epp.kv_events_addresses[f"sim-{i}"] = server.kv_events.endpoint
                o.epp.endpoints = [
                    *o.epp.endpoints,
                    *(f"sim-{i}=127.0.0.1:{p}" for i, p in enumerate(self.fleet.ports)),
                ]
            await self.epp.start()
            if o.envoy:
                from endpoint_picker.envoy import ManagedEnvoy, bootstrap
                from endpoint_picker.envoy.fast import fast_bootstrap

                if o.front == "fast":
                    config = fast_bootstrap(
                        o.listen_port,
                        self.epp.fastfront.host,
                        self.epp.fastfront.port,
                        self.epp.fastfront.als_port,
                        als_host=self.epp.fastfront.als_host,
                        failure_mode=o.failure_mode,  # type: ignore[arg-type]
                        pool_endpoints=self.pool_endpoints or None,
                        admin_port=o.admin_port,
                        access_log_path=o.access_log_path,
                        als_flush_interval_s=o.als_flush_interval,
                    )
                else:
                    config = bootstrap(
                        o.listen_port,
                        o.epp.host,
                        self.epp.grpc_port,
                        mode=o.mode,  # type: ignore[arg-type]
                        failure_mode=o.failure_mode,  # type: ignore[arg-type]
                        pool_endpoints=self.pool_endpoints or None,
                        tls=o.epp.secure_serving,
                        admin_port=o.admin_port,
                        access_log_path=o.access_log_path,
                    )
                self.envoy = ManagedEnvoy(config, concurrency=o.envoy_concurrency)
                await self.envoy.start()
                self._watch = asyncio.create_task(self._watch_envoy(), name="envoy-watch")
        except BaseException:
            await self.stop()
            raise

    async def _start_pd_fleet(self, prefill: int, decode: int) -> None:
        """P prefill-role and D decode-role simulators, labelled ``llm-d.ai/role`` in the pool
        (static endpoints ``sim-prefill-i`` / ``sim-decode-j``), and llm-d's P/D config unless
        the run names its own."""
        from endpoint_picker.runner.defaults import pd_config_path
        from endpoint_picker.scheduling.plugins.roles import ROLE_LABEL
        from endpoint_picker.sim import start_pd_fleet

        o = self.options
        self.fleet = await start_pd_fleet(
            prefill, decode, o.sim_profile, base_port=o.sim_base_port, **o.sim_overrides
        )
        roles = ["prefill"] * prefill + ["decode"] * decode
        names = [f"sim-prefill-{i}" for i in range(prefill)]
        names += [f"sim-decode-{j}" for j in range(decode)]
        o.epp.endpoints = [
            *o.epp.endpoints,
            *(
                f"{name}=127.0.0.1:{port};{ROLE_LABEL}={role}"
                for name, port, role in zip(names, self.fleet.ports, roles, strict=True)
            ),
        ]
        if not o.epp.config_file and not o.epp.config_text:
            o.epp.config_file = pd_config_path()

    async def _start_dp_fleet(self, ranks: int) -> None:
        """One simulated pod ``sim-dp`` with ``ranks`` data-parallel ranks on consecutive ports,
        in the pool as upstream's rank endpoints ``sim-dp-rank-<i>``; rank 0's port is the
        primary port (its simulator runs llm-d's data-parallel sidecar). llm-d's DP config is
        used with ``primaryPort`` set to that port, unless the run names its own config."""
        from endpoint_picker.runner.defaults import dp_config_text
        from endpoint_picker.sim.dp import start_dp_fleet

        o = self.options
        self.fleet = await start_dp_fleet(
            ranks, o.sim_profile, o.sim_host, o.sim_base_port, **o.sim_overrides
        )
        o.epp.endpoints = [
            *o.epp.endpoints,
            *(f"sim-dp-rank-{i}={ep}" for i, ep in enumerate(self.fleet.endpoints)),
        ]
        if not o.epp.config_file and not o.epp.config_text:
            o.epp.config_text = dp_config_text(self.fleet.ports[0])

    async def _watch_envoy(self) -> None:
        from endpoint_picker.envoy.process import EnvoyError

        exits: deque[float] = deque()
        while self.envoy is not None:
            code = await self.envoy.wait()
            now = time.monotonic()
            exits.append(now)
            while exits and now - exits[0] > 60.0:
                exits.popleft()
            tail = self.envoy.log_tail(5)
            if len(exits) > ENVOY_RESTARTS:
                log.error(
                    "Envoy exited with %s again (%d times in a minute): giving up", code, len(exits)
                )
                self.failed.set()
                return
            log.error("Envoy exited with %s; starting it again. Its log ends:\n%s", code, tail)
            try:
                await self.envoy.restart()
            except EnvoyError as err:
                log.error("Envoy could not be started again: %s", err)
                self.failed.set()
                return
            self.envoy_restarts += 1
            log.info("Envoy is back (pid %s), listening on %s", self.envoy.pid, self.url)

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        if self.envoy is not None:
            await self.envoy.stop()
            self.envoy = None
        await self.epp.stop()
        if self.fleet is not None:
            await self.fleet.stop()
            self.fleet = None

    async def __aenter__(self) -> Stack:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
