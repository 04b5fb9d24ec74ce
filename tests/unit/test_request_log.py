"""One structured line per request: fields, levels, JSON rendering, and the error-line limit."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from endpoint_picker import request_log
from endpoint_picker.clock import FakeClock
from endpoint_picker.config import build, load_config
from endpoint_picker.datastore import Datastore
from endpoint_picker.director import Director
from endpoint_picker.errors import InferenceError
from endpoint_picker.flowcontrol import build_admission
from endpoint_picker.runner.logs import JsonFormatter


class Lines(logging.Handler):
    """Collects the request logger's records as the JSON formatter renders them."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[dict[str, object]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def lines() -> Iterator[Lines]:
    handler = Lines()
    request_log.log.addHandler(handler)
    old = request_log.log.level
    request_log.log.setLevel(logging.DEBUG)
    limiter = request_log._limiter
    clock = limiter.now
    limiter.now = lambda: 100.0  # a fixed second: a slow run cannot straddle two
    limiter.window = 0  # a fresh second
    limiter.dropped = 0  # and nothing left over from earlier tests' lines
    yield handler
    limiter.now = clock
    request_log.log.removeHandler(handler)
    request_log.log.setLevel(old)


async def _director() -> tuple[Director, object, FakeClock]:
    clock = FakeClock()
    datastore = Datastore()
    datastore.set_static_endpoints({"a": ("10.0.0.1", 8000)})
    for ep in datastore.endpoints():
        ep.metrics.update_time = clock.now()
    built = build(load_config(None), clock=clock)
    admission = build_admission(built.flow_control, built.detector, datastore.endpoints, clock)
    await admission.start()
    return (
        Director(datastore, built.parser, admission, built.scheduler, clock=clock),
        admission,
        clock,
    )


async def test_completed_and_rejected_requests_each_log_one_structured_line(lines: Lines) -> None:
    director, admission, clock = await _director()
    headers = {
        ":path": "/v1/completions",
        "x-request-id": "rid-1",
        "x-gateway-inference-fairness-id": "tenant-a",
    }
    body = json.dumps({"model": "m", "prompt": "hi", "max_tokens": 2}).encode()
    ctx = await director.handle_request(headers, body)
    clock.advance(0.25)
    director.handle_response_headers(ctx, {":status": "200"})
    director.handle_response_body(ctx, b'{"usage":{"prompt_tokens":1}}', False)
    clock.advance(0.5)
    director.handle_response_body(ctx, b"", True)
    with pytest.raises(InferenceError):
        await director.handle_request({":path": "/v1/completions", "x-request-id": "r2"}, b"{bad")
    await admission.stop()  # type: ignore[attr-defined]

    done, bad = lines.lines
    assert done["level"] == "debug" and str(done["msg"]).startswith("request finished")
    assert done["request_id"] == "rid-1" and done["fairness_id"] == "tenant-a"
    assert done["endpoint"] == "10.0.0.1:8000" and done["outcome"] == "completed"
    assert done["status"] == 200 and done["priority"] == 0 and done["model"] == "m"
    assert done["ttft_s"] == 0.25 and done["duration_s"] == 0.75 and done["wait_s"] == 0.0
    assert bad["level"] == "info" and bad["status"] == 400
    assert bad["outcome"] == "BadRequest" and "error" in bad


def test_error_lines_are_limited_per_second_and_report_what_was_dropped(lines: Lines) -> None:
    for _ in range(request_log.RATE + 7):
        request_log.rejected(None, "ResourceExhausted", "saturated", 429, wait=0.0)
    assert len(lines.lines) == request_log.RATE
    request_log._limiter.now = lambda: 101.0  # the next second
    request_log.rejected(None, "ResourceExhausted", "saturated", 429, wait=0.0)
    assert lines.lines[-1]["dropped_lines"] == 7
