"""Prefill/decode disaggregation end to end: real Envoy, the EPP, role-labelled simulators.

The stack is ``epp run --simulate-pd 2:2`` with llm-d's own ``deploy/config/pd-epp-config.yaml``
(unchanged, from tests/data). A long uncached prompt goes to a decode simulator with the
prefiller the EPP chose in ``x-prefiller-host-port``; that simulator's sidecar has the prefiller
run the prefill and then decodes. A short prompt, or one the decoder holds already, is served
by the decoder alone. A client's own ``x-prefiller-host-port`` never reaches a simulator.
Every check reads what the servers themselves report: their ``/metrics`` text, their KV-block
oracle and the endpoint header each response carries.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from e2e_support import completion, post, running_stack, sample

from endpoint_picker.runner.stack import Stack
from endpoint_picker.sim.kvcache import block_hashes
from endpoint_picker.sim.tokenizer import tokenize

pytestmark = pytest.mark.asyncio(loop_scope="module")

UPSTREAM = Path(__file__).parents[1] / "data" / "upstream-configs" / "llm-d-router"
PD_CONFIG = (UPSTREAM / "deploy__config__pd-epp-config.yaml").read_text()
PREFILLER = "x-prefiller-host-port"
SERVED_PREFILLER = "x-sim-prefiller"
_words = itertools.count()


def long_prompt() -> str:
    """About 300 tokens nobody has seen: far over the decider's 16 uncached tokens."""
    return " ".join(f"w{next(_words)}" for _ in range(300))


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def stack(front: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    directory = tmp_path_factory.mktemp(f"pd-{front}")
    async with running_stack(front, directory, config=PD_CONFIG, simulate_pd=(2, 2)) as s:
        yield s


def roles(stack: Stack) -> tuple[set[str], set[str]]:
    """(prefill endpoints, decode endpoints) as host:port."""
    servers = stack.fleet.servers
    prefill = {s.endpoint for s in servers if s.config.role == "prefill"}
    decode = {s.endpoint for s in servers if s.config.role == "decode"}
    return prefill, decode


async def counter(session: aiohttp.ClientSession, endpoint: str, name: str) -> float:
    """One counter from a simulator's own /metrics text."""
    async with session.get(f"http://{endpoint}/metrics") as r:
        text = await r.text()
    for line in text.splitlines():
        if line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in {endpoint}/metrics")


async def pd_counts(session: aiohttp.ClientSession, stack: Stack) -> dict[str, float]:
    """Per endpoint: prefills done for a remote decoder, or prompts pulled from a prefiller."""
    prefill, decode = roles(stack)
    out = {}
    for ep in prefill:
        out[ep] = await counter(session, ep, "sim:pd_prefills_for_remote_decode_total")
    for ep in decode:
        out[ep] = await counter(session, ep, "sim:pd_remote_prefills_total")
    return out


def disagg_decisions(decision: str) -> float:
    return sample(
        "llm_d_epp_disagg_decision_total",
        {
            "plugin_name": "disagg-profile-handler",
            "plugin_type": "disagg-profile-handler",
            "model_name": "sim-model",
            "decision_type": decision,
        },
    )


async def test_endpoints_carry_their_roles(stack: Stack) -> None:
    labels = {ep.hostport: ep.labels.get("llm-d.ai/role") for ep in stack.epp.datastore.endpoints()}
    prefill, decode = roles(stack)
    assert {ep for ep, role in labels.items() if role == "prefill"} == prefill
    assert {ep for ep, role in labels.items() if role == "decode"} == decode


async def test_long_uncached_prompt_is_disaggregated(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    prefill, decode = roles(stack)
    before = await pd_counts(session, stack)
    prompt = long_prompt()
    reply = await post(session, stack, completion(prompt, 4))
    assert reply.status == 200, reply.body
    assert reply.served_by in decode  # the response comes from the decoder
    prefiller = reply.headers.get(SERVED_PREFILLER)
    assert prefiller in prefill
    after = await pd_counts(session, stack)
    assert after[prefiller] == before[prefiller] + 1  # the prefill ran there ...
    assert after[reply.served_by] == before[reply.served_by] + 1  # ... the decode here
    # The prefiller now holds the prompt's KV blocks (its oracle), as does the decoder.
    hashes = set(block_hashes(tokenize(prompt), 4, "sim-model"))
    for ep in (prefiller, reply.served_by):
        async with session.get(f"http://{ep}/debug/kv-blocks") as r:
            assert hashes <= set((await r.json())["blocks"]), ep


async def test_short_prompt_is_not_disaggregated(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    _, decode = roles(stack)
    before = await pd_counts(session, stack)
    decode_only = disagg_decisions("decode-only")
    reply = await post(session, stack, completion("hi there", 2))
    assert reply.status == 200, reply.body
    assert reply.served_by in decode
    assert SERVED_PREFILLER not in reply.headers
    assert await pd_counts(session, stack) == before
    assert disagg_decisions("decode-only") == decode_only + 1


async def test_cached_prompt_is_not_disaggregated(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    prompt = long_prompt()
    first = await post(session, stack, completion(prompt, 2))
    assert first.status == 200 and first.headers.get(SERVED_PREFILLER), first.body
    before = await pd_counts(session, stack)
    again = await post(session, stack, completion(prompt, 2))
    assert again.status == 200, again.body
    assert again.served_by == first.served_by  # the decoder that holds the prompt
    assert SERVED_PREFILLER not in again.headers
    assert await pd_counts(session, stack) == before


async def test_client_prefiller_header_never_reaches_a_server(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    prefill, decode = roles(stack)
    target = sorted(prefill)[0]
    before = await pd_counts(session, stack)
    # A short prompt: the EPP chooses no prefill, so the client's header must not survive.
    reply = await post(session, stack, completion("hi again", 2), {PREFILLER: target})
    assert reply.status == 200, reply.body
    assert reply.served_by in decode
    assert SERVED_PREFILLER not in reply.headers
    assert await pd_counts(session, stack) == before
    # A long one: the EPP's prefiller wins over a client's (here one outside the pool).
    reply = await post(session, stack, completion(long_prompt(), 2), {PREFILLER: "127.0.0.1:9"})
    assert reply.status == 200, reply.body
    assert reply.headers.get(SERVED_PREFILLER) in prefill
