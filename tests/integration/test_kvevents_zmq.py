"""KV-event subscriptions over real ZMQ sockets (127.0.0.1): following endpoints, sequence
gaps answered from the simulator's replay socket, and what happens without replay."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from itertools import pairwise
from typing import Any

import aiohttp
import msgpack
import pytest
import pytest_asyncio
import zmq
from e2e_support import wait_until

from endpoint_picker.datalayer.kvevents import KVEventIngester
from endpoint_picker.datalayer.kvevents_zmq import KVEventSubscriber
from endpoint_picker.datastore import Datastore
from endpoint_picker.scheduling.plugins.precise_index import BlockIndex, block_keys, root_key
from endpoint_picker.sim import SimFleet, start_fleet
from endpoint_picker.sim.kvcache import block_hashes as engine_hashes
from endpoint_picker.sim.tokenizer import token_ids, tokenize

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

MODEL = "sim-model"


@pytest_asyncio.fixture(loop_scope="module")
async def fleet() -> AsyncIterator[SimFleet]:
    f = await start_fleet(2, "tiny-test", kv_events_port=-1, kv_events_replay_port=-1)
    yield f
    await f.stop()


async def send(url: str, prompt: str) -> None:
    body = {"model": MODEL, "prompt": prompt, "max_tokens": 1}
    async with aiohttp.ClientSession() as s, s.post(url + "/v1/completions", json=body) as r:
        assert r.status == 200


def keys(prompt: str) -> list[int]:
    return block_keys(token_ids(prompt), 4, root_key("", MODEL))


def held(ing: KVEventIngester, prompt: str, name: str) -> int:
    return ing.index.match(keys(prompt), 0.0).get(name, 0)


async def subscribed(
    fleet: SimFleet, replay: bool
) -> tuple[Datastore, KVEventIngester, KVEventSubscriber]:
    ds = Datastore()
    ing = KVEventIngester(BlockIndex(), 4)
    names = [f"sim-{i}" for i in range(len(fleet.servers))]
    sub = KVEventSubscriber(
        ing,
        addresses={n: s.kv_events.endpoint for n, s in zip(names, fleet.servers, strict=True)},
        replay_addresses=(
            {n: s.kv_events.replay_endpoint for n, s in zip(names, fleet.servers, strict=True)}
            if replay
            else None
        ),
    )
    sub.attach(ds)
    await sub.start()
    ds.set_static_endpoints({n: ("127.0.0.1", p) for n, p in zip(names, fleet.ports, strict=True)})
    # wait for both streams to carry events (ZMQ subscriptions join asynchronously)
    for i, url in enumerate(fleet.urls):
        n = 0
        while held(ing, f"join {i} {n} " * 8, f"sim-{i}") == 0:
            n += 1
            await send(url, f"join {i} {n} " * 8)

            def arrived(i: int = i, n: int = n) -> bool:
                return held(ing, f"join {i} {n} " * 8, f"sim-{i}") > 0

            try:
                await wait_until(arrived, 0.3)
            except AssertionError:
                assert n < 50, "no events arrived"
    return ds, ing, sub


async def test_subscriptions_follow_endpoints(fleet: SimFleet) -> None:
    ds, ing, sub = await subscribed(fleet, replay=False)
    try:
        assert sub.subscriptions == ["sim-0", "sim-1"]
        prompt = "alpha beta gamma delta " * 5
        await send(fleet.urls[1], prompt)
        await wait_until(lambda: held(ing, prompt, "sim-1") == 5, what="blocks on sim-1")
        ds.set_static_endpoints({"sim-0": ("127.0.0.1", fleet.ports[0])})  # sim-1 leaves
        assert sub.subscriptions == ["sim-0"]
        assert held(ing, prompt, "sim-1") == 0  # its entries went with it
        await send(fleet.urls[1], "not heard " * 8)
        await send(fleet.urls[0], prompt)
        await wait_until(lambda: held(ing, prompt, "sim-0") == 5, what="blocks on sim-0")
        assert ing.index.endpoint_keys("sim-1") == 0
    finally:
        await sub.stop()


async def test_a_gap_is_filled_from_the_replay_socket(fleet: SimFleet) -> None:
    _, ing, sub = await subscribed(fleet, replay=True)
    try:
        pub = fleet.servers[0].kv_events
        pub.paused = True  # batches are numbered and buffered, but never reach the wire
        lost = "lost while away " * 4
        await send(fleet.urls[0], lost)
        pub.paused = False
        after = "after the gap " * 4
        await send(fleet.urls[0], after)
        await wait_until(lambda: held(ing, after, "sim-0") > 0, what="the batch after the gap")
        assert held(ing, lost, "sim-0") == 3  # replayed
        assert ing.stats.gaps == 0  # nothing was left missing
    finally:
        await sub.stop()


async def test_without_replay_a_gap_keeps_the_index(fleet: SimFleet) -> None:
    _, ing, sub = await subscribed(fleet, replay=False)
    try:
        before = "known before us " * 4
        await send(fleet.urls[0], before)
        await wait_until(lambda: held(ing, before, "sim-0") == 3)
        pub: Any = fleet.servers[0].kv_events
        pub.paused = True
        await send(fleet.urls[0], "lost while away " * 4)
        pub.paused = False
        after = "after the gap " * 4
        await send(fleet.urls[0], after)
        await wait_until(lambda: held(ing, after, "sim-0") > 0)
        assert ing.stats.gaps == 1
        assert held(ing, "lost while away " * 4, "sim-0") == 0
        assert held(ing, before, "sim-0") == 3  # kept, as docs/precise-prefix.md says why
    finally:
        await sub.stop()


async def test_sglang_events_feed_the_same_index() -> None:
    fleet = await start_fleet(1, "tiny-test", kv_events_port=-1, kv_events_engine="sglang")
    try:
        _, ing, sub = await subscribed(fleet, replay=False)
        try:
            prompt = "sglang pages of tokens " * 3
            await send(fleet.urls[0], prompt)
            await wait_until(lambda: held(ing, prompt, "sim-0") == 3, what="sglang blocks")
            pub: Any = fleet.servers[0].kv_events
            batches = [msgpack.unpackb(payload) for _, payload in pub._buffer]
            assert all(len(b) == 2 for b in batches)  # [ts, events]: no data-parallel rank
            stored = [e for b in batches for e in b[1] if e[0] == "BlockStored"]
            # SGLang's shape: one page per event, no medium or LoRA name; lora_id is sent (nil)
            assert len(stored) >= 3 and all(len(e) == 6 and len(e[1]) == 1 for e in stored)
            for prev, cur in pairwise(stored[:3]):
                assert cur[2] == prev[1][0]  # each page's parent is the page before it
        finally:
            await sub.stop()
    finally:
        await fleet.stop()


async def test_oracle_and_reset(fleet: SimFleet) -> None:
    """``/debug/kv-blocks`` lists what a server holds; the fleet-wide oracle counts what the
    best server held at arrival; ``/reset_prefix_cache`` clears the index through the events."""
    _, ing, sub = await subscribed(fleet, replay=False)
    try:
        prompt = "oracle knows where " * 4
        await send(fleet.urls[1], prompt)
        await send(fleet.urls[0], prompt)  # a miss on sim-0, a hit had it gone to sim-1
        kv0 = fleet.servers[0].engine.kv
        assert kv0.oracle_hits - kv0.hits == 12 - 4  # 3 full blocks, the last one recomputed
        async with aiohttp.ClientSession() as s:
            async with s.get(fleet.urls[1] + "/debug/kv-blocks") as r:
                body = await r.json()
            tokens = tokenize(prompt)
            hashes = engine_hashes(tokens, body["block_size"], body["hash_seed"] + body["model"])
            assert set(hashes) <= set(body["blocks"])
            await wait_until(lambda: held(ing, prompt, "sim-1") == 3)
            async with s.post(fleet.urls[1] + "/reset_prefix_cache") as r:
                assert r.status == 200
        await wait_until(lambda: ing.index.endpoint_keys("sim-1") == 0, what="cleared")
        assert held(ing, prompt, "sim-0") == 3 and ing.stats.cleared == 1
    finally:
        await sub.stop()


async def test_a_taken_central_endpoint_is_a_clear_error() -> None:
    from endpoint_picker.errors import ConfigError
    from endpoint_picker.scheduling.plugins.precise import PrecisePrefixCacheProducer

    params = {"kvEventsConfig": {"zmqEndpoint": "tcp://127.0.0.1:*"}}
    first = PrecisePrefixCacheProducer.from_params("p", params)
    await first.start()
    try:
        socket = first.subscriber._socks[""]
        taken = bytes(socket.getsockopt(zmq.LAST_ENDPOINT)).decode()
        second = PrecisePrefixCacheProducer.from_params(
            "p", {"kvEventsConfig": {"zmqEndpoint": taken}}
        )
        with pytest.raises(ConfigError, match="cannot listen for KV events") as err:
            await second.start()
        assert err.value.path == "plugins[p].parameters.kvEventsConfig.zmqEndpoint"
        await second.stop()
    finally:
        await first.stop()


async def test_index_metrics_with_llmd_names(fleet: SimFleet) -> None:
    from endpoint_picker.metrics import REGISTRY
    from endpoint_picker.scheduling.plugins.precise import PrecisePrefixCacheProducer

    prod = PrecisePrefixCacheProducer.from_params(
        "p",
        {
            "tokenProcessorConfig": {"blockSize": 4},
            "indexerConfig": {"kvBlockIndexConfig": {"enableMetrics": True}},
        },
    )
    ds = Datastore()
    prod.attach(ds, {"sim-0": fleet.servers[0].kv_events.endpoint})
    await prod.start()
    try:
        ds.set_static_endpoints({"sim-0": ("127.0.0.1", fleet.ports[0])})
        n = 0
        while REGISTRY.get_sample_value("kvcache_index_admissions_total") in (None, 0.0):
            n += 1
            assert n < 50, "no events arrived"
            await send(fleet.urls[0], f"metric words {n} " * 4)
            await asyncio.sleep(0.1)
        assert REGISTRY.get_sample_value("kvcache_index_size") == len(prod.index)
        assert REGISTRY.get_sample_value("kvcache_events_total", {"kind": "errors"}) == 0
    finally:
        await prod.stop()
    assert REGISTRY.get_sample_value("kvcache_index_size") is None  # unregistered
