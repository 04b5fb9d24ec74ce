"""P/D pieces without servers: the sidecar's prefill request, role knobs, labelled static
endpoints and ``epp run --simulate-pd`` parsing."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from endpoint_picker.datastore import Datastore
from endpoint_picker.errors import ConfigError
from endpoint_picker.runner.commands import _pd_split
from endpoint_picker.sim.config import SimConfig
from endpoint_picker.sim.pd import kv_transfer_mode, prefill_body
from endpoint_picker.sources.files import parse_endpoint_labels, parse_endpoints


def test_prefill_request_follows_the_nixl_convention() -> None:
    body = {"model": "m", "prompt": "x", "max_tokens": 50, "max_completion_tokens": 50}
    body |= {"stream": True, "stream_options": {"include_usage": True}}
    out = prefill_body(body)
    assert out["kv_transfer_params"] == {
        "do_remote_decode": True,
        "do_remote_prefill": False,
        "remote_engine_id": None,
        "remote_block_ids": None,
        "remote_host": None,
        "remote_port": None,
    }
    assert out["max_tokens"] == 1 and out["max_completion_tokens"] == 1
    assert out["stream"] is False and "stream_options" not in out
    assert body["max_tokens"] == 50 and body["stream"] is True  # the client's is untouched


@pytest.mark.parametrize(
    ("params", "mode"),
    [
        ({"do_remote_decode": True, "do_remote_prefill": False}, "remote_decode"),
        ({"do_remote_prefill": True, "remote_block_ids": [1]}, "remote_prefill"),
        ({"do_remote_prefill": False}, ""),
        (None, ""),
        ("yes", ""),
    ],
)
def test_kv_transfer_mode(params: object, mode: str) -> None:
    assert kv_transfer_mode({"kv_transfer_params": params}) == mode


def test_role_knob() -> None:
    assert SimConfig.from_profile("tiny-test", role="decode").sidecar
    assert SimConfig.from_profile("tiny-test", role="both").sidecar
    assert not SimConfig.from_profile("tiny-test", role="prefill").sidecar
    assert not SimConfig.from_profile("tiny-test").sidecar
    with pytest.raises(ConfigError, match="role"):
        SimConfig.from_profile("tiny-test", role="prefiller")
    with pytest.raises(ConfigError, match="kv_transfer_bandwidth"):
        SimConfig.from_profile("tiny-test", kv_transfer_bandwidth=0)


def test_endpoint_labels_parse() -> None:
    texts = ["p0=10.0.0.1:8000;llm-d.ai/role=prefill", "d0=10.0.0.2:8000;llm-d.ai/role=decode;x=y"]
    assert parse_endpoints(texts) == {"p0": ("10.0.0.1", 8000), "d0": ("10.0.0.2", 8000)}
    assert parse_endpoint_labels([*texts, "plain=10.0.0.3:8000"]) == {
        "p0": {"llm-d.ai/role": "prefill"},
        "d0": {"llm-d.ai/role": "decode", "x": "y"},
    }
    assert parse_endpoint_labels(["10.0.0.4:8000;a=b"]) == {"10.0.0.4:8000": {"a": "b"}}
    with pytest.raises(ConfigError, match="key=value"):
        parse_endpoint_labels(["p0=10.0.0.1:8000;llm-d.ai/role"])


def test_static_endpoints_carry_labels_and_follow_changes() -> None:
    ds = Datastore()
    ds.set_static_endpoints({"p0": ("10.0.0.1", 8000)}, {"p0": {"llm-d.ai/role": "prefill"}})
    (ep,) = ds.endpoints()
    assert ep.labels == {"llm-d.ai/role": "prefill"}
    ds.set_static_endpoints({"p0": ("10.0.0.1", 8000)}, {"p0": {"llm-d.ai/role": "decode"}})
    assert ds.endpoints() == (ep,) and ep.labels == {"llm-d.ai/role": "decode"}
    ds.set_static_endpoints({"p0": ("10.0.0.1", 8000)})
    assert ep.labels == {}


def test_simulate_pd_flag() -> None:
    assert _pd_split("2:3") == (2, 3)
    for bad in ("2", "0:1", "1:0", "a:b", "2:2:2"):
        with pytest.raises(argparse.ArgumentTypeError, match="P:D"):
            _pd_split(bad)


def test_run_flags_become_stack_options() -> None:
    from endpoint_picker.cli import build_parser
    from endpoint_picker.runner.commands import options_from_args

    args = build_parser().parse_args(["run", "--simulate-pd", "2:1", "--sim-profile", "tiny-test"])
    options = options_from_args(args)
    assert options.simulate_pd == (2, 1) and options.simulate == 0
    both = build_parser().parse_args(["run", "--simulate-pd", "1:1", "--simulate", "2"])
    with pytest.raises(ConfigError, match="mutually exclusive"):
        options_from_args(both)


def test_labelled_endpoints_with_a_manifest_reach_the_role_filters(tmp_path: Path) -> None:
    """``epp run -f pool.yaml --endpoint 'name=ip:port;llm-d.ai/role=...'``: the roles arrive
    where llm-d's filters read them."""
    from endpoint_picker.requests.types import InferenceRequest
    from endpoint_picker.scheduling.plugins.roles import DecodeFilter, PrefillFilter
    from endpoint_picker.sources.files import FileSource

    manifest = tmp_path / "pool.yaml"
    manifest.write_text(
        "apiVersion: inference.networking.k8s.io/v1\nkind: InferencePool\n"
        "metadata: {name: pd}\n"
        "spec:\n  selector: {matchLabels: {app: vllm}}\n  targetPorts: [{number: 8000}]\n"
    )
    ds = Datastore()
    endpoints = [
        "p0=10.0.0.1:8000;llm-d.ai/role=prefill",
        "d0=10.0.0.2:8000;llm-d.ai/role=decode",
        "u0=10.0.0.3:8000",
    ]
    FileSource(ds, [manifest], endpoints).load_or_raise()
    request = InferenceRequest("r", {}, body={"prompt": "x"}, api="completions", target_model="m")
    eps = list(ds.endpoints())
    prefill = PrefillFilter.from_params("p")
    decode = DecodeFilter.from_params("d")
    assert [e.name for e in prefill.filter(request, eps)] == ["p0"]
    assert [e.name for e in decode.filter(request, eps)] == ["d0", "u0"]  # unlabelled: decode


POD_MANIFEST = """
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: pd}
spec:
  selector: {matchLabels: {app: vllm}}
  targetPorts: [{number: 8000}, {number: 8001}]
---
apiVersion: v1
kind: Pod
metadata: {name: p0, labels: {app: vllm, llm-d.ai/role: prefill}}
spec: {containers: [{name: vllm}]}
status: {podIP: 10.0.0.1, hostIP: 10.1.0.1, phase: Running}
---
apiVersion: v1
kind: Pod
metadata: {name: d0, labels: {app: vllm, llm-d.ai/role: decode}}
status: {podIP: 10.0.0.2, conditions: [{type: Ready, status: "False"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: elsewhere, labels: {app: other}}
status: {podIP: 10.0.0.3}
"""


def test_pods_in_a_manifest_become_labelled_endpoints(tmp_path: Path) -> None:
    from endpoint_picker.sources.files import FileSource

    path = tmp_path / "pd.yaml"
    path.write_text(POD_MANIFEST)
    ds = Datastore()
    FileSource(ds, [path]).load_or_raise()
    got = {(e.name, e.hostport): e.labels.get("llm-d.ai/role") for e in ds.endpoints()}
    # Selected by the pool's selector, one endpoint per target port; a pod not Ready is out.
    assert got == {
        ("p0-rank-0", "10.0.0.1:8000"): "prefill",
        ("p0-rank-1", "10.0.0.1:8001"): "prefill",
    }


def test_a_manifest_pod_needs_its_ip(tmp_path: Path) -> None:
    from endpoint_picker.api.manifests import load_manifests

    path = tmp_path / "bad.yaml"
    path.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: p0}\nstatus: {phase: Running}\n")
    errors = load_manifests([path]).errors
    assert errors and "status.podIP" in str(errors[0])
