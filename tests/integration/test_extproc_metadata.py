"""What the EPP writes into Envoy's dynamic metadata, read back from a real Envoy's access log:
``request-attribute-reporter``'s cost (on the response-body answers) and, with
``--emit-endpoint-scores``, every candidate's score (on the routing answer). The real director
(``epp run``'s composition) routes to simulated model servers; no fakes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from endpoint_picker.envoy import ManagedEnvoy
from endpoint_picker.envoy.bootstrap import bootstrap
from endpoint_picker.runner.upstream_flags import UpstreamSettings

app = pytest.importorskip("endpoint_picker.runner.app")

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

COST = "x-gateway-inference-request-cost"
CONFIG = f"""\
apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
- name: cost
  type: request-attribute-reporter
  parameters:
    attributes:
    - key: {{name: {COST}}}
      expression: usage.prompt_tokens + usage.completion_tokens
"""
# One line per request: the request id, then the two metadata values (JSON, or "-").
LOG_FORMAT = (
    "rid=%REQ(X-REQUEST-ID)% cost=%DYNAMIC_METADATA(envoy.lb:" + COST + ")% "
    "scores=%DYNAMIC_METADATA(envoy.lb:x-gateway-destination-endpoint-scores)%\n"
)


def _set_log_format(node: Any) -> None:
    """Our line format in every access logger of the bootstrap."""
    if isinstance(node, dict):
        source = node.get("text_format_source")
        if isinstance(source, dict) and "inline_string" in source:
            source["inline_string"] = LOG_FORMAT
        for value in node.values():
            _set_log_format(value)
    elif isinstance(node, list):
        for value in node:
            _set_log_format(value)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def epp(sim_fleet: Any) -> AsyncIterator[Any]:
    options = app.EppOptions(
        endpoints=list(sim_fleet.endpoints),
        grpc_port=0,
        grpc_health_port=0,
        metrics_port=None,
        config_text=CONFIG,
        upstream=UpstreamSettings(emit_endpoint_scores=True),
    )
    server = app.Epp(options)
    await server.start()
    yield server
    await server.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def envoy(epp: Any, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Any]:
    workdir = tmp_path_factory.mktemp("envoy-metadata")
    log = workdir / "access.log"
    config = bootstrap(0, "127.0.0.1", epp.grpc_port, access_log_path=str(log), mode="duplex")
    _set_log_format(config)
    envoy = ManagedEnvoy(config, workdir=workdir)
    await envoy.start()
    envoy.access_log = log  # type: ignore[attr-defined]
    yield envoy
    await envoy.stop()


def _find(log: Path, rid: str) -> dict[str, str] | None:
    if not log.exists():
        return None
    for line in log.read_text().splitlines():
        if line.startswith(f"rid={rid} "):
            cost, scores = line.split(" ", 1)[1].split(" scores=", 1)
            return {"cost": cost.removeprefix("cost="), "scores": scores}
    return None


async def _logged(log: Path, rid: str) -> dict[str, str]:
    """The access-log fields of request ``rid`` (Envoy flushes the file about once a second)."""
    for _ in range(200):
        found = await asyncio.to_thread(_find, log, rid)
        if found is not None:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"no access-log line for {rid} in {log}")


@pytest.mark.parametrize("stream", [False, True])
async def test_the_cost_and_the_scores_reach_envoy(
    envoy: Any, epp: Any, sim_fleet: Any, stream: bool
) -> None:
    rid = f"metadata-{stream}"
    payload: dict[str, Any] = {"model": "sim-model", "prompt": "what does it cost", "max_tokens": 4}
    if stream:
        payload |= {"stream": True, "stream_options": {"include_usage": True}}
    url = f"http://127.0.0.1:{envoy.port}/v1/completions"
    async with (
        aiohttp.ClientSession() as s,
        s.post(url, json=payload, headers={"x-request-id": rid}) as r,
    ):
        text = (await r.read()).decode()
        assert r.status == 200, text
    if stream:
        events = [json.loads(ln[6:]) for ln in text.splitlines() if ln.startswith("data: {")]
        usage = next(e["usage"] for e in reversed(events) if e.get("usage"))
    else:
        usage = json.loads(text)["usage"]
    fields = await _logged(envoy.access_log, rid)
    assert float(fields["cost"]) == usage["prompt_tokens"] + usage["completion_tokens"]
    scores = json.loads(fields["scores"])
    assert set(scores) == set(sim_fleet.endpoints)  # every candidate, picked or not
    assert all(isinstance(v, float | int) and v >= 0 for v in scores.values())
