"""``epp sim`` as a real process: ready lines, port file, serving, clean exit on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

pytestmark = pytest.mark.integration


async def test_epp_sim_serves_writes_ports_and_stops_on_sigterm(tmp_path: Path) -> None:
    port_file = tmp_path / "ports.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "endpoint_picker.cli", "sim", "--count", "3", "--base-port", "0",
        "--port-file", str(port_file), "--lora", "ad1", "--max-num-seqs", "3",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        lines = [(await asyncio.wait_for(proc.stdout.readline(), 60)).decode() for _ in range(3)]
        ports = json.loads(port_file.read_text())
        assert len(ports) == 3 and len(set(ports)) == 3
        for i, (line, port) in enumerate(zip(lines, ports, strict=True)):
            assert line.strip() == f"sim {i} listening on http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            for port in ports:
                body = {"model": "ad1", "prompt": "hello", "max_tokens": 2, "ignore_eos": True}
                async with http.post(f"http://127.0.0.1:{port}/v1/completions", json=body) as r:
                    assert r.status == 200
                    assert r.headers["x-sim-endpoint"] == f"127.0.0.1:{port}"
                async with http.get(f"http://127.0.0.1:{port}/metrics") as r:
                    assert 'max_lora="2"' in await r.text()
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 30) == 0


async def test_epp_sim_bad_knob_is_a_clear_error() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "endpoint_picker.cli", "sim", "--jitter", "0.9",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1
    assert b"jitter" in err and b"Traceback" not in err
