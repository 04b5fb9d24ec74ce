"""llm-d's role filters, label selector, disaggregation handler and deciders, against the
behaviour llm-d documents (docs/disaggregation.md, the plugin READMEs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from endpoint_picker.config.build import build_scheduler
from endpoint_picker.config.loader import load_config, load_config_text
from endpoint_picker.datastore import Endpoint
from endpoint_picker.errors import ConfigError
from endpoint_picker.metrics import REGISTRY
from endpoint_picker.pd_headers import PREFILLER_HEADER
from endpoint_picker.requests.types import InferenceRequest
from endpoint_picker.scheduling.framework import FORWARD_HEADERS_KEY, PrefixMatch
from endpoint_picker.scheduling.plugins import (
    AlwaysDisaggMultimodalDecider,
    DecodeFilter,
    EncodeFilter,
    LabelSelectorFilter,
    PrefillFilter,
    PrefixBasedPDDecider,
)
from endpoint_picker.scheduling.plugins.disagg import DisaggParams
from endpoint_picker.scheduling.plugins.prefix import STATE_KEY

ROLE = "llm-d.ai/role"


def ep(name: str, role: str | None = None, **labels: str) -> Endpoint:
    if role is not None:
        labels[ROLE] = role
    return Endpoint(
        name=name, pod_name=name, address=f"10.0.0.{len(name)}", port=8000, labels=labels
    )


def req(prompt: str = "x", body: dict[str, Any] | None = None) -> InferenceRequest:
    return InferenceRequest(
        "r1",
        {},
        body=body or {"prompt": prompt},
        api="completions",
        target_model="m",
        prompt_text=prompt,
    )


ALL_ROLES = ["prefill", "decode", "both", "encode", "prefill-decode", "encode-prefill",
             "encode-prefill-decode"]  # fmt: skip


def kept(flt: object, endpoints: list[Endpoint]) -> list[str]:
    return [e.name for e in flt.filter(req(), endpoints)]  # type: ignore[attr-defined]


def test_role_filters_match_llmd_role_table() -> None:
    pods = [ep("none")] + [ep(r, r) for r in ALL_ROLES]
    assert kept(DecodeFilter.from_params("d"), pods) == [
        "none", "decode", "both", "prefill-decode", "encode-prefill-decode"
    ]  # fmt: skip
    assert kept(PrefillFilter.from_params("p"), pods) == [
        "prefill", "both", "prefill-decode", "encode-prefill", "encode-prefill-decode"
    ]  # fmt: skip
    assert kept(EncodeFilter.from_params("e"), pods) == [
        "encode", "encode-prefill", "encode-prefill-decode"
    ]  # fmt: skip


def test_label_selector_match_labels_and_expressions() -> None:
    pods = [
        ep("a", "decode", hw="H100"),
        ep("b", "decode", hw="A100"),
        ep("c", "prefill", hw="H100", zone="x"),
        ep("d", hw="H100"),
    ]
    flt = LabelSelectorFilter.from_params("s", {"matchLabels": {"hw": "H100"}})
    assert kept(flt, pods) == ["a", "c", "d"]
    flt = LabelSelectorFilter.from_params(
        "s",
        {
            "matchLabels": {"hw": "H100"},
            "matchExpressions": [
                {"key": ROLE, "operator": "In", "values": ["decode", "prefill"]},
                {"key": "zone", "operator": "DoesNotExist"},
            ],
        },
    )
    assert kept(flt, pods) == ["a"]
    notin = {"matchExpressions": [{"key": ROLE, "operator": "NotIn", "values": ["decode"]}]}
    assert kept(LabelSelectorFilter.from_params("s", notin), pods) == ["c", "d"]
    exists = {"matchExpressions": [{"key": "zone", "operator": "Exists"}]}
    assert kept(LabelSelectorFilter.from_params("s", exists), pods) == ["c"]
    assert kept(LabelSelectorFilter.from_params("s", {}), pods) == ["a", "b", "c", "d"]


def test_label_selector_rejects_bad_expressions() -> None:
    with pytest.raises(ConfigError, match="non-empty values"):
        LabelSelectorFilter.from_params("s", {"matchExpressions": [{"key": "k", "operator": "In"}]})
    with pytest.raises(ConfigError, match="must be one of"):
        LabelSelectorFilter.from_params(
            "s", {"matchExpressions": [{"key": "k", "operator": "Gt", "values": ["1"]}]}
        )


def with_match(request: InferenceRequest, matches: dict[str, int], block: int = 16) -> None:
    request.state[STATE_KEY] = PrefixMatch(block, [], matches)


def test_prefix_decider_threshold_on_uncached_suffix() -> None:
    d = PrefixBasedPDDecider.from_params("p", {"nonCachedTokens": 100})
    decode = ep("dec", "decode")
    r = req("a" * 4 * 400)  # 400 tokens at 4 characters a token
    with_match(r, {"dec": 20})  # 320 cached -> 80 uncached
    assert not d.disaggregate(r, decode)
    with_match(r, {"dec": 18})  # 288 cached -> 112 uncached
    assert d.disaggregate(r, decode)
    with_match(r, {})  # nothing cached on this endpoint
    assert d.disaggregate(r, decode)
    assert not d.disaggregate(req("a" * 4 * 99), decode)  # prompt shorter than the threshold


def test_prefix_decider_defaults_never_disaggregate_and_prompt_gate() -> None:
    assert PrefixBasedPDDecider.from_params("p").params.non_cached_tokens == 0
    assert not PrefixBasedPDDecider.from_params("p").disaggregate(req("a" * 4000), ep("d"))
    gated = PrefixBasedPDDecider.from_params("p", {"nonCachedTokens": 8, "promptTokens": 500})
    assert not gated.disaggregate(req("a" * 4 * 400), ep("d"))
    assert gated.disaggregate(req("a" * 4 * 600), ep("d"))
    with pytest.raises(ConfigError, match=">= 0"):
        PrefixBasedPDDecider.from_params("p", {"nonCachedTokens": -1})


def test_multimodal_decider() -> None:
    d = AlwaysDisaggMultimodalDecider.from_params("mm")
    text = {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}
    image = {
        "messages": [
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "u"}}]}
        ]
    }
    assert not d.disaggregate(req(body=text), None)
    assert d.disaggregate(req(body=image), None)
    assert not d.disaggregate(req(body={"messages": [{"role": "user", "content": "hi"}]}), None)


def test_disagg_params_legacy_flat_format_and_errors() -> None:
    legacy = DisaggParams.model_validate(
        {"decodeProfile": "d", "prefillProfile": "p", "deciderPluginName": "x"}
    )
    assert (legacy.profiles.decode, legacy.profiles.prefill, legacy.deciders.prefill) == (
        "d",
        "p",
        "x",
    )
    assert DisaggParams.model_validate({"stageOrder": "prefill_first"}).stage_order == (
        "prefill-first"
    )
    with pytest.raises(ValueError, match="one format"):
        DisaggParams.model_validate({"decodeProfile": "d", "profiles": {"decode": "d"}})
    with pytest.raises(ValueError, match="prefill-first"):
        DisaggParams.model_validate({"stageOrder": "prefill-first", "deciders": {"prefill": "x"}})


PD_CONFIG = """
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: prefill-filter
- type: decode-filter
- type: prefix-cache-scorer
- type: prefix-based-pd-decider
  parameters:
    nonCachedTokens: 64
- type: disagg-profile-handler
  parameters:
    deciders:
      prefill: prefix-based-pd-decider
schedulingProfiles:
- name: prefill
  plugins:
  - pluginRef: prefill-filter
  - pluginRef: prefix-cache-scorer
- name: decode
  plugins:
  - pluginRef: decode-filter
  - pluginRef: prefix-cache-scorer
"""


def decisions(decision: str) -> float:
    value = REGISTRY.get_sample_value(
        "llm_d_epp_disagg_decision_total",
        {
            "plugin_name": "disagg-profile-handler",
            "plugin_type": "disagg-profile-handler",
            "model_name": "m",
            "decision_type": decision,
        },
    )
    return value or 0.0


def test_disagg_handler_runs_prefill_only_when_decider_says_so() -> None:
    scheduler = build_scheduler(load_config_text(PD_CONFIG))
    pool = [ep("p1", "prefill"), ep("d1", "decode"), ep("dd2", "decode")]
    before = decisions("prefill-decode"), decisions("decode-only")

    long_prompt = req("long prompt " * 200)  # ~600 tokens, nothing cached
    result = scheduler.schedule(long_prompt, pool)
    assert result.primary_profile_name == "decode"
    assert result.primary.labels[ROLE] == "decode"
    prefill = result.profile_results["prefill"]
    assert prefill is not None and [e.name for e in prefill.endpoints] == ["p1"]
    scheduler.pre_request(long_prompt, result)
    assert long_prompt.state[FORWARD_HEADERS_KEY] == {PREFILLER_HEADER: "10.0.0.2:8000"}

    short = req("hello")  # 1 token: under the threshold
    result = scheduler.schedule(short, pool)
    assert "prefill" not in result.profile_results
    scheduler.pre_request(short, result)
    assert PREFILLER_HEADER not in short.state[FORWARD_HEADERS_KEY]
    assert (decisions("prefill-decode"), decisions("decode-only")) == (
        before[0] + 1,
        before[1] + 1,
    )


def test_disagg_handler_fails_without_decode_workers() -> None:
    scheduler = build_scheduler(load_config_text(PD_CONFIG))
    with pytest.raises(Exception, match="decode"):
        scheduler.schedule(req("x"), [ep("p1", "prefill")])


def test_disagg_handler_decider_must_be_a_defined_decider() -> None:
    bad = PD_CONFIG.replace("prefill: prefix-based-pd-decider", "prefill: decode-filter")
    with pytest.raises(Exception, match="is not a decider"):
        load_config_text(bad)


UPSTREAM = Path(__file__).resolve().parents[1] / "data" / "upstream-configs" / "llm-d-router"


def test_llmd_pd_example_runs_unchanged_and_a_cached_prompt_stays_local() -> None:
    cfg = load_config(str(UPSTREAM / "deploy__config__pd-epp-config.yaml"))
    scheduler = build_scheduler(cfg)
    pool = [ep("p1", "prefill"), ep("p22", "prefill"), ep("d333", "decode"), ep("d4444", "both")]
    prompt = "a long shared document " * 40  # ~230 tokens, over nonCachedTokens 16
    first = req(prompt)
    result = scheduler.schedule(first, pool)
    scheduler.pre_request(first, result)
    assert "prefill" in result.profile_results
    assert first.state[FORWARD_HEADERS_KEY][PREFILLER_HEADER].endswith(":8000")
    again = req(prompt + "and a short question?")  # the decode endpoint holds the prefix now
    result2 = scheduler.schedule(again, pool)
    # Prefix affinity: an endpoint the first request's blocks were recorded on. That is its
    # decode endpoint, or its prefiller when the prefill profile picked d4444 ("both", so also
    # a decoder): the two then tie, and the picker breaks ties at random.
    prefill_ep = result.profile_results["prefill"].endpoints[0]  # type: ignore[union-attr]
    assert result2.primary in (result.primary, prefill_ep)
    assert "prefill" not in result2.profile_results  # uncached suffix under 16 tokens


def test_llmd_epd_example_encodes_only_multimodal_requests() -> None:
    cfg = load_config(str(UPSTREAM / "deploy__config__sim-e-p-d-epp-config.yaml"))
    scheduler = build_scheduler(cfg)
    pool = [ep("e1", "encode"), ep("p22", "prefill"), ep("d333", "decode")]
    image = {
        "messages": [
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "u"}}]}
        ]
    }
    r = req("hi", body=image)
    result = scheduler.schedule(r, pool)
    scheduler.pre_request(r, result)
    assert result.primary.name == "d333"
    assert r.state[FORWARD_HEADERS_KEY] == {"x-encoder-hosts-ports": "10.0.0.2:8000"}
    text = req("hi")
    result = scheduler.schedule(text, pool)
    assert set(result.profile_results) == {"decode"}
