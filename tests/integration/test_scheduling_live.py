"""The scheduler follows real load: the data layer scrapes real simulators over HTTP, and the
default profile steers new requests away from the instance that is busy."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from endpoint_picker.config import build_scheduler, load_config
from endpoint_picker.datalayer import DataLayer
from endpoint_picker.datastore import Datastore
from endpoint_picker.requests import PARSERS
from endpoint_picker.sim import start_fleet

pytestmark = pytest.mark.integration


async def test_default_profile_avoids_the_loaded_simulator() -> None:
    # Slow decoding and one sequence at a time, so a handful of requests queue up on sim 0.
    fleet = await start_fleet(
        3, "tiny-test", max_num_seqs=1, inter_token_latency=0.05, default_max_tokens=20
    )
    ds = Datastore()
    ds.set_static_endpoints({f"sim-{i}": ("127.0.0.1", p) for i, p in enumerate(fleet.ports)})
    layer = DataLayer(ds, refresh_interval=0.02)
    await layer.start()
    busy = ds.endpoint("sim-0")
    assert busy is not None
    try:
        async with aiohttp.ClientSession() as session:
            body = json.dumps({"model": "sim-model", "prompt": "load", "max_tokens": 20})
            url = f"http://127.0.0.1:{fleet.ports[0]}/v1/completions"
            load = [asyncio.create_task(session.post(url, data=body)) for _ in range(6)]
            # Wait until a scrape has seen the queue on sim 0 (bounded, no timing assertion).
            for _ in range(200):
                if busy.metrics.waiting_queue_size >= 3:
                    break
                await asyncio.sleep(0.02)
            assert busy.metrics.waiting_queue_size >= 3, busy.metrics
            scheduler = build_scheduler(load_config(None))
            parser = PARSERS["openai-parser"]
            picks = []
            for i in range(20):
                req = parser.parse(
                    {":path": "/v1/completions"},
                    json.dumps({"model": "sim-model", "prompt": f"fresh prompt {i}"}).encode(),
                    "/v1/completions",
                )
                picks.append(scheduler.schedule(req, ds.endpoints()).endpoints[0].name)
            assert "sim-0" not in picks
            assert {"sim-1", "sim-2"} & set(picks)
            for resp in await asyncio.gather(*load):
                resp.release()
    finally:
        await layer.stop()
        await fleet.stop()
