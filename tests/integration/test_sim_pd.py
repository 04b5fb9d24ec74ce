"""The simulator's P/D mode over real HTTP: a decode-role instance acting as llm-d's sidecar.

Timings are the engines' model times (``x-sim-*`` headers), never wall clock: with the
``tiny-test`` profile (no jitter) they follow the model exactly.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from endpoint_picker.sim.config import SimConfig
from endpoint_picker.sim.kvcache import block_hashes
from endpoint_picker.sim.pd import prefill_body
from endpoint_picker.sim.server import SimServer
from endpoint_picker.sim.tokenizer import tokenize

pytestmark = pytest.mark.asyncio(loop_scope="module")

PREFILLER = "x-prefiller-host-port"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def servers() -> AsyncIterator[dict[str, SimServer]]:
    """A prefiller, a decoder, a prefiller that always fails 503, and a plain instance."""
    out = {
        "prefill": SimServer(SimConfig.from_profile("tiny-test", role="prefill")),
        "decode": SimServer(SimConfig.from_profile("tiny-test", role="decode")),
        "broken": SimServer(
            SimConfig.from_profile("tiny-test", role="prefill", fail_rate=1.0, fail_statuses=(503,))
        ),
        "plain": SimServer(SimConfig.from_profile("tiny-test")),
    }
    for server in out.values():
        await server.start()
    yield out
    for server in out.values():
        await server.stop()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def prompt(tag: str, n: int = 200) -> str:
    return " ".join(f"{tag}{i}" for i in range(n))


async def generate(
    client: aiohttp.ClientSession,
    server: SimServer,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], Any]:
    payload = {"model": "sim-model", "max_tokens": 3, "ignore_eos": True, **body}
    async with client.post(
        server.url + "/v1/completions", json=payload, headers=headers or {}
    ) as r:
        if body.get("stream"):
            return r.status, dict(r.headers), await r.text()
        return r.status, dict(r.headers), await r.json()


async def test_ttft_is_remote_prefill_plus_transfer_plus_first_token(
    servers: dict[str, SimServer], client: aiohttp.ClientSession
) -> None:
    p, d = servers["prefill"], servers["decode"]
    cfg = d.config
    status, headers, body = await generate(
        client, d, {"prompt": prompt("a")}, {PREFILLER: p.endpoint}
    )
    assert status == 200, body
    assert headers["x-sim-prefiller"] == p.endpoint
    assert headers["x-sim-endpoint"] == d.endpoint
    remote = float(headers["x-sim-remote-prefill-ms"]) / 1000
    transfer = float(headers["x-sim-kv-transfer-ms"]) / 1000
    ttft = float(headers["x-sim-ttft-ms"]) / 1000
    assert remote == pytest.approx(cfg.prefill_overhead + 200 * cfg.prefill_time_per_token)
    assert transfer == pytest.approx(
        cfg.kv_transfer_latency + 200 * cfg.kv_bytes_per_token / cfg.kv_transfer_bandwidth
    )
    assert ttft == pytest.approx(remote + transfer + cfg.inter_token_latency)
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 3


async def test_prefiller_answers_with_where_its_kv_is(
    servers: dict[str, SimServer], client: aiohttp.ClientSession
) -> None:
    p = servers["prefill"]
    text = prompt("b")
    status, _, body = await generate(client, p, prefill_body({"prompt": text, "max_tokens": 9}))
    assert status == 200, body
    kv = body["kv_transfer_params"]
    assert kv["do_remote_prefill"] is True and kv["do_remote_decode"] is False
    assert kv["remote_block_ids"] == block_hashes(tokenize(text), 4, "sim-model")
    assert (kv["remote_host"], kv["remote_port"]) == (p.host, p.port)
    assert body["usage"]["completion_tokens"] == 1


async def test_decoder_pulls_only_what_it_lacks(
    servers: dict[str, SimServer], client: aiohttp.ClientSession
) -> None:
    p, d = servers["prefill"], servers["decode"]
    text = prompt("c")
    stats = d.engine.stats
    await generate(client, d, {"prompt": text}, {PREFILLER: p.endpoint})
    pulled = stats.kv_transfer_tokens
    await generate(client, d, {"prompt": text + " more"}, {PREFILLER: p.endpoint})
    # The decoder holds the shared prefix since the first request: only the tail is pulled.
    assert 0 < stats.kv_transfer_tokens - pulled < 10


async def test_streaming_disaggregated_response(
    servers: dict[str, SimServer], client: aiohttp.ClientSession
) -> None:
    p, d = servers["prefill"], servers["decode"]
    status, headers, text = await generate(
        client, d, {"prompt": prompt("d"), "stream": True}, {PREFILLER: p.endpoint}
    )
    assert status == 200
    assert headers["x-sim-prefiller"] == p.endpoint
    assert text.count("data: ") == 4 and text.rstrip().endswith("data: [DONE]")


async def test_failing_prefiller_status_and_body_reach_the_client(
    servers: dict[str, SimServer], client: aiohttp.ClientSession
) -> None:
    d, broken = servers["decode"], servers["broken"]
    failures = d.engine.stats.remote_prefill_failures
    running = d.engine.stats.generation_tokens
    status, headers, body = await generate(
        client, d, {"prompt": prompt("e")}, {PREFILLER: broken.endpoint}
    )
    assert status == 503
    assert "simulated failure" in body["error"]["message"]
    assert headers["x-sim-prefiller"] == broken.endpoint
    assert d.engine.stats.remote_prefill_failures == failures + 1
    assert d.engine.stats.generation_tokens == running  # no local fallback


async def test_unreachable_prefiller_is_a_502_naming_it(
    servers: dict[str, SimServer], client: aiohttp.ClientSession
) -> None:
    status, _, body = await generate(
        client, servers["decode"], {"prompt": prompt("f")}, {PREFILLER: "127.0.0.1:9"}
    )
    assert status == 502
    assert "127.0.0.1:9" in body["error"]["message"]


@pytest.mark.parametrize("name", ["plain", "prefill"])
async def test_instances_without_a_sidecar_ignore_the_header(
    servers: dict[str, SimServer], client: aiohttp.ClientSession, name: str
) -> None:
    target = servers["prefill"]
    before = target.engine.stats.prefills_for_remote_decode
    status, headers, _ = await generate(
        client, servers[name], {"prompt": prompt("g")}, {PREFILLER: target.endpoint}
    )
    assert status == 200
    assert "x-sim-prefiller" not in headers
    await asyncio.sleep(0)
    assert target.engine.stats.prefills_for_remote_decode == before


async def test_decoder_without_header_serves_aggregated(
    servers: dict[str, SimServer], client: aiohttp.ClientSession
) -> None:
    d = servers["decode"]
    remote = d.engine.stats.remote_prefills
    status, headers, _ = await generate(client, d, {"prompt": prompt("h")})
    assert status == 200
    assert "x-sim-prefiller" not in headers and "x-sim-kv-transfer-ms" not in headers
    assert d.engine.stats.remote_prefills == remote


async def test_chunked_prefill_takes_steps_and_stalls_decodes(
    client: aiohttp.ClientSession,
) -> None:
    """With ``max_num_batched_tokens`` a prompt is computed in chunks by the engine's steps,
    and a step that carries a chunk is longer for every request decoding beside it."""
    cfg = SimConfig.from_profile("tiny-test", max_num_batched_tokens=64, max_model_len=1024)
    server = SimServer(cfg)
    await server.start()
    try:
        # Alone: 200 tokens in chunks of 64 = 4 steps, each ITL + its tokens' compute time.
        status, headers, _ = await generate(client, server, {"prompt": prompt("i", 200)})
        assert status == 200
        expected = 4 * cfg.inter_token_latency + cfg.prefill_overhead
        expected += 200 * cfg.prefill_time_per_token
        assert float(headers["x-sim-ttft-ms"]) / 1000 == pytest.approx(expected)
        # A long decode with a long prompt arriving meanwhile: its steps get longer.
        decode = asyncio.create_task(
            generate(client, server, {"prompt": "short one", "max_tokens": 200})
        )
        while server.engine.stats.generation_tokens < 5:  # noqa: ASYNC110 (a state to reach)
            await asyncio.sleep(0.005)
        itl_before = server.engine.stats.itl.sum / max(server.engine.stats.itl.count, 1)
        await generate(client, server, {"prompt": prompt("j", 600)})
        await decode
        itl = server.engine.stats.itl
        assert itl.sum / itl.count > itl_before  # the prompt's chunks stretched the steps
    finally:
        await server.stop()
