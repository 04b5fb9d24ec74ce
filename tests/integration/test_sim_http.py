"""The simulator's HTTP API over real HTTP: response shapes, usage, headers, errors, metrics."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from endpoint_picker.sim import ENDPOINT_HEADER, SimFleet, start_fleet

pytestmark = pytest.mark.integration


@pytest.fixture
async def fleet() -> AsyncIterator[SimFleet]:
    f = await start_fleet(2, lora=("adapter-a",))
    yield f
    await f.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def sse_events(text: str) -> list[Any]:
    """Parse an SSE body into JSON events, checking the framing; ``[DONE]`` must end it."""
    frames = text.split("\n\n")
    assert frames[-1] == "" and frames[-2] == "data: [DONE]"
    out = []
    for frame in frames[:-2]:
        assert frame.startswith("data: "), frame
        out.append(json.loads(frame[len("data: ") :]))
    return out


async def test_non_streaming_completion_and_chat(
    fleet: SimFleet, http: aiohttp.ClientSession
) -> None:
    url = fleet.urls[0]
    body = {
        "model": "sim-model",
        "prompt": "one two three, four",
        "max_tokens": 7,
        "ignore_eos": True,
    }
    async with http.post(f"{url}/v1/completions", json=body) as r:
        assert r.status == 200
        out = await r.json()
    assert out["object"] == "text_completion" and out["model"] == "sim-model"
    choice = out["choices"][0]
    assert choice["finish_reason"] == "length" and len(choice["text"].split()) == 7
    assert out["usage"] == {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12,
                            "prompt_tokens_details": {"cached_tokens": 0}}  # fmt: skip
    chat = {"model": "adapter-a", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3,
            "ignore_eos": True}  # fmt: skip
    async with http.post(f"{url}/v1/chat/completions", json=chat) as r:
        out = await r.json()
    assert out["object"] == "chat.completion" and out["model"] == "adapter-a"
    assert out["choices"][0]["message"]["role"] == "assistant"
    assert out["usage"]["completion_tokens"] == 3
    # <|user|> \n hi \n <|assistant|>: '<', '|', 'user', '|', '>' ... = 5 + 1 + 5 tokens
    assert out["usage"]["prompt_tokens"] == 11


async def test_streaming_chat_with_usage(fleet: SimFleet, http: aiohttp.ClientSession) -> None:
    body = {"model": "sim-model", "messages": [{"role": "user", "content": "stream please"}],
            "max_tokens": 5, "ignore_eos": True, "stream": True,
            "stream_options": {"include_usage": True}}  # fmt: skip
    async with http.post(f"{fleet.urls[0]}/v1/chat/completions", json=body) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/event-stream")
        events = sse_events(await r.text())
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    content = [e["choices"][0]["delta"]["content"] for e in events[1:-1]]
    assert len(content) == 5 and all(c.startswith(" ") for c in content)
    reasons = [e["choices"][0]["finish_reason"] for e in events[1:-1]]
    assert reasons == [None] * 4 + ["length"]
    assert events[-1]["choices"] == [] and events[-1]["usage"]["completion_tokens"] == 5
    assert len({e["id"] for e in events}) == 1


async def test_streaming_completion_without_usage_and_with_eos(
    fleet: SimFleet, http: aiohttp.ClientSession
) -> None:
    body = {"model": "sim-model", "prompt": [1, 2, 3], "max_tokens": 50, "stream": True}
    async with http.post(f"{fleet.urls[0]}/v1/completions", json=body) as r:
        events = sse_events(await r.text())
    assert all("usage" not in e for e in events)
    assert 1 <= len(events) <= 50  # without ignore_eos the length is drawn from 1..max_tokens
    last = events[-1]["choices"][0]["finish_reason"]
    assert last == ("length" if len(events) == 50 else "stop")


async def test_headers_name_the_instance_and_echo_request_id(
    fleet: SimFleet, http: aiohttp.ClientSession
) -> None:
    for i, url in enumerate(fleet.urls):
        for path, method in (("/health", "GET"), ("/v1/models", "GET"), ("/nope", "GET"),
                             ("/v1/completions", "POST")):  # fmt: skip
            async with http.request(method, url + path, headers={"x-request-id": f"r{i}"}) as r:
                assert r.headers[ENDPOINT_HEADER] == f"127.0.0.1:{fleet.ports[i]}"
                assert r.headers["x-request-id"] == f"r{i}"
    assert fleet.ports[0] != fleet.ports[1]


@pytest.mark.parametrize(
    ("path", "body", "status", "needle"),
    [
        ("/v1/completions", b"{not json", 400, "malformed JSON"),
        ("/v1/completions", b"[1]", 400, "JSON object"),
        ("/v1/completions", b'{"prompt": "x"}', 400, "'model'"),
        ("/v1/completions", b'{"model": "sim-model"}', 400, "'prompt'"),
        ("/v1/chat/completions", b'{"model": "sim-model", "messages": []}', 400, "'messages'"),
        ("/v1/completions", b'{"model": "sim-model", "prompt": "x", "max_tokens": 0}', 400,
         "max_tokens"),
        ("/v1/completions", b'{"model": "other", "prompt": "x"}', 404, "does not exist"),
        ("/v1/completions", b'{"model": "sim-model", "prompt": "x", "max_tokens": 600}', 413,
         "maximum context length"),
        ("/v1/embeddings", b'{"model": "sim-model"}', 400, "'input'"),
    ],
)  # fmt: skip
async def test_bad_requests_get_openai_errors(
    fleet: SimFleet, http: aiohttp.ClientSession, path: str, body: bytes, status: int, needle: str
) -> None:
    async with http.post(fleet.urls[0] + path, data=body) as r:
        assert r.status == status
        err = (await r.json())["error"]
    assert needle in err["message"] and err["code"] == status and err["type"]


async def test_large_bodies_are_accepted_up_to_the_limit(http: aiohttp.ClientSession) -> None:
    async with await start_fleet(1) as f:
        big = {"model": "sim-model", "prompt": "hi", "max_tokens": 1, "user": "x" * 5_000_000}
        async with http.post(f"{f.urls[0]}/v1/completions", json=big) as r:
            assert r.status == 200
        huge = {"model": "sim-model", "prompt": "hi", "user": "x" * 17_000_000}
        async with http.post(f"{f.urls[0]}/v1/completions", json=huge) as r:
            assert r.status == 413
            assert "error" in await r.json()


async def test_models_embeddings_and_metrics_parse(
    fleet: SimFleet, http: aiohttp.ClientSession
) -> None:
    url = fleet.urls[0]
    async with http.get(f"{url}/v1/models") as r:
        models = {m["id"]: m["parent"] for m in (await r.json())["data"]}
    assert models == {"sim-model": None, "adapter-a": "sim-model"}
    emb = {"model": "sim-model", "input": ["a b c", "a b c", "d"]}
    async with http.post(f"{url}/v1/embeddings", json=emb) as r:
        out = await r.json()
    vectors = [d["embedding"] for d in out["data"]]
    assert vectors[0] == vectors[1] != vectors[2] and len(vectors[0]) == 16
    assert out["usage"]["prompt_tokens"] == 7
    async with http.get(f"{url}/metrics") as r:
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        families = {f.name: f for f in text_string_to_metric_families(await r.text())}
    for name in ("vllm:num_requests_running", "vllm:num_requests_waiting",
                 "vllm:kv_cache_usage_perc", "vllm:cache_config_info", "vllm:lora_requests_info",
                 "vllm:prefix_cache_queries", "vllm:prefix_cache_hits", "vllm:prompt_tokens",
                 "vllm:generation_tokens", "vllm:time_to_first_token_seconds",
                 "vllm:inter_token_latency_seconds", "vllm:e2e_request_latency_seconds",
                 "vllm:request_queue_time_seconds"):  # fmt: skip
        assert name in families, name
    info = families["vllm:cache_config_info"].samples[0].labels
    assert (info["block_size"], info["num_gpu_blocks"]) == ("4", "256")
    lora = families["vllm:lora_requests_info"].samples[0].labels
    assert lora["max_lora"] == "2"


async def test_fail_rate_and_stale_and_slow_metrics(http: aiohttp.ClientSession) -> None:
    async with await start_fleet(1, fail_rate=1.0, fail_statuses=(503,), stale_metrics=60.0) as f:
        url = f.urls[0]
        async with http.get(f"{url}/metrics") as r:
            before = await r.text()
        for _ in range(3):
            async with http.post(f"{url}/v1/completions",
                                 json={"model": "sim-model", "prompt": "x"}) as r:  # fmt: skip
                assert (
                    r.status == 503 and "simulated failure" in (await r.json())["error"]["message"]
                )
        async with http.get(f"{url}/metrics") as r:
            assert await r.text() == before  # a stale scrape: served again unchanged
    async with await start_fleet(1, slow_metrics=30.0) as f:
        with pytest.raises(TimeoutError):
            async with http.get(f"{f.urls[0]}/metrics", timeout=aiohttp.ClientTimeout(total=0.3)):
                pass
        async with http.get(f"{f.urls[0]}/health") as r:
            assert r.status == 200  # only /metrics is slow


async def test_slowdown_scales_every_latency_from_now_on(http: aiohttp.ClientSession) -> None:
    fleet = await start_fleet(1, "8b-h100")
    try:
        url = fleet.urls[0]
        cfg = fleet.servers[0].config
        base = (cfg.prefill_overhead, cfg.prefill_time_per_token, cfg.inter_token_latency)
        async with http.post(f"{url}/sim/slowdown?factor=2") as r:
            assert r.status == 200 and (await r.json()) == {"factor": 2.0}
        assert (cfg.prefill_overhead, cfg.prefill_time_per_token, cfg.inter_token_latency) == (
            tuple(2 * v for v in base)
        )
        async with http.post(f"{url}/sim/slowdown?factor=0.5") as r:  # relative to the profile
            assert r.status == 200
        assert cfg.inter_token_latency == base[2] / 2
        for bad in ("0", "nan", "fast", "1e9"):
            async with http.post(f"{url}/sim/slowdown?factor={bad}") as r:
                assert r.status == 400
                assert (await r.json())["error"]["param"] == "factor"
        assert cfg.inter_token_latency == base[2] / 2  # a refused factor changes nothing
    finally:
        await fleet.stop()
