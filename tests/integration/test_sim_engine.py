"""Engine behaviour over real HTTP, measured on the simulator's own clock and metrics.

TTFT comes from the ``x-sim-ttft-ms`` header and the TTFT histogram, both stamped with the
engine's scheduled times, so the assertions hold exactly however busy the machine is. Waiting for
a state (``until``) polls /metrics with a generous deadline; nothing asserts wall-clock speed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from endpoint_picker.sim import SimFleet, start_fleet

pytestmark = pytest.mark.integration

Metrics = dict[str, list[tuple[dict[str, str], float]]]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def scrape(http: aiohttp.ClientSession, url: str) -> Metrics:
    async with http.get(f"{url}/metrics") as r:
        text = await r.text()
    out: Metrics = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def value(m: Metrics, name: str) -> float:
    return m[name][0][1]


async def until(
    http: aiohttp.ClientSession, url: str, cond: Callable[[Metrics], bool], limit: float = 20
) -> Metrics:
    """Poll /metrics until ``cond`` holds (a state to reach, not a speed to meet)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while True:
        m = await scrape(http, url)
        if cond(m):
            return m
        assert loop.time() < deadline, f"state not reached; last scrape: {m}"
        await asyncio.sleep(0.01)


async def complete(
    http: aiohttp.ClientSession,
    url: str,
    prompt: str,
    max_tokens: int = 2,
    model: str = "sim-model",
) -> tuple[dict[str, Any], float]:
    body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "ignore_eos": True}
    async with http.post(f"{url}/v1/completions", json=body) as r:
        assert r.status == 200, await r.text()
        out = await r.json()
        out["queue_s"] = float(r.headers["x-sim-queue-ms"]) / 1000
        return out, float(r.headers["x-sim-ttft-ms"]) / 1000


def words(tag: str, n: int) -> str:
    return " ".join(f"{tag}{i}" for i in range(n))


async def test_ttft_linear_in_uncached_tokens_and_prefix_hits_lower_it(
    http: aiohttp.ClientSession,
) -> None:
    overhead, per_token = 0.004, 0.0005
    async with await start_fleet(
        1, prefill_overhead=overhead, prefill_time_per_token=per_token
    ) as f:
        url = f.urls[0]
        ttfts = {}
        for n in (8, 40, 100, 200):
            out, ttfts[n] = await complete(http, url, words(f"len{n}x", n))
            assert out["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
        for n, t in ttfts.items():
            assert t == pytest.approx(overhead + n * per_token, rel=1e-9)
        # The repeated prompt hits the cache: (200 - 1) // 4 full blocks.
        out, again = await complete(http, url, words("len200x", 200))
        cached = out["usage"]["prompt_tokens_details"]["cached_tokens"]
        assert cached == 196
        assert again == pytest.approx(overhead + (200 - cached) * per_token, rel=1e-9)
        assert again < ttfts[8]
        # A different suffix after a shared prefix hits only the shared blocks.
        out, _ = await complete(http, url, words("len200x", 100) + " " + words("other", 50))
        assert out["usage"]["prompt_tokens_details"]["cached_tokens"] == 100
        m = await scrape(http, url)
        assert value(m, "vllm:prefix_cache_hits_total") == 296
        assert value(m, "vllm:prefix_cache_queries_total") == 8 + 40 + 100 + 200 + 200 + 150
        ttft_sum = value(m, "vllm:time_to_first_token_seconds_sum")
        assert ttft_sum == pytest.approx(sum(ttfts.values()) + again + overhead + 50 * per_token)


async def test_waiting_queue_grows_past_max_num_seqs_and_drains(
    http: aiohttp.ClientSession,
) -> None:
    async with await start_fleet(1, max_num_seqs=2, inter_token_latency=0.02) as f:
        url = f.urls[0]
        tasks = [asyncio.create_task(complete(http, url, words(f"q{i}x", 8), 40)) for i in range(6)]
        m = await until(http, url, lambda m: value(m, "vllm:num_requests_waiting") == 4)
        assert value(m, "vllm:num_requests_running") == 2
        results = await asyncio.gather(*tasks)
        m = await scrape(http, url)
        assert value(m, "vllm:num_requests_waiting") == 0
        assert value(m, "vllm:num_requests_running") == 0
        assert value(m, "vllm:request_queue_time_seconds_count") == 6
        assert value(m, "vllm:request_queue_time_seconds_sum") > 0  # some waited
        assert value(m, "vllm:generation_tokens_total") == 6 * 40
        assert all(r[0]["usage"]["completion_tokens"] == 40 for r in results)


async def test_itl_grows_with_batch_size_under_load_factor(http: aiohttp.ClientSession) -> None:
    itl = 0.005
    async with await start_fleet(
        1, max_num_seqs=4, inter_token_latency=itl, time_factor_under_load=2.0
    ) as f:
        url = f.urls[0]
        await complete(http, url, "solo", 11)
        m = await scrape(http, url)
        solo = value(m, "vllm:inter_token_latency_seconds_sum")
        assert solo == pytest.approx(10 * itl)  # one running: factor 1.0
        # 4 x 60 tokens: they overlap (each lasts >= 0.3 s), so some steps run with a bigger batch.
        await asyncio.gather(*(complete(http, url, f"b{i}", 60) for i in range(4)))
        m = await scrape(http, url)
        count = value(m, "vllm:inter_token_latency_seconds_count")
        assert count == 10 + 4 * 59
        mean_loaded = (value(m, "vllm:inter_token_latency_seconds_sum") - solo) / (count - 10)
        assert itl < mean_loaded <= 2.0 * itl + 1e-12


async def test_kv_usage_rises_with_load_and_eviction_frees_old_prefixes(
    http: aiohttp.ClientSession,
) -> None:
    # 32 blocks of 4 tokens: one 40-token prompt + 40 output tokens needs 20 blocks.
    async with await start_fleet(1, num_gpu_blocks=32, inter_token_latency=0.01) as f:
        url = f.urls[0]
        m = await scrape(http, url)
        assert value(m, "vllm:kv_cache_usage_perc") == 0
        a = asyncio.create_task(complete(http, url, words("a", 40), 40))
        b = asyncio.create_task(complete(http, url, words("b", 40), 40))
        # The second does not fit beside the first, so it waits though a slot is free.
        m = await until(http, url, lambda m: value(m, "vllm:num_requests_waiting") == 1)
        assert value(m, "vllm:num_requests_running") == 1
        assert value(m, "vllm:kv_cache_usage_perc") >= 10 / 32
        await asyncio.gather(a, b)
        m = await scrape(http, url)
        assert value(m, "vllm:kv_cache_usage_perc") == 0  # cached blocks are not "used"
        out, _ = await complete(http, url, words("b", 40), 1)
        assert out["usage"]["prompt_tokens_details"]["cached_tokens"] == 36  # still cached
        for tag in ("c", "d", "e"):
            await complete(http, url, words(tag, 40), 1)
        out, _ = await complete(http, url, words("a", 40), 1)
        assert out["usage"]["prompt_tokens_details"]["cached_tokens"] == 0  # evicted (LRU)


async def test_lora_info_reflects_running_and_waiting_adapters(
    http: aiohttp.ClientSession,
) -> None:
    load = 0.003
    async with await start_fleet(
        1, lora=("a", "b", "c"), max_loras=2, lora_load_time=load, inter_token_latency=0.01
    ) as f:
        url = f.urls[0]

        def lora(m: Metrics) -> tuple[str, str]:
            labels = m["vllm:lora_requests_info"][0][0]
            return labels["running_lora_adapters"], labels["waiting_lora_adapters"]

        tasks = [
            asyncio.create_task(complete(http, url, f"to {name}", 100, model=name))
            for name in ("a", "b")
        ]
        await until(http, url, lambda m: lora(m) == ("a,b", ""))
        c = asyncio.create_task(complete(http, url, "to c", 2, model="c"))
        m = await until(http, url, lambda m: lora(m) == ("a,b", "c"))
        assert value(m, "vllm:num_requests_waiting") == 1
        assert m["vllm:lora_requests_info"][0][0]["max_lora"] == "2"
        results = await asyncio.gather(*tasks, c)
        assert lora(await scrape(http, url)) == ("", "")
        # Each adapter's first request paid the load: TTFT = load + prefill.
        prefill = 0.002 + 2 * 0.0001  # tiny-test overhead + 2 prompt tokens
        c_out, c_ttft = results[2]
        assert c_out["queue_s"] > 0  # it waited for a slot
        assert c_ttft - c_out["queue_s"] == pytest.approx(prefill + load)
        _, warm = await complete(http, url, "to c", 2, model="c")
        assert warm == pytest.approx(prefill)  # already loaded


async def test_instances_are_independent(http: aiohttp.ClientSession) -> None:
    fleet: SimFleet = await start_fleet(3, max_num_seqs=1, inter_token_latency=0.02)
    try:
        task = asyncio.create_task(complete(http, fleet.urls[1], "busy", 50))
        await until(http, fleet.urls[1], lambda m: value(m, "vllm:num_requests_running") == 1)
        for i in (0, 2):
            m = await scrape(http, fleet.urls[i])
            assert value(m, "vllm:num_requests_running") == 0
            assert value(m, "vllm:prompt_tokens_total") == 0
        await task
    finally:
        await fleet.stop()


async def test_queue_full_is_429_and_stop_fails_inflight_with_503(
    http: aiohttp.ClientSession,
) -> None:
    f = await start_fleet(1, max_num_seqs=1, max_waiting_queue_length=1, inter_token_latency=0.05)
    url = f.urls[0]
    running = asyncio.create_task(complete_status(http, url))
    await until(http, url, lambda m: value(m, "vllm:num_requests_running") == 1)
    waiting = asyncio.create_task(complete_status(http, url))
    await until(http, url, lambda m: value(m, "vllm:num_requests_waiting") == 1)
    status, message = await complete_status(http, url)
    assert status == 429 and "waiting queue is full" in message
    await f.stop()
    assert (await running)[0] == 503 and (await waiting)[0] == 503


async def complete_status(http: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    body = {"model": "sim-model", "prompt": "x", "max_tokens": 100, "ignore_eos": True}
    async with http.post(f"{url}/v1/completions", json=body) as r:
        out = await r.json()
        return r.status, out.get("error", {}).get("message", "")


async def test_jitter_is_seeded_and_repeats(http: aiohttp.ClientSession) -> None:
    runs = []
    for _ in range(2):
        async with await start_fleet(1, jitter=0.2, seed=42) as f:
            runs.append([(await complete(http, f.urls[0], words("j", n)))[1] for n in (5, 9, 13)])
    assert runs[0] == runs[1]
    assert any(
        t != pytest.approx(0.002 + n * 0.0001) for t, n in zip(runs[0], (5, 9, 13), strict=True)
    )


async def test_client_disconnect_mid_stream_frees_the_slot_and_blocks(
    http: aiohttp.ClientSession,
) -> None:
    async with await start_fleet(1, inter_token_latency=0.01) as f:
        url = f.urls[0]
        body = {"model": "sim-model", "prompt": words("d", 20), "max_tokens": 400,
                "ignore_eos": True, "stream": True}  # fmt: skip
        r = await http.post(f"{url}/v1/completions", json=body)
        assert (await r.content.readline()).startswith(b"data: ")
        m = await scrape(http, url)
        assert value(m, "vllm:num_requests_running") == 1
        assert value(m, "vllm:kv_cache_usage_perc") > 0
        r.close()  # the client goes away after the first token
        m = await until(http, url, lambda m: value(m, "vllm:num_requests_running") == 0)
        assert value(m, "vllm:kv_cache_usage_perc") == 0
        aborted = [v for labels, v in m["vllm:request_success_total"]
                   if labels["finished_reason"] == "abort"]  # fmt: skip
        assert aborted == [1.0]
        assert value(m, "vllm:generation_tokens_total") < 400
