"""Shared integration fixtures: real Envoy processes, real upstream servers, the ext_proc server.

Everything binds 127.0.0.1 on ephemeral ports. Envoys are started once per session per distinct
bootstrap (``envoy_factory``) because each start costs about a second of CPU on a 2-core box.

Session fixtures are async and live on the *session* event loop; a test using them must run on
that loop too, or the servers never get scheduled while it waits:

    pytestmark = pytest.mark.asyncio(loop_scope="session")

Reusable pieces for end-to-end tests: ``envoy_factory`` (``await envoy_factory(epp_port=...,
**bootstrap_kwargs)``), ``echo_upstreams`` (servers that report what they received),
``sim_fleet`` (``endpoint_picker.sim`` instances) and ``start_extproc`` (an ``ExtProcServer`` for
any director, stopped at session end). Helpers (``EchoUpstream``, ``free_port``) are in
``extproc_support.py`` beside this file; the one fake director is ``tests/fakes/director.py``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from e2e_support import FRONTS, PICKED_CONFIG, running_stack
from extproc_support import EchoUpstream

from endpoint_picker.envoy import ManagedEnvoy, bootstrap
from endpoint_picker.extproc import ExtProcServer
from endpoint_picker.runner.stack import Stack


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def echo_upstreams() -> AsyncIterator[list[EchoUpstream]]:
    """Three echo servers: a test may route to any and check what each one received."""
    servers = [EchoUpstream() for _ in range(3)]
    for s in servers:
        await s.start()
    yield servers
    for s in servers:
        await s.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def sim_fleet() -> AsyncIterator[Any]:
    """Two ``endpoint_picker.sim`` instances (profile ``tiny-test``)."""
    from endpoint_picker.sim import start_fleet

    fleet = await start_fleet(2, profile="tiny-test")
    yield fleet
    await fleet.stop()


# -- Envoy --------------------------------------------------------------------------------
EnvoyFactory = Callable[..., Awaitable[ManagedEnvoy]]


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def envoy_factory(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[EnvoyFactory]:
    """``await envoy_factory(epp_port=P, **bootstrap_kwargs)``: a started Envoy, cached per config.

    Each Envoy writes its access log to ``<workdir>/access.log`` (``envoy.access_log``).
    """
    started: dict[str, ManagedEnvoy] = {}

    async def get(*, epp_port: int, epp_host: str = "127.0.0.1", **kwargs: Any) -> ManagedEnvoy:
        key = json.dumps({"epp": [epp_host, epp_port], **kwargs}, sort_keys=True)
        if key not in started:
            workdir = tmp_path_factory.mktemp("envoy")
            access_log = workdir / "access.log"
            config = bootstrap(0, epp_host, epp_port, access_log_path=str(access_log), **kwargs)
            envoy = ManagedEnvoy(config, workdir=workdir)
            envoy.access_log = access_log  # type: ignore[attr-defined]
            await envoy.start()
            started[key] = envoy
        return started[key]

    yield get
    for envoy in started.values():
        await envoy.stop()


StartExtProc = Callable[..., Awaitable[ExtProcServer]]


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def start_extproc() -> AsyncIterator[StartExtProc]:
    """``await start_extproc(director, **kwargs)``: a started ExtProcServer on free ports."""
    servers: list[ExtProcServer] = []

    async def start(director: Any, **kwargs: Any) -> ExtProcServer:
        kwargs.setdefault("port", 0)
        kwargs.setdefault("health_port", 0)
        server = ExtProcServer(director, **kwargs)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop(grace=0.5)


# -- end to end (see e2e_support.py): module-scoped, on the module's event loop -----------------
@pytest.fixture(scope="module", params=FRONTS)
def front(request: pytest.FixtureRequest) -> str:
    """The front under test (module scope: one stack per module and front)."""
    return str(request.param)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """One client session per test module."""
    async with aiohttp.ClientSession() as s:
        yield s


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def outsider() -> AsyncIterator[EchoUpstream]:
    """A server outside the pool that clients try to reach through the gateway."""
    echo = EchoUpstream()
    await echo.start()
    yield echo
    await echo.stop()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def picked(front: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """Three simulators behind a stack whose only scheduling step is the conformance header
    filter: the test header decides the endpoint."""
    directory = tmp_path_factory.mktemp(f"picked-{front}")
    async with running_stack(front, directory, simulate=3, config=PICKED_CONFIG) as s:
        yield s
