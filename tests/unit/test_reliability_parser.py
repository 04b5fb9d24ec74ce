"""Issue 18 items 4, 8 and 9: request fields that feed accounting are validated in the parser
(``max_tokens``), JSON nested too deep is a 400, and a large prompt is rendered only in part."""

from __future__ import annotations

import json

import pytest
from tests.unit.reliability_support import body, headers, make_world

from endpoint_picker.errors import BadRequest
from endpoint_picker.flowcontrol import ConcurrencyDetector
from endpoint_picker.requests import openai
from endpoint_picker.requests import prompt as prompt_module
from endpoint_picker.requests.openai import OpenAIParser
from endpoint_picker.requests.types import InferenceRequest

TOKENS_CONFIG = """
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: concurrency-detector
  parameters: {concurrencyMode: tokens, maxTokenConcurrency: 1000}
saturationDetector:
  pluginRef: concurrency-detector
flowControl: {enabled: true}
"""


def _parse(raw: bytes) -> InferenceRequest:
    return OpenAIParser().parse(headers(), raw)


@pytest.mark.parametrize("value", ["-1", "-1e18", "1.5", "1e400", "-1e400"])
def test_a_bad_max_tokens_is_a_400(value: str) -> None:
    raw = b'{"model": "m", "prompt": "p", "max_tokens": ' + value.encode() + b"}"
    with pytest.raises(BadRequest, match="max_tokens"):
        _parse(raw)


def test_a_huge_max_tokens_is_capped_for_accounting() -> None:
    raw = b'{"model": "m", "prompt": "p", "max_tokens": 1' + b"0" * 400 + b"}"
    assert _parse(raw).max_tokens == openai.MAX_ACCOUNTED_TOKENS
    assert _parse(body(max_tokens=7.0)).max_tokens == 7


async def test_rejected_and_huge_requests_leave_token_accounting_clean() -> None:
    world = await make_world(TOKENS_CONFIG)
    try:
        with pytest.raises(BadRequest):
            await world.director.handle_request(headers(), body(max_tokens=-(10**18)))
        ctx = await world.director.handle_request(headers(), body(max_tokens=10**400))
        world.director.finish(ctx)
        eps = world.datastore.endpoints()
        assert isinstance(world.admission.detector, ConcurrencyDetector)
        assert all(ep.inflight_tokens == 0 for ep in eps)
        assert world.admission.detector.saturation(eps, world.clock.now()) == 0.0
        ctx = await world.director.handle_request(headers(), body(max_tokens=8))
        world.director.finish(ctx)
    finally:
        await world.admission.stop()


@pytest.mark.parametrize("depth", [200, 1_000, 100_000])
def test_deeply_nested_json_is_a_400(depth: int) -> None:
    raw = b'{"model": "m", "prompt": "p", "x": ' + b"[" * depth + b"]" * depth + b"}"
    with pytest.raises(BadRequest, match="nested"):
        _parse(raw)


def test_moderate_nesting_is_accepted() -> None:
    raw = b'{"model": "m", "prompt": "p", "x": ' + b"[" * 100 + b"]" * 100 + b"}"
    assert _parse(raw).incoming_model == "m"


@pytest.mark.parametrize(
    "prompt",
    [list(range(1_000_000)), "x" * 3_000_000, ["ab"] * 1_500_000],
    ids=["token-ids", "string", "strings"],
)
def test_a_large_prompt_is_rendered_only_up_to_the_cap(prompt: object) -> None:
    cap = prompt_module.MAX_PROMPT_CHARS
    req = _parse(json.dumps({"model": "m", "prompt": prompt}).encode())
    assert len(req.prompt_text) == cap
    if isinstance(prompt, list) and isinstance(prompt[0], int):
        assert req.prompt_text.startswith("0 1 2 3 ")


def test_a_mixed_array_past_the_cap_is_still_a_400() -> None:
    ids: list[object] = [*range(600_000), "x"]
    with pytest.raises(BadRequest, match="token ids"):
        _parse(json.dumps({"model": "m", "prompt": ids}).encode())
