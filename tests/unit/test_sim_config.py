"""Simulator configuration: profiles, overrides, validation, CLI flags, LoRA slots, tokenizer."""

from __future__ import annotations

import argparse

import pytest

from endpoint_picker.errors import ConfigError
from endpoint_picker.sim import PROFILES, SimConfig
from endpoint_picker.sim.commands import overrides_from, register
from endpoint_picker.sim.lora import LoraSlots
from endpoint_picker.sim.stats import Histogram, token_buckets
from endpoint_picker.sim.tokenizer import render_chat, tokenize


def test_profiles_apply_and_overrides_win() -> None:
    tiny = SimConfig.from_profile("tiny-test")
    assert tiny.max_num_seqs == PROFILES["tiny-test"]["max_num_seqs"]
    big = SimConfig.from_profile("8b-h100", max_num_seqs=32, lora=["a", "b"])
    assert big.max_num_seqs == 32 and big.lora == ("a", "b")
    assert big.num_gpu_blocks == PROFILES["8b-h100"]["num_gpu_blocks"]
    assert big.profile == "8b-h100"


@pytest.mark.parametrize(
    ("overrides", "where"),
    [
        ({"max_num_seqs": 0}, "max_num_seqs"),
        ({"jitter": 0.5}, "jitter"),
        ({"fail_rate": 1.5}, "fail_rate"),
        ({"time_factor_under_load": 0.5}, "time_factor_under_load"),
        ({"max_body_bytes": 1024}, "max_body_bytes"),
        ({"lora": ("sim-model",)}, "model"),
        ({"fail_statuses": (200,)}, "fail_statuses"),
    ],
)
def test_bad_knobs_fail_with_the_field(overrides: dict[str, object], where: str) -> None:
    with pytest.raises(ConfigError, match=where):
        SimConfig.from_profile("tiny-test", **overrides)


def test_unknown_profile_and_knob_are_clear_errors() -> None:
    with pytest.raises(ConfigError, match="tiny-test"):
        SimConfig.from_profile("nope")
    with pytest.raises(ConfigError, match=r"max_num_seq\b"):
        SimConfig.from_profile("tiny-test", max_num_seq=3)


def test_every_knob_is_a_flag_and_only_given_flags_override() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    register(sub)
    args = parser.parse_args(
        ["sim", "--count", "3", "--max-num-seqs", "7", "--lora", "a", "b", "--jitter", "0.1",
         "--no-enable-prefix-caching", "--fail-statuses", "429", "503"]
    )  # fmt: skip
    assert args.count == 3
    assert overrides_from(args) == {
        "max_num_seqs": 7,
        "lora": ("a", "b"),
        "jitter": 0.1,
        "enable_prefix_caching": False,
        "fail_statuses": (429, 503),
    }
    help_text = sub.choices["sim"].format_help()
    for name in SimConfig.__dataclass_fields__:
        if name != "profile":
            assert "--" + name.replace("_", "-") in help_text


def test_lora_slots_load_on_demand_and_evict_idle_lru() -> None:
    slots = LoraSlots(max_loras=2, load_time=0.5)
    assert slots.acquire("a", 10.0) == 10.5
    assert slots.acquire("a", 11.0) == 10.5  # already loading/loaded: same ready time
    assert slots.acquire("b", 11.0) == 11.5
    assert not slots.can_run("c")  # both slots busy
    slots.release("a")
    slots.release("a")
    assert slots.can_run("c") and slots.running == ["b"]
    assert slots.acquire("c", 12.0) == 12.5
    assert slots.loaded == ["b", "c"] and slots.loads == 3


def test_tokenizer_is_deterministic_and_prefix_preserving() -> None:
    assert tokenize("Hello, world!") == ["Hello", ",", "world", "!"]
    a = tokenize(render_chat([{"role": "system", "content": "be brief"}]))
    b = tokenize(
        render_chat([{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}])
    )
    assert b[: len(a) - 3] == a[: len(a) - 3]  # shared system prompt -> shared token prefix
    with pytest.raises(ValueError, match="messages\\[0\\]"):
        render_chat([{"content": "no role"}])


def test_histogram_counts_batches_and_renders_cumulative() -> None:
    h = Histogram((0.01, 0.1))
    h.observe(0.005, 3)
    h.observe(0.05)
    h.observe(5.0)
    assert h.cumulative() == [("0.01", 3.0), ("0.1", 4.0), ("+Inf", 5.0)]
    assert h.count == 5 and h.sum == pytest.approx(0.015 + 0.05 + 5.0)
    assert token_buckets(1024) == (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0)
