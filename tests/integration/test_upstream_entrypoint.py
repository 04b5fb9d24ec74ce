"""The image's entrypoint run with upstream's chart arguments, as a real process.

``ENTRYPOINT`` is read from the Dockerfile and run with GIE v1.5.0's chart argument list (the
config path points at our example, ports are free ones, and ``--host 127.0.0.1`` keeps the test
on loopback). The cluster is the FAKE API server from ``tests/fakes``, reached through
``KUBECONFIG`` as in-cluster config would be. Checked: the process serves in Kubernetes mode,
logs zap-style JSON lines, guards ``/metrics`` with TokenReview + SubjectAccessReview
(upstream's default), and stops cleanly on SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # repo root: tests.fakes

from tests.fakes.k8s_cluster import POOL, cluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]
ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = "system:serviceaccount:monitoring:prometheus"


def entrypoint() -> list[str]:
    """The Dockerfile's ENTRYPOINT (exec form), with ``epp`` resolved in this environment."""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("ENTRYPOINT "):
            argv: list[str] = json.loads(line.removeprefix("ENTRYPOINT "))
            assert argv == ["epp"]
            return [str(Path(sys.executable).parent / argv[0])]
    raise AssertionError("no ENTRYPOINT in the Dockerfile")


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


async def read_json_lines(stream: Any, until: str, seen: list[dict[str, Any]]) -> None:
    """Read stderr lines (each must be a JSON object) until one's msg contains ``until``."""
    while True:
        line = await stream.readline()
        assert line, f"process ended before logging {until!r}; got {seen}"
        record = json.loads(line)
        seen.append(record)
        if until in record["msg"]:
            return


async def test_gie_chart_arguments_run_through_the_entrypoint(tmp_path: Path) -> None:
    async with cluster() as c:
        if c.fake is None:
            pytest.skip("needs the fake API server (TokenReview answers)")
        await c.add_pool()
        await c.add_pod("p1", "10.0.0.1")
        c.fake.users = {"prom-token": PROMETHEUS, "nobody-token": "nobody"}
        c.fake.allowed = {(PROMETHEUS, "get", "/metrics")}
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(json.dumps(c.fake.kubeconfig(token="epp")))
        grpc, health, metrics = free_ports(3)
        args = [
            "--pool-name", POOL, "--pool-namespace", "default",
            "--pool-group", "inference.networking.k8s.io",
            "--zap-encoder", "json",
            "--config-file", str(ROOT / "examples" / "config" / "default.yaml"),
            "--v", "1", "--tracing=false",
            "--grpc-port", str(grpc), "--grpc-health-port", str(health),
            "--metrics-port", str(metrics), "--drain-timeout=0s", "--host", "127.0.0.1",
        ]  # fmt: skip
        env = os.environ | {"KUBECONFIG": str(kubeconfig), "NAMESPACE": "default"}
        proc = await asyncio.create_subprocess_exec(
            *entrypoint(), *args, env=env, stderr=asyncio.subprocess.PIPE
        )
        seen: list[dict[str, Any]] = []
        try:
            assert proc.stderr is not None
            await asyncio.wait_for(read_json_lines(proc.stderr, "ext_proc listening", seen), 60)
            assert all({"ts", "level", "logger", "msg"} <= set(r) for r in seen)
            url = f"http://127.0.0.1:{metrics}/metrics"
            async with aiohttp.ClientSession() as http:
                async with http.get(url) as r:
                    assert r.status == 401
                bearer = {"Authorization": "Bearer nobody-token"}
                async with http.get(url, headers=bearer) as r:
                    assert r.status == 403
                bearer = {"Authorization": "Bearer prom-token"}
                async with http.get(url, headers=bearer) as r:
                    assert r.status == 200
                    assert "inference_pool_average_kv_cache_utilization" in await r.text()
            kinds = {resource for _, verb, _, resource in c.fake.requests if verb == "create"}
            assert {"tokenreviews", "subjectaccessreviews"} <= kinds
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            rest = await asyncio.wait_for(proc.stderr.read(), 30) if proc.stderr else b""
        assert await asyncio.wait_for(proc.wait(), 30) == 0, rest.decode()[-2000:]
        assert b"Traceback" not in rest
