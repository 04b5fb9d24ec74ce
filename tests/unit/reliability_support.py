"""A director with real parts for the reliability tests (issue 18): Datastore, openai parser,
flow control and scheduler from the default config, on a FakeClock. No front."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from endpoint_picker.clock import FakeClock
from endpoint_picker.config import build, load_config_text
from endpoint_picker.datastore import Datastore
from endpoint_picker.director import Director
from endpoint_picker.flowcontrol import FlowController, build_admission

ADDRESSES = {"a": ("10.0.0.1", 8000), "b": ("10.0.0.2", 8000)}


@dataclass
class World:
    director: Director
    datastore: Datastore
    admission: FlowController
    clock: FakeClock

    def scrape(self) -> None:
        """Fresh, idle metrics for every endpoint (nothing dispatched since)."""
        for ep in self.datastore.endpoints():
            ep.metrics.update_time = self.clock.now()
            ep.dispatched_since_scrape = 0


async def make_world(config_text: str | None = None, staleness: float = 2.0) -> World:
    """Started flow control; call ``await world.admission.stop()`` when done. ``staleness``:
    ``--metrics-staleness-threshold``, as ``epp run`` passes it to admission and the director."""
    clock = FakeClock()
    datastore = Datastore()
    datastore.set_static_endpoints(ADDRESSES)
    built = build(load_config_text(config_text), clock=clock)
    admission = build_admission(
        built.flow_control, built.detector, datastore.endpoints, clock, ready_threshold=staleness
    )
    assert isinstance(admission, FlowController), "the config must turn flow control on"
    await admission.start()
    director = Director(
        datastore,
        built.parser,
        admission,
        built.scheduler,
        clock=clock,
        staleness_threshold=staleness,
    )
    world = World(director, datastore, admission, clock)
    world.scrape()
    return world


def body(model: str = "m1", prompt: str = "hello world", **extra: Any) -> bytes:
    return json.dumps({"model": model, "prompt": prompt, **extra}).encode()


def headers(**extra: str) -> dict[str, str]:
    return {":path": "/v1/completions", "x-request-id": str(uuid.uuid4()), **extra}


async def wait_for(cond: Callable[[], bool], limit: float = 10.0) -> None:
    """Poll ``cond`` until it holds (AssertionError after ``limit`` seconds: a hang, not a time)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not cond():
        if loop.time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.005)
