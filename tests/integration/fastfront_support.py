"""The fast front's stack for integration tests: ``runner.stack.Stack`` with the fast front.

Until ``epp run --front fast`` is wired into ``runner/`` (``/tmp/helpers/fastfront-runner.patch``),
``FastStack`` does what the patched ``Stack`` does: simulators, the EPP as ``Epp`` composes it,
a ``FastFront`` on its director (stopped with the EPP, as the patched ``Epp`` does) and an Envoy
from ``fast_bootstrap``. It has ``Stack``'s surface, so ``e2e_support``'s helpers work on it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import e2e_support

from endpoint_picker.envoy import ManagedEnvoy
from endpoint_picker.envoy.fast import fast_bootstrap
from endpoint_picker.fastfront import FastFront
from endpoint_picker.runner.stack import Stack, StackOptions

FRONTS = ["extproc", "fast"]


class FastStack(Stack):
    """``Stack`` with the fast front in place of ext_proc between Envoy and the director."""

    def __init__(self, options: StackOptions, *, als_flush_interval_s: float = 0.05) -> None:
        super().__init__(options)
        self.als_flush_interval_s = als_flush_interval_s
        self.front: FastFront | None = None

    async def start(self) -> None:
        o = self.options
        try:
            if o.simulate:
                from endpoint_picker.sim import start_fleet

                self.fleet = await start_fleet(
                    o.simulate, o.sim_profile, base_port=o.sim_base_port, **o.sim_overrides
                )
                o.epp.endpoints = [
                    *o.epp.endpoints,
                    *(f"sim-{i}=127.0.0.1:{p}" for i, p in enumerate(self.fleet.ports)),
                ]
            await self.epp.start()
            assert self.epp.director is not None
            front = FastFront(self.epp.director, o.epp.host, 0, 0, ready=self.epp.ready)
            await front.start()
            self.front = front
            self.epp._stoppers.append(front.stop)  # the EPP's servers stop with the EPP
            config = fast_bootstrap(
                o.listen_port,
                o.epp.host,
                front.port,
                front.als_port,
                failure_mode=o.failure_mode,  # type: ignore[arg-type]
                pool_endpoints=self.pool_endpoints or None,
                admin_port=o.admin_port,
                access_log_path=o.access_log_path,
                als_flush_interval_s=self.als_flush_interval_s,
            )
            self.envoy = ManagedEnvoy(config, concurrency=o.envoy_concurrency)
            await self.envoy.start()
        except BaseException:
            await self.stop()
            raise


@asynccontextmanager
async def running(
    front: str,
    directory: Path,
    *,
    simulate: int = 1,
    objectives: Mapping[str, int | None] | None = None,
    config: str | None = None,
    sim_overrides: Mapping[str, Any] | None = None,
    failure_mode: str = "FailClose",
    access_log: bool = False,
    als_flush_interval_s: float = 0.05,
) -> AsyncIterator[Stack]:
    """``e2e_support.running_stack`` for any front in ``FRONTS`` (ext_proc FailOpen: buffered)."""
    options = e2e_support._options(
        "extproc",
        directory,
        simulate=simulate,
        objectives=objectives if objectives is not None else {"high": 10, "low": -10},
        config=config,
        sim_overrides=sim_overrides or {},
        mode="buffered" if failure_mode == "FailOpen" else "duplex",
        failure_mode=failure_mode,
        access_log=access_log,
    )
    if front == "fast":
        stack: Stack = FastStack(options, als_flush_interval_s=als_flush_interval_s)
    elif front == "extproc":
        stack = Stack(options)
    else:
        raise ValueError(f"unknown front {front!r}")
    await stack.start()
    try:
        yield stack
    finally:
        await stack.stop()
