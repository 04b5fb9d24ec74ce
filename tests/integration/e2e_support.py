"""Helpers for end-to-end tests: the whole system (simulators, EPP, a front) as ``epp run``
composes it, plus small client and polling utilities.

The *front* is how client requests reach the EPP. The fixtures every ``test_e2e_*`` module
shares live in ``conftest.py``: ``front`` (parametrized over ``FRONTS``, so a new front is added
here once and every module runs against it), ``session`` (one aiohttp client per module),
``outsider`` (a server outside the pool) and ``picked`` (a stack whose only scheduling step is
the conformance header filter). A module builds its own stack from them:

    @pytest_asyncio.fixture(loop_scope="module", scope="module")
    async def stack(front, tmp_path_factory):
        async with running_stack(front, tmp_path_factory.mktemp("s"), simulate=2) as s:
            yield s

Tests must then run on the module loop: ``pytest.mark.asyncio(loop_scope="module")``. A module
for one front only overrides ``front`` with a plain fixture returning that front's name.

Overload tests hold a one-simulator pool with a *blocker* (``gated_config``, ``SLOW_SIM``,
``block``/``release``): a long request released by disconnecting its client, so every outcome
is decided by the EPP and nothing depends on the machine's speed.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from endpoint_picker.metrics import REGISTRY
from endpoint_picker.runner.app import EppOptions
from endpoint_picker.runner.stack import Stack, StackOptions

SIM_ENDPOINT_HEADER = "x-sim-endpoint"
OBJECTIVE_HEADER = "x-gateway-inference-objective"
FAIRNESS_HEADER = "x-gateway-inference-fairness-id"
DESTINATION_HEADER = "x-gateway-destination-endpoint"
TEST_SELECTION_HEADER = "test-epp-endpoint-selection"
MODEL = "sim-model"
POOL = "e2e-pool"

# The pool's only step is the conformance header filter: the test header decides the endpoint.
PICKED_CONFIG = """
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- {name: header-based-testing-filter, type: header-based-testing-filter}
schedulingProfiles:
- name: conformance
  plugins: [{pluginRef: header-based-testing-filter}]
"""
# 20 ms per token: a blocker (400 tokens) would run 8 s, far longer than any test needs it.
SLOW_SIM = {"inter_token_latency": 0.02}
ACCESS_LOG_LINE = re.compile(r"upstream=(\S+) md=(\S+) rid=(\S+)")

# Every front the end-to-end tests run against (``StackOptions.front``).
FRONTS = ["extproc", "fast"]
# Fronts that see response bodies and so count exact token usage; the others estimate it
# (docs/fast-front.md) and count the estimate in ``endpoint_picker_usage_estimated_total``.
EXACT_USAGE_FRONTS = {"extproc"}


def gated_config(flow_control: str) -> str:
    """A config whose pool saturates at one request in flight (``concurrency-detector``,
    ``maxConcurrency: 1``), with the given ``flowControl`` value (YAML flow style)."""
    return (
        "apiVersion: inference.networking.x-k8s.io/v1alpha1\n"
        "kind: EndpointPickerConfig\n"
        "plugins:\n"
        "- {name: detector, type: concurrency-detector, parameters: {maxConcurrency: 1}}\n"
        "- {type: queue-scorer}\n"
        "schedulingProfiles:\n"
        "- name: default\n"
        "  plugins: [{pluginRef: queue-scorer}]\n"
        "saturationDetector: {pluginRef: detector}\n"
        f"flowControl: {flow_control}\n"
    )


def write_manifest(directory: Path, objectives: Mapping[str, int | None]) -> str:
    """An InferencePool plus one InferenceObjective per name (None = priority unset)."""
    docs = [
        "apiVersion: inference.networking.k8s.io/v1\nkind: InferencePool\n"
        f"metadata: {{name: {POOL}}}\n"
        "spec:\n  selector: {matchLabels: {app: sim}}\n  targetPorts: [{number: 8000}]\n"
    ]
    for name, priority in objectives.items():
        spec = f"poolRef: {{name: {POOL}}}"
        if priority is not None:
            spec = f"priority: {priority}, {spec}"
        docs.append(
            "apiVersion: inference.networking.x-k8s.io/v1alpha2\nkind: InferenceObjective\n"
            f"metadata: {{name: {name}}}\nspec: {{{spec}}}\n"
        )
    path = directory / "manifest.yaml"
    path.write_text("---\n".join(docs))
    return str(path)


def write_config(directory: Path, text: str) -> str:
    """An EndpointPickerConfig file from YAML text."""
    path = directory / "config.yaml"
    path.write_text(text)
    return str(path)


def _options(
    front: str,
    directory: Path,
    *,
    simulate: int,
    objectives: Mapping[str, int | None],
    config: str | None,
    sim_overrides: Mapping[str, Any],
    mode: str,
    failure_mode: str,
    access_log: bool,
    als_flush_interval: float,
    simulate_pd: tuple[int, int] | None = None,
    simulate_dp: int = 0,
    sim_host: str = "127.0.0.1",
    sim_base_port: int = 0,
) -> StackOptions:
    if front not in FRONTS:
        raise ValueError(f"unknown front {front!r}")
    epp = EppOptions(
        manifests=[write_manifest(directory, objectives)],
        pool_name=POOL,
        config_file=write_config(directory, config) if config else None,
        grpc_port=0,
        grpc_health_port=0,
        metrics_port=0,
        pick_port=0,
        als_port=0,
    )
    return StackOptions(
        epp=epp,
        listen_port=0,
        simulate=0 if simulate_pd or simulate_dp else simulate,
        simulate_pd=simulate_pd,
        simulate_dp=simulate_dp,
        sim_host=sim_host,
        sim_base_port=sim_base_port,
        sim_profile="tiny-test",
        sim_overrides=dict(sim_overrides),
        mode=mode,
        failure_mode=failure_mode,
        front=front,
        access_log_path=str(directory / "access.log") if access_log else None,
        als_flush_interval=als_flush_interval,
    )


@asynccontextmanager
async def running_stack(
    front: str,
    directory: Path,
    *,
    simulate: int = 1,
    objectives: Mapping[str, int | None] | None = None,
    config: str | None = None,
    sim_overrides: Mapping[str, Any] | None = None,
    mode: str = "duplex",
    failure_mode: str = "FailClose",
    access_log: bool = False,
    als_flush_interval: float = 0.05,
    simulate_pd: tuple[int, int] | None = None,
    simulate_dp: int = 0,
    sim_host: str = "127.0.0.1",
    sim_base_port: int = 0,
) -> AsyncIterator[Stack]:
    """Simulators + EPP + front on 127.0.0.1 ephemeral ports; stopped on exit.

    ``simulate_pd=(P, D)`` starts role-labelled prefill and decode simulators instead of
    ``simulate`` plain ones (``epp run --simulate-pd P:D``); ``simulate_dp=R`` one pod with R
    data-parallel ranks on ``sim_host`` from ``sim_base_port`` (``epp run --simulate-dp R``).

    ``mode`` is the ext_proc processing mode (FailOpen needs ``"buffered"``);
    ``als_flush_interval`` is the fast front's access-log flush interval (seconds).
    """
    options = _options(
        front,
        directory,
        simulate=simulate,
        objectives=objectives if objectives is not None else {"high": 10, "low": -10},
        config=config,
        sim_overrides=sim_overrides or {},
        mode=mode,
        failure_mode=failure_mode,
        access_log=access_log,
        als_flush_interval=als_flush_interval,
        simulate_pd=simulate_pd,
        simulate_dp=simulate_dp,
        sim_host=sim_host,
        sim_base_port=sim_base_port,
    )
    stack = Stack(options)
    await stack.start()
    try:
        yield stack
    finally:
        await stack.stop()


@dataclass
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def served_by(self) -> str | None:
        return self.headers.get(SIM_ENDPOINT_HEADER)

    def json(self) -> Any:
        return json.loads(self.body)


def completion(prompt: str = "hello", max_tokens: int = 2, **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "prompt": prompt, "max_tokens": max_tokens, **extra}


async def post(
    session: aiohttp.ClientSession,
    stack: Stack,
    payload: Any,
    headers: Mapping[str, str] | None = None,
    *,
    path: str = "/v1/completions",
    timeout: float = 60.0,  # noqa: ASYNC109  (aiohttp's own client timeout)
) -> Reply:
    """POST JSON (or raw bytes) through the front; the whole reply, read to its end."""
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    hdrs = {"content-type": "application/json", **(headers or {})}
    async with session.post(
        stack.url + path, data=data, headers=hdrs, timeout=aiohttp.ClientTimeout(total=timeout)
    ) as r:
        body = await r.read()
        return Reply(r.status, {k.lower(): v for k, v in r.headers.items()}, body)


async def wait_until(
    predicate: Callable[[], bool],
    timeout: float = 30.0,  # noqa: ASYNC109  (a polling deadline, not a cancel scope)
    what: str = "condition",
) -> None:
    """Poll until ``predicate()`` holds; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.01)


def sample(name: str, labels: Mapping[str, str] | None = None) -> float:
    """A sample of the EPP's Prometheus registry (0 when absent)."""
    value = REGISTRY.get_sample_value(name, dict(labels or {}))
    return float(value) if value is not None else 0.0


def total_inflight(stack: Stack) -> int:
    return sum(ep.inflight_requests for ep in stack.epp.datastore.endpoints())


def queued(stack: Stack) -> int:
    """Requests waiting in flow control (0 with legacy admission)."""
    registry = getattr(stack.epp.admission, "registry", None)
    return int(registry.len) if registry is not None else 0


async def block(stack: Stack, session: aiohttp.ClientSession) -> asyncio.Task[Reply]:
    """Start a long request and wait until the EPP has it in flight (the pool is then full)."""
    await wait_until(lambda: total_inflight(stack) == 0 and queued(stack) == 0, what="idle")
    blocker = asyncio.create_task(post(session, stack, completion("block", 400)))
    await wait_until(lambda: total_inflight(stack) == 1, what="the blocker in flight")
    return blocker


async def release(blocker: asyncio.Task[Reply]) -> None:
    """End the blocker: the client goes away, Envoy resets the stream, the EPP frees the slot."""
    assert not blocker.done(), "the blocker ended by itself: the pool was never held"
    blocker.cancel()
    await asyncio.gather(blocker, return_exceptions=True)


def access_log(stack: Stack) -> dict[str, tuple[str, str]]:
    """request id -> (upstream host, the EPP's destination) from Envoy's file access log."""
    path = Path(stack.options.access_log_path or "")
    lines = path.read_text().splitlines() if path.exists() else []
    return {m[3]: (m[1], m[2]) for m in map(ACCESS_LOG_LINE.search, lines) if m}


def run_in_own_group(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``args`` in a new process group; on timeout the whole group (the harness and every
    simulator, EPP and Envoy it started) is killed, so nothing outlives the test."""
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the group this test started, by its id
        out, err = proc.communicate()
        raise AssertionError(f"timed out after {timeout:g}s:\n{out}\n{err}") from None
    return subprocess.CompletedProcess(args, proc.returncode, out, err)
