"""The processes of one arm: simulated pool, and in front of it Envoy alone or ``epp run``.

Each part is its own OS process (the simulators in one ``epp sim``; the EPP with its managed
Envoy in one ``epp run``; the round-robin baseline a bare Envoy), so the load generator's CPU
never runs inside the EPP's event loop. Everything is stopped by the PID that started it.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from endpoint_picker.envoy.process import stop_process

EPP = [sys.executable, "-m", "endpoint_picker.cli"]
_URL_LINE = re.compile(r"send requests to (http://[\d.]+:\d+)/")


def free_port() -> int:
    """A port free right now on 127.0.0.1 (the kernel's choice; a tiny race is accepted)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _stop(proc: asyncio.subprocess.Process | None, grace_s: float = 10.0) -> None:
    await stop_process(proc, grace_s)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@dataclass
class Pool:
    """``count`` simulators of ``profile`` with ``overrides`` in one ``epp sim`` process."""

    count: int
    profile: str
    overrides: dict[str, Any]
    workdir: Path
    ports: list[int] = field(default_factory=list)
    proc: asyncio.subprocess.Process | None = None

    @property
    def endpoints(self) -> list[str]:
        return [f"127.0.0.1:{p}" for p in self.ports]

    async def start(self, wait_s: float = 30.0) -> None:
        port_file = self.workdir / "sim-ports.json"
        port_file.unlink(missing_ok=True)
        args = [*EPP, "sim", "--count", str(self.count), "--base-port", "0"]
        args += ["--profile", self.profile, "--port-file", str(port_file)]
        for key, value in self.overrides.items():
            args += [f"--{key.replace('_', '-')}", str(value)]
        log = self.workdir / "sim.log"
        with log.open("wb") as fh:
            self.proc = await asyncio.create_subprocess_exec(
                *args, stdin=asyncio.subprocess.DEVNULL, stdout=fh, stderr=fh
            )
        deadline = time.monotonic() + wait_s
        while not port_file.exists():
            if self.proc.returncode is not None or time.monotonic() > deadline:
                await self.stop()
                raise RuntimeError(f"epp sim did not start:\n{_tail(log)}")
            await asyncio.sleep(0.1)
        self.ports = [int(p) for p in json.loads(port_file.read_text())]

    async def stop(self) -> None:
        await _stop(self.proc)
        self.proc = None


def round_robin_bootstrap(endpoints: list[str]) -> dict[str, Any]:
    """Envoy without ext_proc, ROUND_ROBIN over the pool: what a Kubernetes Service gives."""
    t = "type.googleapis.com/envoy.extensions."
    hosts = [e.rsplit(":", 1) for e in endpoints]
    lb = [
        {"endpoint": {"address": {"socket_address": {"address": h, "port_value": int(p)}}}}
        for h, p in hosts
    ]
    big = {"max_connections": 100_000, "max_pending_requests": 100_000, "max_requests": 100_000}
    hcm = {
        "@type": t + "filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "ingress",
        "codec_type": "AUTO",
        "route_config": {
            "virtual_hosts": [
                {
                    "name": "all",
                    "domains": ["*"],
                    "routes": [
                        {"match": {"prefix": "/"}, "route": {"cluster": "pool", "timeout": "300s"}}
                    ],
                }
            ]
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": t + "filters.http.router.v3.Router"},
            }
        ],
    }
    listener = {
        "name": "main",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
        "filter_chains": [
            {
                "filters": [
                    {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}
                ]
            }
        ],
    }
    cluster = {
        "name": "pool",
        "type": "STATIC",
        "connect_timeout": "2s",
        "lb_policy": "ROUND_ROBIN",
        "circuit_breakers": {"thresholds": [big]},
        "load_assignment": {"cluster_name": "pool", "endpoints": [{"lb_endpoints": lb}]},
    }
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {"listeners": [listener], "clusters": [cluster]},
    }


class Front:
    """What the client talks to: ``url``; ``metrics_url`` is the EPP's, when there is one."""

    url: str = ""
    metrics_url: str | None = None

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError


class RoundRobinFront(Front):
    """The baseline: a bare Envoy, no EPP."""

    def __init__(self, endpoints: list[str], workdir: Path) -> None:
        from endpoint_picker.envoy import ManagedEnvoy

        self.envoy = ManagedEnvoy(round_robin_bootstrap(endpoints), workdir=workdir / "envoy")

    async def start(self) -> None:
        await self.envoy.start()
        self.url = f"http://127.0.0.1:{self.envoy.port}"

    async def stop(self) -> None:
        await self.envoy.stop()


class EppFront(Front):
    """``epp run --endpoint ... [--config-file F]`` with its own managed Envoy, as a process;
    without a config file, the EPP runs as shipped."""

    def __init__(
        self,
        endpoints: list[str],
        config_file: Path | None,
        workdir: Path,
        *,
        front: str = "fast",
        config_text: str | None = None,
    ) -> None:
        self.endpoints = endpoints
        self.config_file = config_file
        self.config_text = config_text
        self.front = front
        self.workdir = workdir
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, wait_s: float = 60.0, tries: int = 3) -> None:
        """Start ``epp run`` on fresh ports; again on others when one was taken between
        choosing it and binding it (free_port's race, which other work on a shared machine
        wins now and then)."""
        for attempt in range(tries):
            try:
                await self._start_once(wait_s)
                return
            except RuntimeError as err:
                if "in use" not in str(err) or attempt == tries - 1:
                    raise

    async def _start_once(self, wait_s: float) -> None:
        self.url = ""
        metrics_port = free_port()
        args = [*EPP, "run", "--port", "0"]
        if self.config_file is not None:
            args += ["--config-file", str(self.config_file)]
        if self.config_text is not None:
            args += ["--config-text", self.config_text]
        # The fast front unless asked otherwise, as `epp run` defaults to; every port free, so
        # runs never collide.
        args += ["--front", self.front, "--pick-port", str(free_port())]
        args += ["--als-port", str(free_port())]
        args += ["--grpc-port", str(free_port()), "--grpc-health-port", str(free_port())]
        args += ["--metrics-port", str(metrics_port)]
        for i, ep in enumerate(self.endpoints):
            args += ["--endpoint", f"sim-{i}={ep}"]
        log = self.workdir / f"epp-{self.front}.log"
        with log.open("wb") as fh:
            self.proc = await asyncio.create_subprocess_exec(
                *args, stdin=asyncio.subprocess.DEVNULL, stdout=fh, stderr=fh
            )
        self.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        deadline = time.monotonic() + wait_s
        while not self.url:
            match = _URL_LINE.search(log.read_text(errors="replace"))
            if match:
                self.url = match.group(1)
            elif self.proc.returncode is not None or time.monotonic() > deadline:
                await self.stop()
                raise RuntimeError(f"epp run did not start:\n{_tail(log)}")
            else:
                await asyncio.sleep(0.2)

    async def stop(self) -> None:
        await _stop(self.proc)
        self.proc = None


async def wait_serving(url: str, model: str, wait_s: float = 30.0) -> None:
    """Until one small completion through the front answers 200 (endpoints scraped, routes up)."""
    body = {"model": model, "prompt": "warm up", "max_tokens": 1}
    deadline = time.monotonic() + wait_s
    last = ""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        while time.monotonic() < deadline:
            try:
                async with session.post(url + "/v1/completions", json=body) as resp:
                    if resp.status == 200:
                        await resp.read()
                        return
                    last = f"{resp.status} {(await resp.text())[:200]}"
            except (aiohttp.ClientError, TimeoutError) as err:
                last = repr(err)
            await asyncio.sleep(0.3)
    raise RuntimeError(f"{url} not serving after {wait_s:.0f}s: {last}")
