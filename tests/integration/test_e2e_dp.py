"""Data parallelism end to end: real Envoy, the EPP, one simulated pod with three ranks.

The stack is ``epp run --simulate-dp 3`` with llm-d's own ``deploy/config/dp-epp-config.yaml``
unchanged (from tests/data), so ``primaryPort`` is its 8000: the ranks bind ports 8000-8002 of
a loopback address of their own (the first of 127.0.0.4 onwards where those ports are free).
The pool holds the ranks as ``sim-dp-rank-<i>``; the EPP picks one, Envoy sends the request to
the primary port (rank 0) with the pick in ``x-data-parallel-host-port``, and rank 0's sidecar
forwards it there. Every check reads what the simulators report: the header values the primary
received and the ``x-sim-endpoint`` of the rank that served.
"""

from __future__ import annotations

import itertools
import socket
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from e2e_support import completion, post, running_stack

from endpoint_picker.runner.stack import Stack
from endpoint_picker.sim.dp import DataParallelSidecar

pytestmark = pytest.mark.asyncio(loop_scope="module")

UPSTREAM = Path(__file__).parents[1] / "data" / "upstream-configs" / "llm-d-router"
DP_CONFIG = (UPSTREAM / "deploy__config__dp-epp-config.yaml").read_text()
PRIMARY_PORT = 8000  # the config's own primaryPort
RANKS = 3
RANK_HEADER = "x-data-parallel-host-port"
_words = itertools.count()


def free_host() -> str:
    """A loopback address whose ports 8000..8000+RANKS-1 are free."""
    for last in range(4, 64):
        host = f"127.0.0.{last}"
        try:
            for port in range(PRIMARY_PORT, PRIMARY_PORT + RANKS):
                with socket.socket() as s:
                    s.bind((host, port))
        except OSError:
            continue
        return host
    raise RuntimeError(f"no loopback address with ports {PRIMARY_PORT}+{RANKS} free")


def prompt() -> str:
    """About 300 words nobody has sent before (several of the prefix scorer's blocks)."""
    return " ".join(f"d{next(_words)}" for _ in range(300))


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def stack(front: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    directory = tmp_path_factory.mktemp(f"dp-{front}")
    async with running_stack(
        front,
        directory,
        config=DP_CONFIG,
        simulate_dp=RANKS,
        sim_host=free_host(),
        sim_base_port=PRIMARY_PORT,
    ) as s:
        yield s


def sidecar(stack: Stack) -> DataParallelSidecar:
    dp: DataParallelSidecar | None = stack.fleet.servers[0].dp
    assert dp is not None
    return dp


def ranks(stack: Stack) -> list[str]:
    return [s.endpoint for s in stack.fleet.servers]


async def test_the_pool_holds_the_pods_rank_endpoints(stack: Stack) -> None:
    pool = {ep.name: ep.hostport for ep in stack.epp.datastore.endpoints()}
    assert pool == {f"sim-dp-rank-{i}": ep for i, ep in enumerate(ranks(stack))}
    assert stack.fleet.ports == [PRIMARY_PORT + i for i in range(RANKS)]


async def test_requests_reach_the_primary_and_the_chosen_rank_serves(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    dp = sidecar(stack)
    served: Counter[str] = Counter()
    for _ in range(24):
        before = Counter(dp.received)
        reply = await post(session, stack, completion(prompt(), 2))
        assert reply.status == 200, reply.body
        assert reply.served_by in ranks(stack)
        # The primary port received the request, naming exactly the rank that served it.
        assert dp.received - before == Counter({reply.served_by: 1})
        served[reply.served_by] += 1
    # Ties among unseen prompts are broken at random: other ranks than the primary served too,
    # so the primary forwarded them.
    assert len(served) > 1, served


async def test_a_repeated_prompt_goes_to_the_rank_that_holds_it(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    text = prompt()
    first = await post(session, stack, completion(text, 2))
    assert first.status == 200, first.body
    for _ in range(3):
        again = await post(session, stack, completion(text, 2))
        assert again.status == 200, again.body
        assert again.served_by == first.served_by


async def test_a_clients_rank_header_never_reaches_a_server(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    dp = sidecar(stack)
    # An address outside the pod: had it reached the primary, the sidecar would answer 400.
    reply = await post(session, stack, completion(prompt(), 2), {RANK_HEADER: "127.0.0.1:9"})
    assert reply.status == 200, reply.body
    assert "127.0.0.1:9" not in dp.received
    # A real rank other than the one that holds the prompt: the EPP's choice wins.
    text = prompt()
    first = await post(session, stack, completion(text, 2))
    assert first.status == 200, first.body
    other = next(ep for ep in ranks(stack) if ep != first.served_by)
    before = Counter(dp.received)
    again = await post(session, stack, completion(text, 2), {RANK_HEADER: other})
    assert again.status == 200, again.body
    assert again.served_by == first.served_by
    assert dp.received - before == Counter({first.served_by: 1})
