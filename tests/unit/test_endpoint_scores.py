"""``--emit-endpoint-scores`` (llm-d-router): every scored candidate's weighted score in the
routing answer's ``envoy.lb`` metadata, under ``x-gateway-destination-endpoint-scores``.

Upstream's cases: ``pkg/epp/handlers/request_test.go`` (``TestGenerateRequestHeaderResponse_
EndpointScores``) for the message, and ``test/integration/epp/endpoint_scores_test.go`` for the
whole path (scores for the runner-up too; absent by default).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from google.protobuf import json_format
from tests.unit.test_director import World, _world
from tests.unit.test_extproc_upstream_cases import req_body, req_headers, run

from endpoint_picker.extproc import messages as m
from endpoint_picker.runner.upstream_flags import settings_from_args

LB = "envoy.lb"
SCORES = "x-gateway-destination-endpoint-scores"


def _lb(answer: bytes | pb.ProcessingResponse) -> dict[str, Any]:
    msg = pb.ProcessingResponse.FromString(answer) if isinstance(answer, bytes) else answer
    out: dict[str, Any] = json_format.MessageToDict(msg.dynamic_metadata)[LB]
    return out


@pytest.mark.parametrize(
    ("scores", "want"),
    [
        (
            {"1.2.3.4:8080": 0.91, "5.6.7.8:8080": 0.74},
            {"1.2.3.4:8080": 0.91, "5.6.7.8:8080": 0.74},
        ),
        (None, None),  # enabled without scores, or disabled: the key is absent
        ({}, None),
    ],
)
def test_the_routing_answer_carries_the_scores(
    scores: dict[str, float] | None, want: dict[str, float] | None
) -> None:
    dest = "1.2.3.4:8080,5.6.7.8:8080"
    for answer in (
        m.route_on_headers(dest, [], scores),
        m.route_on_body(dest, [], None, scores),
    ):
        lb = _lb(answer)
        assert lb["x-gateway-destination-endpoint"] == dest
        assert lb.get(SCORES) == want


@pytest.fixture
async def world() -> AsyncIterator[World]:
    w = await _world()
    yield w
    await w.admission.stop()


def _request() -> list[pb.ProcessingRequest]:
    body = json.dumps({"model": "m1", "prompt": "hello", "max_tokens": 5}).encode()
    return [req_headers(**{"x-request-id": "r-scores"}), req_body(body)]


async def test_scores_of_every_candidate_ride_on_the_routing_answer(world: World) -> None:
    world.director.emit_endpoint_scores = True
    world.endpoint("b").metrics.waiting_queue_size = 5  # scores differ; "a" or "c" wins
    out = await run(world, _request())
    lb = _lb(out[0])
    destinations = lb["x-gateway-destination-endpoint"].split(",")
    scores = lb[SCORES]
    assert set(scores) == {"10.0.0.1:8000", "10.0.0.2:8000", "10.0.0.3:8000"}
    assert all(d in scores for d in destinations)
    assert len(scores) > len(destinations)  # the runner-up's score is there too
    assert all(v >= 0.0 for v in scores.values())
    assert scores["10.0.0.2:8000"] < max(scores.values())


async def test_off_by_default(world: World) -> None:
    out = await run(world, _request())
    lb = _lb(out[0])
    assert "x-gateway-destination-endpoint" in lb and SCORES not in lb


def test_the_flag_reaches_the_settings() -> None:
    import argparse

    from endpoint_picker.runner import upstream_flags

    parser = argparse.ArgumentParser()
    parser.add_argument("--cert-path", default=None)
    upstream_flags.add_arguments(parser, float)
    on = settings_from_args(parser.parse_args(["--emit-endpoint-scores"]), kubernetes=False)
    off = settings_from_args(parser.parse_args([]), kubernetes=False)
    assert on.emit_endpoint_scores and not off.emit_endpoint_scores
    assert not any("emit-endpoint-scores" in note for note in on.notes)
