"""The live status page on the metrics port: its JSON while traffic flows, and the page itself
as headless Chromium renders it (endpoints and a decision on screen, a screenshot taken).

Chromium is Debian's ``chromium`` package (``make test`` installs it where it can). Without it
the browser test is skipped locally and fails under CI, so CI cannot pass without running it.
Set ``EPP_UPDATE_SCREENSHOT=1`` to refresh docs/status-page.png from this test.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from e2e_support import (
    FAIRNESS_HEADER,
    MODEL,
    OBJECTIVE_HEADER,
    running_stack,
)

from endpoint_picker.runner.stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]
DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "status-page.png"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def stack(front: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    async with running_stack(front, tmp_path_factory.mktemp("status"), simulate=2) as s:
        yield s


def _status_url(stack: Stack) -> str:
    ms = stack.epp.metrics_server
    assert ms is not None
    return f"http://127.0.0.1:{ms.port}/"


async def _send(session: aiohttp.ClientSession, stack: Stack, objective: str, n: int) -> None:
    body = {"model": MODEL, "prompt": "status page " * 20, "max_tokens": 4}
    headers = {OBJECTIVE_HEADER: objective, FAIRNESS_HEADER: "tenant-a"}
    for _ in range(n):
        async with session.post(stack.url + "/v1/completions", json=body, headers=headers) as r:
            assert r.status == 200, await r.text()
            await r.read()


async def _wait_for_outcomes(stack: Stack, n: int) -> None:
    director = stack.epp.director
    assert director is not None
    for _ in range(200):
        if sum(director.outcomes.values()) >= n:
            return
        await asyncio.sleep(0.05)


async def test_status_json_shows_pool_decisions_and_totals(stack: Stack) -> None:
    director = stack.epp.director
    assert director is not None
    before = sum(director.outcomes.values())
    async with aiohttp.ClientSession() as session:
        await _send(session, stack, "high", 3)
        await _wait_for_outcomes(stack, before + 3)
        async with session.get(_status_url(stack) + "status.json") as r:
            assert r.status == 200
            snap = await r.json()
        async with session.get(_status_url(stack)) as r:
            assert r.status == 200
            assert r.content_type == "text/html"
            assert "endpoint-picker" in await r.text()
    names = {ep.name for ep in stack.epp.datastore.endpoints()}
    assert {e["name"] for e in snap["endpoints"]} == names
    assert all(e["healthy"] for e in snap["endpoints"])
    decision = snap["decisions"][0]
    assert decision["objective"] == "high" and decision["priority"] == 10
    assert decision["endpoint"] in names
    profile = decision["profiles"][0]
    assert {c["endpoint"] for c in profile["candidates"]} == names
    # "why this endpoint": every scorer's score for every candidate, and the picked one's total
    # is the highest.
    scorers = set(profile["weights"])
    assert scorers and all(set(c["scores"]) == scorers for c in profile["candidates"])
    best = max(profile["candidates"], key=lambda c: c["total"])
    assert best["total"] == next(
        c["total"] for c in profile["candidates"] if c["endpoint"] == decision["endpoint"]
    )
    assert snap["totals"]["high"]["completed"] >= 3
    assert snap["flow_control"]["enabled"] is True


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


async def _browser(*args: str) -> str:
    exe = _chromium()
    assert exe is not None
    proc = await asyncio.create_subprocess_exec(
        exe,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--window-size=1400,1000",
        "--virtual-time-budget=4000",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode(errors="replace")


async def test_page_in_headless_chromium_while_traffic_flows(
    stack: Stack, front: str, tmp_path: Path
) -> None:
    if front != "fast":
        pytest.skip("the page is the same with either front; one browser run is enough")
    if _chromium() is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (make test installs Debian's chromium)")
        pytest.skip("chromium not installed (apt-get install chromium)")
    stop = asyncio.Event()

    async def traffic() -> None:
        async with aiohttp.ClientSession() as session:
            while not stop.is_set():
                await _send(session, stack, "high", 1)
                await _send(session, stack, "low", 1)

    task = asyncio.create_task(traffic())
    try:
        await asyncio.sleep(0.5)
        url = _status_url(stack)
        dom = await _browser("--dump-dom", url)
        for ep in stack.epp.datastore.endpoints():
            assert f'data-endpoint="{ep.name}"' in dom, dom[:3000]
        assert 'class="decision"' in dom, dom[:3000]
        assert ">no decisions yet</td>" not in dom
        assert ">no endpoints in the pool</td>" not in dom
        shot = tmp_path / "status.png"
        await _browser(f"--screenshot={shot}", url)
    finally:
        stop.set()
        await task
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 20_000, len(data)  # a rendered page, not a blank canvas
    if os.environ.get("EPP_UPDATE_SCREENSHOT"):
        DOCS_SCREENSHOT.write_bytes(data)
