"""Issue 18 items 2 and 4: an exception in a dispatch cycle never strands a queued request, and
the flow registry (keyed by client-chosen fairness ids) is bounded."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from endpoint_picker.clock import FakeClock
from endpoint_picker.datastore import Endpoint
from endpoint_picker.errors import Internal, ResourceExhausted
from endpoint_picker.flowcontrol import ConcurrencyDetector, FlowControlConfig, FlowController
from endpoint_picker.flowcontrol.bands import FlowRegistry
from endpoint_picker.flowcontrol.types import FlowKey, Item
from endpoint_picker.requests.types import InferenceRequest


class BrokenDetector(ConcurrencyDetector):
    """A fake detector whose ``saturation`` raises while ``broken`` is set."""

    broken = True

    def saturation(self, endpoints: Sequence[Endpoint], now: float) -> float:
        if self.broken:
            raise OverflowError("integer division result too large for a float")
        return 0.0


def _endpoint() -> Endpoint:
    return Endpoint(name="e", pod_name="e", address="10.0.0.1", port=8000)


def _request(flow: str = "t") -> InferenceRequest:
    return InferenceRequest(request_id=flow, headers={}, raw_body=b"x", fairness_id=flow)


async def test_an_exception_in_a_dispatch_cycle_fails_the_queue_and_keeps_running() -> None:
    detector = BrokenDetector()
    fc = FlowController(FlowControlConfig(), detector, lambda: [_endpoint()], FakeClock())
    await fc.start()
    try:
        waiting = [asyncio.ensure_future(fc.admit(_request())) for _ in range(3)]
        results = await asyncio.wait_for(asyncio.gather(*waiting, return_exceptions=True), 5)
        assert all(isinstance(r, Internal) for r in results), results
        assert fc.registry.len == 0
        detector.broken = False
        await asyncio.wait_for(fc.admit(_request()), 5)  # the controller still dispatches
    finally:
        await fc.stop()


def test_the_flow_registry_is_bounded() -> None:
    reg = FlowRegistry(FlowControlConfig(), 0.0, max_flows=3)
    items = [Item(_request(f"f{i}"), FlowKey(f"f{i}", 0), i, 0.0, 1e9, None) for i in range(4)]
    for it in items[:3]:
        assert reg.enqueue(it, 0.0)
    assert not reg.enqueue(items[3], 1.0)  # all three flows hold a request: no room
    reg.remove(items[0], 1.0)
    items[0].outcome = None
    assert reg.enqueue(items[3], 2.0)  # the idle flow f0 made way
    assert reg.flows == 3 and "f0" in reg.deleted


async def test_a_full_flow_registry_rejects_with_429() -> None:
    fc = FlowController(FlowControlConfig(), BrokenDetector(), lambda: [], FakeClock())
    fc.registry.max_flows = 0
    await fc.start()
    try:
        with pytest.raises(ResourceExhausted):
            await fc.admit(_request("new-tenant"))
    finally:
        await fc.stop()
