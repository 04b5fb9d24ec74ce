"""What the live status page costs the request path: CPU per request, page closed vs open.

Both arms run the real in-process request path (openai parser, flow control and scheduler
built from the default config, a datastore of 8 endpoints with fresh metrics): handle_request,
the response body, finish. "closed" has no decision log; "open" records every decision and
outcome and renders ``/status.json`` (``StatusPage.snapshot``) once per simulated second of
traffic, as a browser polling the page does. Arms alternate over several rounds on the same
process; medians are reported, with the ratio open/closed.

    .venv/bin/python benchmarks/status_overhead.py [--requests 4000] [--rounds 7]

Writes benchmarks/results/status_overhead.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any

from endpoint_picker.config import build_detector, build_scheduler, load_config
from endpoint_picker.datastore import Datastore
from endpoint_picker.director import Director
from endpoint_picker.flowcontrol import build_admission
from endpoint_picker.requests import PARSERS
from endpoint_picker.runner.status import DecisionLog, StatusPage

OUT = Path(__file__).resolve().parent / "results" / "status_overhead.json"
BODY = json.dumps(
    {"model": "m", "prompt": "You are a helpful assistant. " * 40, "max_tokens": 32}
).encode()
RESPONSE = b'{"usage":{"prompt_tokens":300,"completion_tokens":32,"total_tokens":332}}'


async def _arm(open_page: bool, n: int, requests_per_second: int) -> float:
    """CPU seconds per request for ``n`` requests."""
    datastore = Datastore()
    datastore.set_static_endpoints({f"ep{i}": (f"10.0.0.{i + 1}", 8000) for i in range(8)})
    for ep in datastore.endpoints():
        ep.metrics.update_time = time.monotonic()
    cfg = load_config(None)
    plugin = cfg.saturation_detector_plugin
    detector = build_detector(plugin)
    admission = build_admission(cfg.flow_control, detector, datastore.endpoints)
    await admission.start()
    scheduler = build_scheduler(cfg, detectors={plugin.name: detector})
    log = DecisionLog() if open_page else None
    page = StatusPage(datastore, log, lambda: admission) if log is not None else None
    director = Director(
        datastore, PARSERS[cfg.parser_plugin.type_name], admission, scheduler, decisions=log
    )
    headers = {":path": "/v1/completions", "content-type": "application/json"}
    start = time.process_time()
    for i in range(n):
        if i % 10 == 0:  # fresh, idle scrapes, as the data layer delivers (else: saturated)
            for ep in datastore.endpoints():
                ep.metrics.update_time = time.monotonic()
                ep.dispatched_since_scrape = 0
        ctx = await director.handle_request(headers, BODY)
        director.handle_response_headers(ctx, {":status": "200"})
        director.handle_response_body(ctx, RESPONSE, True)
        if page is not None and i % requests_per_second == 0:
            json.dumps(page.snapshot())  # one poll of the page
    cpu = time.process_time() - start
    await admission.stop()
    return cpu / n


async def main_async(n: int, rounds: int, rps: int) -> dict[str, Any]:
    closed: list[float] = []
    opened: list[float] = []
    await _arm(False, 200, rps)  # warm-up (imports, caches)
    for _ in range(rounds):
        closed.append(await _arm(False, n, rps))
        opened.append(await _arm(True, n, rps))
    c, o = statistics.median(closed), statistics.median(opened)
    return {
        "command": f"python benchmarks/status_overhead.py --requests {n} --rounds {rounds} "
        f"--rps {rps}",
        "requests_per_round": n,
        "rounds": rounds,
        "polls_per_requests": rps,
        "closed_us_per_request_median": round(c * 1e6, 2),
        "open_us_per_request_median": round(o * 1e6, 2),
        "ratio_open_vs_closed": round(o / c, 4),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--rps", type=int, default=100, help="requests per page poll")
    args = ap.parse_args()
    result = asyncio.run(main_async(args.requests, args.rounds, args.rps))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    for k, v in result.items():
        print(f"{k}: {v}")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
