"""How large ``/metrics`` grows when every request names a new model and a new tenant (issue 18,
item 2): 3,000 such requests through the real director and flow control, all answered 404 by
the (absent) model server. Run: ``.venv/bin/python benchmarks/label_cardinality.py`` (~10 s).
"""

from __future__ import annotations

import asyncio
import json

from prometheus_client import generate_latest

from endpoint_picker.clock import FakeClock
from endpoint_picker.config import build, load_config_text
from endpoint_picker.datastore import Datastore
from endpoint_picker.director import Director
from endpoint_picker.errors import InferenceError
from endpoint_picker.flowcontrol import build_admission
from endpoint_picker.metrics import REGISTRY

REQUESTS = 3000


async def main() -> None:
    clock = FakeClock()
    datastore = Datastore()
    datastore.set_static_endpoints({"a": ("10.0.0.1", 8000), "b": ("10.0.0.2", 8000)})
    built = build(load_config_text(None), clock=clock)
    admission = build_admission(built.flow_control, built.detector, datastore.endpoints, clock)
    await admission.start()
    director = Director(datastore, built.parser, admission, built.scheduler, clock=clock)
    before = len(generate_latest(REGISTRY))
    for i in range(REQUESTS):
        for ep in datastore.endpoints():
            ep.metrics.update_time, ep.dispatched_since_scrape = clock.now(), 0
        body = json.dumps({"model": f"model-{i}", "prompt": "x", "max_tokens": 1}).encode()
        headers = {":path": "/v1/completions", "x-gateway-inference-fairness-id": f"tenant-{i}"}
        try:
            ctx = await director.handle_request(headers, body)
        except InferenceError:
            continue
        director.handle_response_headers(ctx, {":status": "404"})
        director.finish(ctx)
    after = len(generate_latest(REGISTRY))
    print(f"/metrics: {before / 1e6:.2f} MB before, {after / 1e6:.2f} MB after {REQUESTS} requests")
    await admission.stop()


if __name__ == "__main__":
    asyncio.run(main())
