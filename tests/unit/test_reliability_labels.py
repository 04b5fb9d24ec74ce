"""Issue 18 items 1-2: label values safe by construction, client-chosen labels bounded."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from prometheus_client import generate_latest
from prometheus_client.registry import Collector
from tests.unit.reliability_support import World, body, headers, make_world

from endpoint_picker import metrics as m
from endpoint_picker.datastore import Datastore
from endpoint_picker.errors import InferenceError
from endpoint_picker.metrics import REGISTRY
from endpoint_picker.runner.observability import MetricsServer


@pytest.fixture
async def world() -> AsyncIterator[World]:
    w = await make_world()
    yield w
    await w.admission.stop()


def _series(name: str) -> int:
    """How many samples of family ``name`` the registry exposes."""
    return sum(len(f.samples) for f in REGISTRY.collect() if f.name == name)


async def _one(world: World, hdrs: dict[str, str], data: bytes) -> None:
    world.scrape()
    try:
        ctx = await world.director.handle_request(hdrs, data)
    except InferenceError:
        return
    world.director.handle_response_headers(ctx, {":status": "404"})
    world.director.finish(ctx)


async def test_a_lone_surrogate_model_name_does_not_break_the_exposition(world: World) -> None:
    await _one(world, headers(), b'{"model": "\\udcff", "prompt": "x"}')
    text = generate_latest(REGISTRY).decode()
    assert 'model_name="\\\\udcff"' in text


async def test_invalid_bytes_in_the_fairness_header_do_not_break_the_exposition(
    world: World,
) -> None:
    fid = b"\xff\xfe".decode("utf-8", "surrogateescape")  # as the fronts decode headers
    await _one(world, headers(**{"x-gateway-inference-fairness-id": fid}), body())
    generate_latest(REGISTRY)  # raised UnicodeEncodeError before the fix


def test_label_text_is_valid_utf8_and_bounded() -> None:
    assert m.label_text("ok") == "ok"
    assert m.label_text("\ud800x").encode("utf-8")
    assert len(m.label_text("y" * 10_000)) == m.MAX_LABEL_CHARS


async def test_new_model_names_per_request_fold_into_other(world: World) -> None:
    before = _series("inference_objective_request_total")
    try:
        for i in range(m.MAX_MODEL_LABELS + 200):
            await _one(world, headers(), body(model=f"made-up-{i}"))
        grown = _series("inference_objective_request_total") - before
        assert grown <= m.MAX_MODEL_LABELS + 1
        assert m.REQUEST_TOTAL.labels("other", "other", "0")._value.get() >= 200
    finally:
        m.MODEL_LABELS.clear()  # later tests name models of their own


def test_released_values_free_their_place_and_their_series() -> None:
    bound = m.BoundedValues("test", 2)
    bound.admit("a")
    bound.admit("b")
    assert bound.admit("c") == "other"
    fid = "tenant-to-release"
    m.FAIRNESS_LABELS.clear()
    gauge = m.Gauge("test_release_gauge", "x", ("fairness_id",), registry=None)
    gauge.labels(fid).set(1)
    m.FAIRNESS_LABELS.release(fid)
    assert (fid,) not in gauge._metrics


class _BlockingCollector(Collector):
    """A fake collector that blocks its scrape until ``gate`` opens (at most 30 s)."""

    def __init__(self) -> None:
        self.started, self.gate, self.done = threading.Event(), threading.Event(), False

    def describe(self) -> list[Any]:
        return []  # registering must not run collect()

    def collect(self) -> Iterator[Any]:
        self.started.set()
        self.gate.wait(30)
        self.done = True
        return iter(())


async def test_a_slow_scrape_does_not_stall_the_event_loop() -> None:
    slow = _BlockingCollector()
    server = MetricsServer(Datastore(), port=0)
    await server.start()
    REGISTRY.register(slow)
    try:
        async with aiohttp.ClientSession() as session:
            base = f"http://127.0.0.1:{server.port}"
            scrape = asyncio.ensure_future(session.get(f"{base}/metrics"))
            if not await asyncio.to_thread(slow.started.wait, 30):
                async with await scrape as resp:
                    raise AssertionError(await resp.text())
            async with session.get(f"{base}/healthz") as resp:
                assert resp.status == 200
            assert not slow.done  # answered while the scrape was still running
            slow.gate.set()
            async with await scrape as resp:
                assert resp.status == 200
    finally:
        slow.gate.set()
        REGISTRY.unregister(slow)
        await server.stop()
