"""What the live status page costs the request path: CPU per request, page closed vs open.

Every arm runs the real in-process request path (openai parser, flow control and scheduler
built from the default config, a datastore of 8 endpoints with fresh metrics): handle_request,
the response body, finish; the arms are described in :func:`main_async`. Medians of the
per-chunk CPU time are reported, with each arm's ratio to "closed".

    .venv/bin/python benchmarks/status_overhead.py [--chunk 200] [--rounds 40]

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

from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

from endpoint_picker.config import build, load_config
from endpoint_picker.datastore import Datastore
from endpoint_picker.director import Director
from endpoint_picker.flowcontrol import build_admission
from endpoint_picker.runner.status import DecisionLog, StatusPage
from endpoint_picker.tracing import RequestTracer, provider

OUT = Path(__file__).resolve().parent / "results" / "status_overhead.json"
DOC = Path(__file__).resolve().parents[1] / "docs" / "observability.md"
BEGIN, END = "<!-- status-overhead:begin -->", "<!-- status-overhead:end -->"
BODY = json.dumps(
    {"model": "m", "prompt": "You are a helpful assistant. " * 40, "max_tokens": 32}
).encode()
RESPONSE = b'{"usage":{"prompt_tokens":300,"completion_tokens":32,"total_tokens":332}}'


ARMS = {"closed": 0, "recording": 0, "polled at 100 req/s": 100, "polled at 1000 req/s": 1000}
TRACED = "closed, every request traced"  # tracing's cost when on (spans to memory)


async def main_async(chunk: int, rounds: int) -> dict[str, Any]:
    """One world (datastore of 8 endpoints, flow control, scheduler, director); the arms take
    turns chunk by chunk on it, so machine noise falls on all of them alike. ``closed``: no
    decision log; ``recording``: every decision and outcome recorded (the request path's share
    of an open page); ``polled at R req/s``: also one ``/status.json`` render per R requests (a
    browser polls once a second, so that is the page's whole cost at R requests per second)."""
    datastore = Datastore()
    datastore.set_static_endpoints({f"ep{i}": (f"10.0.0.{i + 1}", 8000) for i in range(8)})
    built = build(load_config(None))
    admission = build_admission(built.flow_control, built.detector, datastore.endpoints)
    await admission.start()
    log = DecisionLog()
    page = StatusPage(datastore, log, lambda: admission)
    director = Director(datastore, built.parser, admission, built.scheduler)
    exporter = InMemorySpanExporter()
    tracer = RequestTracer(provider(SimpleSpanProcessor(exporter), sampler=ALWAYS_ON))
    arms = [*ARMS, TRACED]
    headers = {":path": "/v1/completions", "content-type": "application/json"}
    served = dict.fromkeys(arms, 0)  # requests per arm, for its poll cadence

    async def run(arm: str) -> float:
        every = ARMS.get(arm, 0)
        director.decisions = None if arm in ("closed", TRACED) else log
        director.tracer = tracer if arm == TRACED else None
        exporter.clear()
        start = time.process_time()
        for _ in range(chunk):
            now = time.monotonic()  # fresh, idle scrapes, as the data layer delivers
            for ep in datastore.endpoints():
                ep.metrics.update_time = now
                ep.dispatched_since_scrape = 0
            ctx = await director.handle_request(headers, BODY)
            director.handle_response_headers(ctx, {":status": "200"})
            director.handle_response_body(ctx, RESPONSE, True)
            if every and served[arm] % every == 0:
                json.dumps(page.snapshot(), separators=(",", ":"))  # one poll of the page
            served[arm] += 1
        return (time.process_time() - start) / chunk

    samples: dict[str, list[float]] = {arm: [] for arm in arms}
    for arm in arms:  # warm-up: imports, caches, the log filled
        await run(arm)
    for r in range(rounds):
        for arm in arms[r % len(arms) :] + arms[: r % len(arms)]:  # no arm always first
            samples[arm].append(await run(arm))
    await admission.stop()
    medians = {arm: statistics.median(v) for arm, v in samples.items()}
    closed = medians["closed"]
    return {
        "command": f"python benchmarks/status_overhead.py --chunk {chunk} --rounds {rounds}",
        "requests_per_chunk": chunk,
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
        f"`{result['command']}`: {result['rounds']} rounds, the arms taking turns in chunks "
        f"of {result['requests_per_chunk']} requests on one director.\n{END}"
    )


def update_doc(result: dict[str, Any]) -> None:
    text = DOC.read_text()
    head, rest = text.split(BEGIN, 1)
    DOC.write_text(head + render(result) + rest.split(END, 1)[1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chunk", type=int, default=200, help="requests per turn")
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument(
        "--render-only", action="store_true", help="rewrite the docs block from the results file"
    )
    args = ap.parse_args()
    if args.render_only:
        update_doc(json.loads(OUT.read_text()))
        return 0
    result = asyncio.run(main_async(args.chunk, args.rounds))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    update_doc(result)
    for k, v in result.items():
        print(f"{k}: {v}")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
