"""InferenceModelRewrite end to end without a front: manifests (both API groups) -> datastore ->
the director's weighted rewrite -> ``inference_extension_model_rewrite_decisions_total``; plus
upstream's rule precedence, the llm-d header names, and the request TTFT/TPOT metrics.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from tests.unit.test_director import World, _body, _headers, _sample, _world

from endpoint_picker.api.manifests import load_manifests, parse_object
from endpoint_picker.api.rewrite import InferenceModelRewrite, LlmdInferenceModelRewrite
from endpoint_picker.datastore import Datastore
from endpoint_picker.metrics import REGISTRY
from endpoint_picker.requests.rewrite import RewriteTable, pick_target
from endpoint_picker.sources.files import FileSource

POOL_YAML = """
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: pool}
spec:
  selector: {matchLabels: {app: vllm}}
  targetPorts: [{number: 8000}]
  endpointPickerRef: {name: epp, port: {number: 9002}}
"""


def rewrite(
    name: str,
    rules: list[dict[str, Any]],
    *,
    created: str | None = None,
    api_version: str = "inference.networking.x-k8s.io/v1alpha2",
    pool: str = "pool",
) -> InferenceModelRewrite:
    meta: dict[str, Any] = {"name": name}
    if created:
        meta["creationTimestamp"] = created
    obj = parse_object(
        {
            "apiVersion": api_version,
            "kind": "InferenceModelRewrite",
            "metadata": meta,
            "spec": {"poolRef": {"name": pool}, "rules": rules},
        }
    )
    assert isinstance(obj, InferenceModelRewrite)
    return obj


def exact(model: str, *targets: tuple[str, int | None]) -> dict[str, Any]:
    return {
        "matches": [{"model": {"value": model}}],
        "targets": [
            {"modelRewrite": t} | ({"weight": w} if w is not None else {}) for t, w in targets
        ],
    }


@pytest.fixture
async def world() -> AsyncIterator[World]:
    w = await _world()
    yield w
    await w.admission.stop()


def test_manifests_in_both_groups_load(tmp_path: Path) -> None:
    docs = [POOL_YAML]
    for group in ("inference.networking.x-k8s.io", "llm-d.ai"):
        docs.append(
            f"apiVersion: {group}/v1alpha2\nkind: InferenceModelRewrite\n"
            f"metadata: {{name: rw-{group.split('.')[0]}}}\n"
            "spec:\n  poolRef: {name: pool}\n  rules:\n"
            "  - matches: [{model: {value: food-review}}]\n"
            "    targets: [{modelRewrite: food-review-v1, weight: 90},"
            " {modelRewrite: food-review-v2, weight: 10}]\n"
        )
        docs.append(
            f"apiVersion: {group}/v1alpha2\nkind: InferenceObjective\n"
            f"metadata: {{name: obj-{group.split('.')[0]}}}\n"
            "spec: {priority: 5, poolRef: {name: pool}}\n"
        )
    path = tmp_path / "all.yaml"
    path.write_text("---\n".join(docs))
    result = load_manifests([path])
    assert result.ok, result.errors
    assert sorted(type(r).__name__ for r in result.rewrites) == [
        "InferenceModelRewrite",
        "LlmdInferenceModelRewrite",
    ]
    assert len(result.objectives) == 2
    ds = Datastore()
    FileSource(ds, [str(path)]).load_or_raise()
    assert sorted(r.metadata.name for r in ds.rewrites.all()) == ["rw-inference", "rw-llm-d"]
    assert ds.priority_of("obj-llm-d") == 5


@pytest.mark.parametrize(
    ("patch", "reason"),
    [
        ({"targets": []}, "at least 1"),
        ({"targets": [{"modelRewrite": "x", "weight": 0}]}, "greater than or equal to 1"),
        ({"targets": [{"modelRewrite": "x", "weight": 1_000_001}]}, "less than or equal to"),
        ({"matches": [{"model": {"value": ""}}]}, "at least 1"),
        ({"matches": [{"model": {"type": "Prefix", "value": "a"}}]}, "'Exact'"),
    ],
)
def test_invalid_rules_are_refused_with_the_field_path(patch: dict[str, Any], reason: str) -> None:
    rule = exact("m", ("t", 1)) | patch
    with pytest.raises(Exception) as err:
        rewrite("bad", [rule])
    assert "spec.rules[0]" in str(err.value) and reason in str(err.value)


def test_llmd_group_model_is_the_same_type() -> None:
    rw = rewrite("r", [exact("a", ("b", None))], api_version="llm-d.ai/v1alpha2")
    assert isinstance(rw, LlmdInferenceModelRewrite) and isinstance(rw, InferenceModelRewrite)


def test_precedence_exact_over_generic_then_oldest_then_first_rule() -> None:
    table = RewriteTable()
    table.set(
        rewrite("generic", [{"targets": [{"modelRewrite": "g"}]}], created="2025-01-01T00:00:00Z")
    )
    table.set(rewrite("young", [exact("m", ("young", None))], created="2025-03-01T00:00:00Z"))
    table.set(
        rewrite(
            "old",
            [exact("m", ("old-first", None)), exact("m", ("old-second", None))],
            created="2025-02-01T00:00:00Z",
        )
    )
    name, rule = table.rule_for("m") or ("", None)
    assert name == "old" and rule is not None and pick_target(rule) == "old-first"
    assert (table.rule_for("other") or ("",))[0] == "generic"  # no exact match: generic
    table.delete("old")
    assert (table.rule_for("m") or ("",))[0] == "young"
    table.clear()
    assert table.rule_for("m") is None


def test_weighted_draw_follows_the_weights_and_unweighted_splits_evenly() -> None:
    rng = random.Random(7)
    rule = rewrite("r", [exact("m", ("a", 90), ("b", 10))]).spec.rules[0]
    draws = Counter(pick_target(rule, rng) for _ in range(10_000))
    assert 8_700 < draws["a"] < 9_300 and draws["a"] + draws["b"] == 10_000
    even = rewrite("r", [exact("m", ("a", None), ("b", None))]).spec.rules[0]
    draws = Counter(pick_target(even, rng) for _ in range(10_000))
    assert 4_700 < draws["a"] < 5_300


async def test_director_rewrites_counts_and_answers_with_the_clients_name(world: World) -> None:
    model = f"food-{uuid.uuid4().hex[:6]}"
    world.datastore.set_rewrite(rewrite("rollout", [exact(model, (f"{model}-v2", 1))]))
    ctx = await world.director.handle_request(_headers(), _body(model))
    assert ctx.request.target_model == f"{model}-v2"
    assert b'"model":"' + f"{model}-v2".encode() + b'"' in ctx.body
    labels = {"model_rewrite_name": "rollout", "model_name": model, "target_model": f"{model}-v2"}
    assert _sample("inference_extension_model_rewrite_decisions_total", **labels) == 1
    world.director.handle_response_headers(ctx, {":status": "200"})
    out = world.director.handle_response_body(
        ctx, b'{"model":"' + f"{model}-v2".encode() + b'","choices":[]}', True
    )
    assert f'"model":"{model}"'.encode() in out


async def test_rule_wins_over_the_rewrite_header_as_upstream(world: World) -> None:
    model = f"m-{uuid.uuid4().hex[:6]}"
    world.datastore.set_rewrite(rewrite("r", [exact(model, ("by-rule", 1))]))
    headers = _headers(**{"x-llm-d-model-name-rewrite": "by-header"})
    ctx = await world.director.handle_request(headers, _body(model))
    assert ctx.request.target_model == "by-rule"
    world.director.finish(ctx)


@pytest.mark.parametrize(
    ("headers", "priority", "target"),
    [
        ({"x-llm-d-inference-objective": "critical"}, 10, None),
        ({"x-gateway-inference-objective": "critical"}, 10, None),
        (
            {"x-llm-d-inference-objective": "critical", "x-gateway-inference-objective": "unset"},
            10,
            None,
        ),
        ({"x-llm-d-model-name-rewrite": "new"}, 0, "new"),
        ({"x-gateway-model-name-rewrite": "old", "x-llm-d-model-name-rewrite": "new"}, 0, "new"),
    ],
)
async def test_llmd_headers_beside_gateway_ones(
    world: World, headers: dict[str, str], priority: int, target: str | None
) -> None:
    model = f"h-{uuid.uuid4().hex[:6]}"
    ctx = await world.director.handle_request(_headers(**headers), _body(model))
    assert ctx.request.priority == priority
    assert ctx.request.target_model == (target or model)
    world.director.finish(ctx)


async def test_ttft_and_tpot_are_recorded_with_upstreams_names(world: World) -> None:
    model = f"t-{uuid.uuid4().hex[:6]}"
    headers = _headers(**{"x-llm-d-slo-ttft-ms": "100"})
    ctx = await world.director.handle_request(headers, _body(model, stream=True))
    world.clock.advance(0.25)
    world.director.handle_response_headers(
        ctx, {":status": "200", "content-type": "text/event-stream"}
    )
    world.director.handle_response_body(ctx, b'data: {"choices":[{"text":"a"}]}\n\n', False)
    world.clock.advance(0.5)
    usage = b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":6}}\n\n'
    world.director.handle_response_body(ctx, usage + b"data: [DONE]\n\n", True)
    labels = {"model_name": model, "target_model_name": model}
    assert _sample("inference_objective_request_ttft_seconds_sum", **labels) == pytest.approx(0.25)
    assert _sample("inference_objective_request_tpot_seconds_sum", **labels) == pytest.approx(0.1)
    gauge = "inference_objective_inference_request_metric"
    assert _sample(gauge, **labels, type="ttft") == pytest.approx(0.25)
    violations = "inference_objective_request_slo_violation_total"
    assert _sample(violations, **labels, type="ttft_slo_violation") == 1


def test_no_created_series_as_gos_client() -> None:
    text = generate_latest(REGISTRY).decode()
    assert "_created" not in text


def test_creation_time_is_read_for_precedence() -> None:
    rw = rewrite("x", [exact("m", ("t", 1))], created="2025-01-02T03:04:05Z")
    assert rw.metadata.creation_timestamp == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
