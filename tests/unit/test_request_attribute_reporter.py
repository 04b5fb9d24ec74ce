"""``request-attribute-reporter``: upstream's cases (GIE v1.5.0 / llm-d-router
``requestattributereporter/plugin_test.go``, and ``test/integration/epp/
request_attribute_reporter{,_streaming}_test.go``) against our plugin, config loader, real
director and ext_proc stream.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from google.protobuf import json_format
from tests.unit.test_director import World, _world
from tests.unit.test_extproc_upstream_cases import req_body, req_headers, resp_only, run

from endpoint_picker.config import ConfigErrors, load_config, load_config_text
from endpoint_picker.errors import ConfigError
from endpoint_picker.params import validate_params
from endpoint_picker.requests.types import Usage
from endpoint_picker.scheduling.plugins import RequestAttributeReporter

UPSTREAM = Path(__file__).resolve().parents[1] / "data" / "upstream-configs"
GIE_CONFIG = (
    UPSTREAM / "gie-v1.5.0/test__integration__epp__testdata__request-attribute-reporter-config.yaml"
)
COST = "x-gateway-inference-request-cost"


def _attr(name: str = "test-attribute", namespace: str = "", **kw: str) -> dict[str, Any]:
    key = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"key": key, **kw}


def _plugin(*attributes: dict[str, Any]) -> RequestAttributeReporter:
    return RequestAttributeReporter.from_params("r", {"attributes": list(attributes)})


# -- TestPluginCreation ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("attribute", "namespace"),
    [
        (_attr(expression="usage.prompt_tokens"), "envoy.lb"),  # valid, default namespace
        (_attr(namespace="custom-ns", expression="usage.prompt_tokens"), "custom-ns"),
    ],
)
def test_valid_configs(attribute: dict[str, Any], namespace: str) -> None:
    assert _plugin(attribute).namespace == namespace


@pytest.mark.parametrize(
    ("attributes", "path", "reason"),
    [
        ([{"key": {}, "expression": "usage.prompt_tokens"}], "attributes[0]", "key.name"),
        ([_attr()], "attributes[0]", "expression cannot be empty"),
        ([_attr(expression="usage.prompt_tokens + -")], "attributes[0].expression", "CEL"),
        (
            [_attr(expression="usage.prompt_tokens", condition="usage.prompt_tokens > ")],
            "attributes[0].condition",
            "CEL",
        ),
        ([], "attributes", "exactly one"),
        (
            [_attr(expression="usage.prompt_tokens"), _attr("b", expression="usage.prompt_tokens")],
            "attributes",
            "exactly one",
        ),
        # cel-go's checker refuses a name that is not declared; only ``usage`` is.
        ([_attr(expression="request.size")], "attributes[0].expression", "'request'"),
    ],
)
def test_invalid_configs(attributes: list[dict[str, Any]], path: str, reason: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate_params(
            RequestAttributeReporter.params_model, {"attributes": attributes}, path="parameters"
        )
    assert err.value.path == f"parameters.{path}"
    assert reason in err.value.reason


def test_a_config_error_names_the_file_and_path(tmp_path: Path) -> None:
    text = GIE_CONFIG.read_text().replace(
        "usage.completion_tokens\n", "usage.completion_tokens +\n"
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    with pytest.raises(ConfigErrors) as err:
        load_config(str(bad))
    assert "plugins[1].parameters.attributes[0].expression" in str(err.value)
    assert str(bad) in str(err.value)


# -- TestValueReporting ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("attribute", "usage", "before", "after"),
    [
        # request usage expression
        (
            _attr("prompt_tokens", expression="usage.prompt_tokens"),
            Usage(prompt_tokens=15),
            {},
            {"envoy.lb": {"prompt_tokens": 15.0}},
        ),
        # expression and condition with a zero value: nothing written
        (
            _attr(
                "prompt_tokens",
                expression="usage.prompt_tokens",
                condition="has(usage.prompt_tokens)",
            ),
            Usage(prompt_tokens=0),
            {},
            {},
        ),
        # condition not met: what was there stays, nothing added
        (
            _attr(
                "prompt_tokens",
                expression="usage.prompt_tokens",
                condition="usage.completion_tokens > 0",
            ),
            Usage(prompt_tokens=10),
            {"pre-existing": {"k": "data"}},
            {"pre-existing": {"k": "data"}},
        ),
        # condition is not a boolean
        (
            _attr(
                "prompt_tokens", expression="usage.prompt_tokens", condition="usage.prompt_tokens"
            ),
            Usage(prompt_tokens=10),
            {},
            {},
        ),
        # expression is not a number
        (_attr("prompt_tokens", expression="'not a number'"), Usage(prompt_tokens=10), {}, {}),
        # runtime error: no such field, no has() guard
        (
            _attr("prompt_tokens", expression="usage.non_existent_field"),
            Usage(prompt_tokens=10),
            {},
            {},
        ),
        # usage fields "missing" with has() guards: all present as 0 in upstream's struct -> 0
        (
            _attr(
                "total_tokens",
                expression="(has(usage.prompt_tokens) ? usage.prompt_tokens : 0) + "
                "(has(usage.completion_tokens) ? usage.completion_tokens : 0)",
            ),
            Usage(),
            {},
            {},
        ),
        # partial usage with has() guards
        (
            _attr(
                "total_tokens",
                expression="(has(usage.prompt_tokens) ? usage.prompt_tokens : 0) + "
                "(has(usage.completion_tokens) ? usage.completion_tokens : 0)",
            ),
            Usage(completion_tokens=25),
            {},
            {"envoy.lb": {"total_tokens": 25.0}},
        ),
    ],
)
def test_value_reporting(
    attribute: dict[str, Any],
    usage: Usage,
    before: dict[str, dict[str, Any]],
    after: dict[str, dict[str, Any]],
) -> None:
    metadata = json.loads(json.dumps(before))
    _plugin(attribute).process_response_body(None, usage, True, metadata)
    assert metadata == after


def test_usage_struct_is_upstreams_json() -> None:
    """total_tokens and cached tokens are there, as upstream's Usage marshals them; values are
    doubles (a Struct), so mixing with an int literal is CEL's type error, as in cel-go."""
    plugin = _plugin(
        _attr(expression="usage.total_tokens + usage.prompt_token_details.cached_tokens")
    )
    assert plugin.value(Usage(prompt_tokens=3, completion_tokens=4, cached_tokens=2)) == 9
    assert plugin.value(Usage(prompt_tokens=3)) is None  # no details: no such key
    assert (
        _plugin(_attr(expression="usage.prompt_tokens + 1")).value(Usage(prompt_tokens=3)) is None
    )
    assert _plugin(_attr(expression="usage.prompt_tokens * 2.5")).value(Usage(prompt_tokens=3)) == 7


# -- the integration cases: the real director, the ext_proc stream ------------------------------
# The test world drives flow control (the upstream config leaves it off: legacy admission).
FLOW_CONTROL = "flowControl:\n  enabled: true\n"


@pytest.fixture
async def world() -> AsyncIterator[World]:
    w = await _world(config_text=GIE_CONFIG.read_text() + FLOW_CONTROL)
    yield w
    await w.admission.stop()


def _request() -> list[pb.ProcessingRequest]:
    body = json.dumps({"model": "modelName", "prompt": "hello", "max_tokens": 5}).encode()
    return [req_headers(**{"x-request-id": "r-cost"}), req_body(body)]


def _metadata(answer: pb.ProcessingResponse) -> dict[str, Any]:
    out: dict[str, Any] = json_format.MessageToDict(answer.dynamic_metadata)
    return out


async def test_json_response_reports_the_cost_on_the_body_answer(world: World) -> None:
    response = (
        '{"choices":[{"finish_reason":"stop","index":0,"message":{"content":"Hello!","role":'
        '"assistant"}}],"id":"chatcmpl-1","model":"modelName","object":"chat.completion",'
        '"usage":{"completion_tokens":10,"prompt_tokens":32,"total_tokens":42}}'
    )
    out = await run(
        world,
        [*_request(), *resp_only({"content-type": "application/json", "status": "200"}, response)],
    )
    assert [o.WhichOneof("response") for o in out] == [
        "request_headers",
        "request_body",
        "response_headers",
        "response_body",
    ]
    assert _metadata(out[3]) == {"envoy.lb": {COST: 10.0}}
    assert COST not in str(_metadata(out[0]))  # the routing answer carries only the destination


async def test_sse_response_reports_the_cost_once_usage_is_seen(world: World) -> None:
    chunks = [
        'data: {"choices":[{"delta":{"content":"Hello! "},"index":0,"finish_reason":null}],'
        '"id":"123","created":1,"model":"modelName","object":"chat.completion.chunk"}\n',
        'data: {"choices":[{"delta":{},"index":0,"finish_reason":"stop"}],"id":"123","created":1,'
        '"model":"modelName","object":"chat.completion.chunk","usage":{"completion_tokens":10,'
        '"prompt_tokens":32,"total_tokens":42}}\n',
        "data: [DONE]\n",
    ]
    out = await run(
        world,
        [*_request(), *resp_only({"content-type": "text/event-stream", "status": "200"}, *chunks)],
    )
    assert len(out) == 6
    assert not out[3].HasField("dynamic_metadata")  # no usage yet: nothing to report
    assert _metadata(out[4]) == {"envoy.lb": {COST: 10.0}}
    assert _metadata(out[5]) == {"envoy.lb": {COST: 10.0}}  # upstream's check: the last answer
    # The hand-encoded body chunk is intact under the merged metadata.
    assert out[5].response_body.response.body_mutation.streamed_response.body == chunks[2].encode()
    assert out[5].response_body.response.body_mutation.streamed_response.end_of_stream


async def test_without_the_plugin_no_metadata_rides_on_the_body() -> None:
    text = "apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\n" + FLOW_CONTROL
    w = await _world(config_text=text)
    try:
        assert not w.director._body_plugins
        response = '{"usage":{"completion_tokens":10,"prompt_tokens":32,"total_tokens":42}}'
        msgs = [*_request(), *resp_only({"content-type": "application/json"}, response)]
        out = await run(w, msgs)
        assert out[3].HasField("response_body") and not out[3].HasField("dynamic_metadata")
    finally:
        await w.admission.stop()


def test_both_upstream_configs_with_the_plugin_load() -> None:
    for name in (
        "gie-v1.5.0/test__integration__epp__testdata__request-attribute-reporter-config.yaml",
        "llm-d-router/pkg__epp__framework__plugins__requestcontrol__requestattributereporter__"
        "README.yaml",
    ):
        cfg = load_config(str(UPSTREAM / name))
        assert any(p.type_name == "request-attribute-reporter" for p in cfg.plugins.values())


def test_the_text_loader_refuses_an_unknown_field() -> None:
    text = GIE_CONFIG.read_text().replace("expression:", "expresion:")
    with pytest.raises(ConfigErrors) as err:
        load_config_text(text)
    assert "expresion" in str(err.value)
