"""Precise prefix routing end to end: simulators publishing vLLM KV events on real ZMQ sockets
(127.0.0.1), llm-d's precise configs unchanged, ``epp run --simulate``'s stack, real Envoy.

The scenario the approximate index cannot get right: a prefix cached on a server the EPP never
routed it to (sent there directly), then evicted there under pressure and cached elsewhere.
Only the servers' own events say where it is.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import yaml
from e2e_support import MODEL, completion, post, running_stack, wait_until

from endpoint_picker.runner.stack import Stack
from endpoint_picker.scheduling import Scheduler
from endpoint_picker.scheduling.plugins.precise import PrecisePrefixCacheProducer

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

CONFIGS = Path(__file__).parent.parent / "data" / "llm-d-configs"
# Small caches so that a few direct requests evict a prefix (tiny-test: 4-token blocks).
SIM = {"num_gpu_blocks": 256, "max_model_len": 512}


def llmd_config(name: str) -> str:
    text = (CONFIGS / name).read_text()
    if name == "precise-prefix.yaml":  # a Helm values file: the EPP config is inside
        values = yaml.safe_load(text)
        text = values["router"]["epp"]["pluginsCustomConfig"]["precise-baseline-plugins.yaml"]
    return text


def words(tag: str, n: int) -> str:
    return " ".join(f"{tag}{i}" for i in range(n))


def producer(stack: Stack) -> PrecisePrefixCacheProducer:
    assert stack.epp.director is not None
    scheduler = stack.epp.director.scheduler
    assert isinstance(scheduler, Scheduler)
    for p in scheduler.producers:
        if isinstance(p, PrecisePrefixCacheProducer):
            return p
    raise AssertionError("no precise producer in the scheduler")


async def direct(session: aiohttp.ClientSession, url: str, prompt: str) -> dict[str, Any]:
    """A request straight to one simulator, behind the EPP's back."""
    async with session.post(url + "/v1/completions", json=completion(prompt, 1)) as r:
        assert r.status == 200, await r.text()
        body: dict[str, Any] = await r.json()
        return body


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def wait_for_streams(
    stack: Stack, session: aiohttp.ClientSession, prod: PrecisePrefixCacheProducer
) -> None:
    """ZMQ subscriptions join asynchronously (the "slow joiner"): warm each server up until its
    events arrive."""
    for i, url in enumerate(stack.fleet.urls):
        name = f"sim-{i}"
        n = 0

        def seen(name: str = name) -> bool:
            return prod.index.endpoint_keys(name) > 0

        while not seen():
            await direct(session, url, words(f"warm{i}x{n}w", 100))
            n += 1
            try:
                await wait_until(seen, timeout=0.5, what=f"events from {name}")
            except AssertionError:
                if n > 40:
                    raise


@pytest.mark.parametrize(
    "config",
    [
        "sim-epp-kvcache-config.yaml",
        "sim-epp-no-hit-lru.yaml",
        "sim-epp-tokenizer-vllm-http-config.yaml",
        "epp-precise-prefix-cache-config.yaml",
        "precise-prefix.yaml",
    ],
)
async def test_llmd_precise_configs_route_to_the_server_that_holds_the_prefix(
    config: str, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    async with running_stack(
        "extproc", tmp_path, simulate=2, config=llmd_config(config), sim_overrides=SIM
    ) as stack:
        prod = producer(stack)
        await wait_for_streams(stack, session, prod)
        urls = stack.fleet.urls
        names = [s.endpoint for s in stack.fleet.servers]
        shared = words("doc", 260)  # 65 simulator blocks; 4 to 52 EPP blocks by config

        # 1. Cached on server 1 behind the EPP's back: precise routing finds it there.
        await direct(session, urls[1], shared)
        await wait_until(lambda: len(prod.index) > 0 and _holds(prod, shared, "sim-1"))
        for q in range(3):
            reply = await post(session, stack, completion(shared + f" question {q}"))
            assert reply.status == 200
            assert reply.served_by == names[1], f"request {q} went to {reply.served_by}"
            assert reply.json()["usage"]["prompt_tokens_details"]["cached_tokens"] > 0

        # 2. Evicted there under pressure (other prompts fill server 1), cached on server 0.
        for n in range(4):
            await direct(session, urls[1], words(f"fill{n}w", 400))
        await direct(session, urls[0], shared)
        await wait_until(lambda: _holds(prod, shared, "sim-0"), what="the prefix on sim-0")
        await wait_until(lambda: not _holds(prod, shared, "sim-1"), what="eviction on sim-1")
        reply = await post(session, stack, completion(shared + " after eviction"))
        assert reply.served_by == names[0]
        assert reply.json()["usage"]["prompt_tokens_details"]["cached_tokens"] > 0
        assert prod.ingester.stats.errors == 0


def _holds(prod: PrecisePrefixCacheProducer, prompt: str, name: str) -> bool:
    from endpoint_picker.requests.types import InferenceRequest

    req = InferenceRequest(
        "probe",
        {},
        body=completion(prompt),
        api="completions",
        target_model=MODEL,
        prompt_text=prompt,
    )
    keys = prod.keys_for(req)
    return prod.index.match(keys, prod.clock()).get(name, 0) >= len(keys) // 2 > 0


APPROX = """
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: prefix-cache-scorer
- type: max-score-picker
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: prefix-cache-scorer
    weight: 10
"""


async def test_the_approximate_index_keeps_routing_to_where_it_sent_the_prefix(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """The contrast for the test above: same eviction, approximate config, wrong server."""
    async with running_stack(
        "extproc", tmp_path, simulate=2, config=APPROX, sim_overrides=SIM
    ) as stack:
        shared = words("doc", 260)
        first = await post(session, stack, completion(shared))
        x = first.served_by
        names = [s.endpoint for s in stack.fleet.servers]
        assert x in names
        ix = names.index(x)
        for n in range(4):
            await direct(session, stack.fleet.urls[ix], words(f"fill{n}w", 400))
        await direct(session, stack.fleet.urls[1 - ix], shared)
        reply = await post(session, stack, completion(shared + " after eviction"))
        assert reply.served_by == x  # where it guessed, not where the prefix is now
        assert reply.json()["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
