"""How long one large request holds the event loop in the EPP's per-request CPU work: parsing
the body and hashing its prompt prefix (issue 18, item 9), for a 15 MB token-id prompt (under
the fronts' 16 MiB body limit), a 15 MB string prompt and a 15 MB chat request.

Everything here runs on the loop's thread in the EPP, so the time is what every other request
(and ``/healthz``) waits. Run: ``.venv/bin/python benchmarks/large_prompt.py`` (about 10 s).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable

from endpoint_picker.requests.openai import OpenAIParser
from endpoint_picker.requests.types import InferenceRequest
from endpoint_picker.scheduling.plugins.prefix import ApproxPrefixCacheProducer

SIZE = 15_000_000


def _bodies() -> dict[str, tuple[str, bytes]]:
    ids = list(range(100_000, 100_000 + SIZE // 8))
    text = "lorem ipsum " * (SIZE // 12)
    return {
        "token ids": ("/v1/completions", json.dumps({"model": "m", "prompt": ids}).encode()),
        "string": ("/v1/completions", json.dumps({"model": "m", "prompt": text}).encode()),
        "chat": (
            "/v1/chat/completions",
            json.dumps({"model": "m", "messages": [{"role": "user", "content": text}]}).encode(),
        ),
    }


def _timed(fn: Callable[[], InferenceRequest], runs: int = 3) -> tuple[float, InferenceRequest]:
    times, req = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        req = fn()
        times.append(time.perf_counter() - t0)
    assert req is not None
    return statistics.median(times), req


def main() -> None:
    parser, producer = OpenAIParser(), ApproxPrefixCacheProducer()
    for name, (path, body) in _bodies().items():

        def work(path: str = path, body: bytes = body) -> InferenceRequest:
            req = parser.parse({":path": path}, body)
            producer.prepare(req, [])
            return req

        seconds, req = _timed(work)
        print(
            f"{name:9s} body {len(body) / 1e6:5.1f} MB  loop held {seconds * 1000:7.1f} ms  "
            f"prompt text kept {len(req.prompt_text) / 1e6:5.2f} M chars"
        )


if __name__ == "__main__":
    main()
