"""A vLLM-compatible model-server simulator for demos, tests and benchmarks (``epp sim``).

Queueing, continuous batching, a paged KV cache with prefix caching, LoRA adapters and vLLM's
Prometheus metrics, with no GPU. See docs/simulator.md.

Names are imported lazily so that ``epp --help`` (which imports ``sim.commands``) does not pay
for aiohttp and prometheus_client.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from endpoint_picker.sim.config import PROFILES, SimConfig
    from endpoint_picker.sim.dp import start_dp_fleet
    from endpoint_picker.sim.fleet import SimFleet, start_fleet, start_pd_fleet
    from endpoint_picker.sim.server import ENDPOINT_HEADER, SimServer

__all__ = [
    "ENDPOINT_HEADER",
    "PROFILES",
    "SimConfig",
    "SimFleet",
    "SimServer",
    "start_dp_fleet",
    "start_fleet",
    "start_pd_fleet",
]

_WHERE = {
    "PROFILES": "config",
    "SimConfig": "config",
    "SimFleet": "fleet",
    "start_fleet": "fleet",
    "start_pd_fleet": "fleet",
    "start_dp_fleet": "dp",
    "ENDPOINT_HEADER": "server",
    "SimServer": "server",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"endpoint_picker.sim.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'endpoint_picker.sim' has no attribute {name!r}")
