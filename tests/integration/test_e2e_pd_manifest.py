"""P/D from a labelled manifest: ``epp run -f pd.yaml`` where the manifest holds the pool and
its Pods with their ``llm-d.ai/role`` labels and IPs (the pool's selector and target port make
them endpoints, as in a cluster). The pods are simulators on their own loopback addresses
(127.0.0.2, 127.0.0.3) on one port; llm-d's P/D config runs unchanged, through Envoy."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from e2e_support import completion, post

from endpoint_picker.runner.app import EppOptions
from endpoint_picker.runner.stack import Stack, StackOptions
from endpoint_picker.sim.config import SimConfig
from endpoint_picker.sim.server import SimServer

pytestmark = pytest.mark.asyncio(loop_scope="module")

CONFIG = (
    Path(__file__).parents[1] / "data" / "upstream-configs" / "llm-d-router"
) / "deploy__config__sim-pd-epp-config.yaml"
ADDRESSES = {"prefill": "127.0.0.2", "decode": "127.0.0.3"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind((ADDRESSES["prefill"], 0))
        return int(s.getsockname()[1])


def manifest(port: int) -> str:
    docs = [
        "apiVersion: inference.networking.k8s.io/v1\nkind: InferencePool\nmetadata: {name: pd}\n"
        f"spec:\n  selector: {{matchLabels: {{app: vllm}}}}\n  targetPorts: [{{number: {port}}}]\n"
    ]
    for role, ip in ADDRESSES.items():
        docs.append(
            f"apiVersion: v1\nkind: Pod\nmetadata:\n  name: {role}-0\n"
            f"  labels: {{app: vllm, llm-d.ai/role: {role}}}\n"
            f"spec: {{containers: [{{name: vllm, image: vllm/vllm-openai}}]}}\n"
            f"status: {{phase: Running, podIP: {ip}}}\n"
        )
    return "---\n".join(docs)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, Any]]:
    port = free_port()
    servers = {
        role: SimServer(SimConfig.from_profile("tiny-test", role=role), ip, port)
        for role, ip in ADDRESSES.items()
    }
    for server in servers.values():
        await server.start()
    path = tmp_path_factory.mktemp("pd-manifest") / "pd.yaml"
    path.write_text(manifest(port))
    epp = EppOptions(
        manifests=[str(path)],
        config_file=str(CONFIG),
        grpc_port=0,
        grpc_health_port=0,
        metrics_port=0,
        pick_port=0,
        als_port=0,
    )
    stack = Stack(StackOptions(epp=epp, listen_port=0, front="fast"))
    try:
        await stack.start()
        async with aiohttp.ClientSession() as session:
            yield {"stack": stack, "servers": servers, "session": session}
    finally:
        await stack.stop()
        for server in servers.values():
            await server.stop()


async def test_pods_in_the_manifest_carry_their_roles(world: dict[str, Any]) -> None:
    endpoints = {
        ep.address: ep.labels.get("llm-d.ai/role")
        for ep in world["stack"].epp.datastore.endpoints()
    }
    assert endpoints == {ip: role for role, ip in ADDRESSES.items()}


async def test_long_prompt_is_disaggregated_between_the_manifests_pods(
    world: dict[str, Any],
) -> None:
    prefill, decode = world["servers"]["prefill"], world["servers"]["decode"]
    prompt = " ".join(f"m{i}" for i in range(300))
    reply = await post(world["session"], world["stack"], completion(prompt, 3))
    assert reply.status == 200, reply.body
    assert reply.served_by == decode.endpoint
    assert reply.headers.get("x-sim-prefiller") == prefill.endpoint
    assert prefill.engine.stats.prefills_for_remote_decode == 1
    short = await post(world["session"], world["stack"], completion("hello", 2))
    assert short.status == 200 and short.served_by == decode.endpoint
    assert "x-sim-prefiller" not in short.headers
