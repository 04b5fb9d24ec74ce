"""Several parsers: the one a request's path names (llm-d-router's ``ParserRegistry``).

The first half is upstream's ``pkg/epp/handlers/parsers_test.go`` with named FAKE parsers that
only claim paths; the second runs real configs (openai + passthrough) through the builder and
the director.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import pytest
from tests.unit.test_director import World, _world

from endpoint_picker.config import build, load_config_text
from endpoint_picker.errors import BadRequest
from endpoint_picker.requests import OpenAIParser, PassthroughParser
from endpoint_picker.requests.registry import PARSER_KEY, ParserRegistry
from endpoint_picker.requests.types import InferenceRequest
from endpoint_picker.requests.usage import UsageTracker


@dataclass
class FakeParser:
    """A FAKE parser: a name, its type and the paths it claims; parsing records its name."""

    name: str
    claims: tuple[str, ...]
    type_name: str = ""

    def __post_init__(self) -> None:
        self.type_name = self.type_name or self.name

    def parse(self, headers: Mapping[str, str], body: bytes, path: str = "") -> InferenceRequest:
        return InferenceRequest(request_id=self.name, headers=dict(headers))

    def usage_tracker(self, content_type: str | None = None) -> UsageTracker | None:
        return None


def _registry(*parsers: FakeParser) -> ParserRegistry:
    return ParserRegistry([(p.name, p) for p in parsers])


OPENAI = FakeParser("openai", ("v1/chat/completions", "v1/completions"))
ANTHROPIC = FakeParser("anthropic", ("v1/messages",))
VERTEX = FakeParser("vertex", ("PredictionService/ChatCompletions",))


@pytest.mark.parametrize(
    ("path", "want"),
    [
        ("/v1/chat/completions", "openai"),
        ("/v1/messages", "anthropic"),
        ("/google.cloud.aiplatform.v1beta1.PredictionService/ChatCompletions", "vertex"),
        ("/google.cloud.aiplatform.v1.PredictionService/ChatCompletions", "vertex"),
        ("/v1/messages/", "anthropic"),  # trailing slash
        ("/v1/chat/completions?stream=true", "openai"),  # query string
        ("/unknown/path", None),
    ],
)
def test_registry(path: str, want: str | None) -> None:
    registry = _registry(OPENAI, ANTHROPIC, VERTEX)
    if want is None:
        with pytest.raises(BadRequest) as err:
            registry.resolve(path)
        assert "no parser registered matching path suffix for: /unknown/path" in err.value.msg
        return
    assert registry.resolve(path).name == want


def test_first_listed_wins_a_tie() -> None:
    custom = FakeParser("custom", ("v1/chat/completions",))
    openai = FakeParser("openai", ("v1/chat/completions",))
    assert _registry(openai, custom).resolve("/v1/chat/completions").name == "openai"
    assert _registry(custom, openai).resolve("/v1/chat/completions").name == "custom"


def test_a_parser_without_claims_is_the_fallback() -> None:
    registry = _registry(OPENAI, FakeParser("passthrough", ()))
    assert registry.resolve("/v1/completions").name == "openai"
    assert registry.resolve("/unknown/path").name == "passthrough"


def test_the_longest_suffix_wins_whatever_the_order() -> None:
    registry = _registry(
        FakeParser("sglang", ("generate",)), FakeParser("vllm", ("inference/v1/generate",))
    )
    assert registry.resolve("/inference/v1/generate").name == "vllm"
    assert registry.resolve("/generate").name == "sglang"


def test_a_type_listed_twice_counts_once() -> None:
    p1 = FakeParser("openai", ("v1/chat/completions",))
    p2 = FakeParser("openai-2", ("v1/completions",), type_name="openai")
    registry = _registry(p1, p2)
    assert registry.active == ["openai"]
    with pytest.raises(BadRequest):
        registry.resolve("/v1/completions")


def test_parsers_after_the_fallback_are_skipped() -> None:
    registry = _registry(FakeParser("passthrough", ()), OPENAI)
    assert registry.active == ["passthrough"]
    assert registry.resolve("/v1/chat/completions").name == "passthrough"


def test_no_path_reads_as_completions() -> None:
    registry = _registry(FakeParser("completions-only", ("v1/completions",)))
    assert registry.parse({}, b"").request_id == "completions-only"


# -- real configs ---------------------------------------------------------------------------------
HEAD = "apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\nflowControl:\n  enabled: true\n"
PLUGINS = "plugins:\n- name: oai\n  type: openai-parser\n- name: pass\n  type: passthrough-parser\n"


def _config(*parsers: str) -> str:
    refs = "".join(f"  - pluginRef: {p}\n" for p in parsers)
    return HEAD + PLUGINS + "requestHandler:\n  parsers:\n" + refs


def test_one_parser_is_used_as_it_is() -> None:
    built = build(
        load_config_text(HEAD + "requestHandler:\n  parsers:\n  - pluginRef: openai-parser\n")
    )
    assert isinstance(built.parser, OpenAIParser)


def test_several_parsers_build_a_registry_in_the_config_order() -> None:
    built = build(load_config_text(_config("oai", "pass")))
    assert isinstance(built.parser, ParserRegistry)
    assert built.parser.active == ["oai", "pass"]
    assert isinstance(built.parser.resolve("/v1/models/x"), PassthroughParser)


@pytest.fixture
async def world() -> AsyncIterator[World]:
    w = await _world(config_text=_config("oai", "pass"))
    yield w
    await w.admission.stop()


def _body() -> bytes:
    return json.dumps({"model": "m1", "messages": [{"role": "user", "content": "hi"}]}).encode()


async def test_openai_paths_are_parsed_other_paths_pass_through(world: World) -> None:
    chat = await world.director.handle_request({":path": "/v1/chat/completions"}, _body())
    assert chat.request.api == "chat/completions" and chat.request.prompt_text
    assert isinstance(chat.request.state[PARSER_KEY], OpenAIParser)
    other = await world.director.handle_request({":path": "/v1/rerank"}, _body())
    assert other.request.body is None and other.request.prompt_text == ""  # not interpreted
    assert isinstance(other.request.state[PARSER_KEY], PassthroughParser)
    # Each response is read by its request's parser: openai counts usage, passthrough none.
    usage = b'{"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}'
    for ctx in (chat, other):
        world.director.handle_response_headers(
            ctx, {":status": "200", "content-type": "application/json"}
        )
        world.director.handle_response_body(ctx, usage, True)
    assert chat.usage is not None and chat.usage.completion_tokens == 4
    assert other.usage is None


async def test_without_a_fallback_an_unclaimed_path_is_400() -> None:
    w = await _world(config_text=_config("oai", "oai"))
    try:
        with pytest.raises(BadRequest) as err:
            await w.director.handle_request({":path": "/v1/rerank"}, _body())
        assert err.value.http_status == 400
    finally:
        await w.admission.stop()
