"""What the live status page costs the request path: CPU per request, page closed vs open.

Both arms run the real in-process request path (openai parser, flow control and scheduler
built from the default config, a datastore of 8 endpoints with fresh metrics): handle_request,
the response body, finish. "closed" has no decision log; "recording" records every decision and
outcome (the request path's share of an open page); "polled at R req/s" also renders
``/status.json`` (``StatusPage.snapshot``) once per R requests: a browser polls once a second,
so that is the page's whole cost at R requests per second. Arms alternate over several rounds
in one process; medians are reported, with each arm's ratio to "closed".

    .venv/bin/python benchmarks/status_overhead.py [--requests 3000] [--rounds 5]

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
DOC = Path(__file__).resolve().parents[1] / "docs" / "observability.md"
BEGIN, END = "<!-- status-overhead:begin -->", "<!-- status-overhead:end -->"
BODY = json.dumps(
    {"model": "m", "prompt": "You are a helpful assistant. " * 40, "max_tokens": 32}
).encode()
RESPONSE = b'{"usage":{"prompt_tokens":300,"completion_tokens":32,"total_tokens":332}}'


async def _arm(mode: str, n: int, requests_per_poll: int = 0) -> float:
    """CPU seconds per request for ``n`` requests. ``mode``: ``closed`` (no decision log),
    ``recording`` (the request path's part only), ``polled`` (plus one page poll per
    ``requests_per_poll`` requests: the browser polls once a second, so that is the request
    rate the figure stands for)."""
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
    log = DecisionLog() if mode != "closed" else None
    page = StatusPage(datastore, log, lambda: admission) if log is not None else None
    director = Director(
        datastore, PARSERS[cfg.parser_plugin.type_name], admission, scheduler, decisions=log
    )
    headers = {":path": "/v1/completions", "content-type": "application/json"}
    start = time.process_time()
    for i in range(n):
        now = time.monotonic()  # fresh, idle scrapes, as the data layer delivers (else: held)
        for ep in datastore.endpoints():
            ep.metrics.update_time = now
            ep.dispatched_since_scrape = 0
        ctx = await director.handle_request(headers, BODY)
        director.handle_response_headers(ctx, {":status": "200"})
        director.handle_response_body(ctx, RESPONSE, True)
        if page is not None and requests_per_poll and i % requests_per_poll == 0:
            json.dumps(page.snapshot(), separators=(",", ":"))  # one poll of the page
    cpu = time.process_time() - start
    await admission.stop()
    return cpu / n


ARMS = {"closed": 0, "recording": 0, "polled at 100 req/s": 100, "polled at 1000 req/s": 1000}


async def main_async(n: int, rounds: int) -> dict[str, Any]:
    samples: dict[str, list[float]] = {arm: [] for arm in ARMS}
    await _arm("closed", 200)  # warm-up (imports, caches)
    for _ in range(rounds):
        for arm, every in ARMS.items():
            samples[arm].append(await _arm(arm.split()[0], n, every))
    medians = {arm: statistics.median(v) for arm, v in samples.items()}
    closed = medians["closed"]
    return {
        "command": f"python benchmarks/status_overhead.py --requests {n} --rounds {rounds}",
        "requests_per_round": n,
        "rounds": rounds,
        "us_per_request_median": {arm: round(v * 1e6, 2) for arm, v in medians.items()},
        "ratio_vs_closed": {arm: round(v / closed, 4) for arm, v in medians.items()},
    }


def render(result: dict[str, Any]) -> str:
    """The figures block of docs/observability.md, from a results file."""
    rows = "".join(
        f"| {arm} | {us} us | {result['ratio_vs_closed'][arm]} |\n"
        for arm, us in result["us_per_request_median"].items()
    )
    return (
        f"{BEGIN}\n| page | CPU per request (median) | vs closed |\n|---|---|---|\n{rows}\n"
        f"`{result['command']}`: {result['rounds']} alternating rounds of "
        f"{result['requests_per_round']} requests.\n{END}"
    )


def update_doc(result: dict[str, Any]) -> None:
    text = DOC.read_text()
    head, rest = text.split(BEGIN, 1)
    DOC.write_text(head + render(result) + rest.split(END, 1)[1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument(
        "--render-only", action="store_true", help="rewrite the docs block from the results file"
    )
    args = ap.parse_args()
    if args.render_only:
        update_doc(json.loads(OUT.read_text()))
        return 0
    result = asyncio.run(main_async(args.requests, args.rounds))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    update_doc(result)
    for k, v in result.items():
        print(f"{k}: {v}")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
