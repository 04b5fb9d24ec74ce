"""Upstream's own argument lists through ``epp``'s parser, and the settings they become.

The lists are copied from upstream's files with their template values filled in: GIE v1.5.0's
chart (``config/charts/epplib/templates/_deployment.yaml`` with ``inferencepool/values.yaml``,
per model-server type), llm-d-router's kustomize Deployments
(``deploy/components/inference-gateway/deployment.yaml``,
``deploy/environments/dev/kubernetes-kgateway/patch-deployments.yaml``) and its chart
(``config/charts/routerlib/templates/_deployment.yaml``, which writes ``--flag=value``).
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

import pytest

from endpoint_picker import cli
from endpoint_picker.datalayer.engines import VLLM, MetricSpec, with_legacy_specs
from endpoint_picker.errors import ConfigError
from endpoint_picker.runner.commands import options_from_args

POOL = ["--pool-name", "vllm-llama3-8b-instruct", "--pool-namespace", "default"]
GIE_CHART_VLLM = [
    *POOL,
    "--pool-group",
    "inference.networking.k8s.io",
    "--zap-encoder",
    "json",
    "--config-file",
    "/config/default-plugins.yaml",
    "--v",
    "1",
    "--tracing=false",
]
GIE_CHART_SGLANG = [
    *POOL,
    "--pool-group",
    "inference.networking.k8s.io",
    '--total-queued-requests-metric="sglang:num_queue_reqs"',
    '--total-running-requests-metric="sglang:num_running_reqs"',
    '--kv-cache-usage-percentage-metric="sglang:token_usage"',
    '--cache-info-metric="sglang:cache_config_info"',
    "--zap-encoder",
    "json",
    "--config-file",
    "/config/default-plugins.yaml",
    "--ha-enable-leader-election",
    "--v",
    "1",
    "--tracing=true",
    "--metrics-endpoint-auth=false",
]
GIE_CHART_TRITON = [
    *POOL,
    "--total-queued-requests-metric",
    "nv_trt_llm_request_metrics{request_type=waiting}",
    "--total-running-requests-metric",
    "nv_trt_llm_request_metrics{request_type=scheduled}",
    "--kv-cache-usage-percentage-metric",
    "nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type=fraction}",
    "--lora-info-metric",
    "",
    "--zap-encoder",
    "json",
]
GIE_CHART_TRTLLM_SERVE = [
    *POOL,
    '--total-queued-requests-metric="trtllm_num_requests_waiting"',
    '--model-server-metrics-path="/prometheus/metrics"',
    "--lora-info-metric",
    "",
]
LLMD_KUSTOMIZE = [
    *POOL,
    "--v",
    "4",
    "--zap-encoder",
    "json",
    "--grpc-port",
    "9002",
    "--grpc-health-port",
    "9003",
    "--config-file",
    "/etc/epp/epp-config.yaml",
    "--allow-experimental-plugins=true",
    "--metrics-endpoint-auth=false",
    "--ha-enable-leader-election=true",
]
LLMD_KGATEWAY = [
    *POOL,
    "--pool-group",
    "inference.networking.x-k8s.io",
    "--v",
    "4",
    "--zap-encoder",
    "json",
    "--config-file",
    "/etc/epp/epp-config.yaml",
]
LLMD_CHART_STANDALONE = [
    "--endpoint-selector",
    "app=vllm,tier=gpu",
    "--endpoint-target-ports",
    "8000,8001",
    "--zap-encoder",
    "json",
    "--config-file",
    "/config/default-plugins.yaml",
    "--grpc-health-port",
    "9003",
    "--drain-timeout=45s",
    "--emit-endpoint-scores=true",
    "--grpc-max-recv-msg-size=10MiB",
    "--grpc-max-send-msg-size=25MB",
    "--tls-min-version=VersionTLS13",
    "--tls-cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "--enable-pprof=false",
    "--tracing=false",
]


def parse(argv: list[str]) -> argparse.Namespace:
    """``epp <argv>`` exactly as ``cli.main`` parses it, without running anything."""
    parser = cli.build_parser()
    args, upstream = cli.prepare_argv(parser, argv)
    ns = parser.parse_args(args)
    ns.upstream_mode = upstream or ns.upstream_mode
    return ns


def options(argv: list[str]) -> Any:
    return options_from_args(parse(argv))


def test_gie_chart_vllm_is_kubernetes_mode_with_upstreams_defaults() -> None:
    o = options(GIE_CHART_VLLM)
    e, up = o.epp, o.epp.upstream
    k = e.kubernetes_args
    assert (k.pool_name, k.pool_namespace, k.pool_group) == (
        "vllm-llama3-8b-instruct",
        "default",
        "inference.networking.k8s.io",
    )
    assert e.config_file == "/config/default-plugins.yaml"
    assert e.host == "0.0.0.0"  # all interfaces, as upstream's ":9002"
    assert (e.grpc_port, e.grpc_health_port, e.metrics_port) == (9002, 9003, 9090)
    assert e.secure_serving is True and o.front == "extproc" and o.envoy is False
    assert up.log_json and up.log_level == logging.INFO
    assert up.metrics_auth is True  # upstream's default
    assert up.notes == [] and up.tracing is False  # --tracing=false


def test_gie_chart_sglang_legacy_metric_flags_keep_their_literal_quotes_out() -> None:
    o = options(GIE_CHART_SGLANG)
    up = o.epp.upstream
    assert up.legacy_metrics == {
        "queuedRequestsSpec": "sglang:num_queue_reqs",
        "runningRequestsSpec": "sglang:num_running_reqs",
        "kvUsageSpec": "sglang:token_usage",
        "cacheInfoSpec": "sglang:cache_config_info",
    }
    engine = with_legacy_specs(VLLM, up.legacy_metrics)
    assert engine.queued == MetricSpec("sglang:num_queue_reqs")
    assert engine.lora == VLLM.lora  # not given: the default engine's own
    assert o.epp.kubernetes_args.ha_enable_leader_election is True
    assert up.metrics_auth is False
    assert up.tracing is True  # --tracing=true: spans from the OTEL_* environment


def test_gie_chart_triton_empty_lora_metric_turns_lora_off() -> None:
    up = options(GIE_CHART_TRITON).epp.upstream
    engine = with_legacy_specs(VLLM, up.legacy_metrics)
    assert engine.lora is None
    assert engine.queued == MetricSpec("nv_trt_llm_request_metrics", (("request_type", "waiting"),))


def test_gie_chart_trtllm_serve_scrape_path() -> None:
    up = options(GIE_CHART_TRTLLM_SERVE).epp.upstream
    assert up.scrape_params == {"path": "/prometheus/metrics"}
    assert up.legacy_metrics["queuedRequestsSpec"] == "trtllm_num_requests_waiting"


def test_llmd_kustomize_deployment() -> None:
    o = options(LLMD_KUSTOMIZE)
    up = o.epp.upstream
    assert up.log_level == logging.DEBUG  # --v 4 is upstream's DEBUG
    assert up.metrics_auth is False
    assert o.epp.kubernetes_args.ha_enable_leader_election is True
    assert o.epp.config_file == "/etc/epp/epp-config.yaml"
    assert any("allow-experimental-plugins" in note for note in up.notes)


def test_llmd_kgateway_patch_uses_the_alpha_pool_group() -> None:
    assert options(LLMD_KGATEWAY).epp.kubernetes_args.pool_group == "inference.networking.x-k8s.io"


def test_llmd_chart_standalone_with_llmd_additions() -> None:
    o = options(LLMD_CHART_STANDALONE)
    up = o.epp.upstream
    k = o.epp.kubernetes_args
    assert k.endpoint_selector == "app=vllm,tier=gpu" and k.endpoint_target_ports == ["8000,8001"]
    assert up.drain_timeout == 45.0
    assert (up.grpc_max_recv, up.grpc_max_send) == (10 * 2**20, 25 * 10**6)
    assert up.emit_endpoint_scores  # implemented: no "accepted" note
    said = " ".join(up.notes)
    assert "emit-endpoint-scores" not in said and "tls-min-version" in said
    assert "enable-pprof" not in said  # given as false: nothing asked for


@pytest.mark.parametrize(
    ("argv", "attr", "want"),
    [
        (["--secure-serving=false"], "secure_serving", False),
        (["--secure-serving", "--secure-serving=0"], "secure_serving", False),
        (["-v", "5"], "v", 5),
        (["-v=3"], "v", 3),
        (["--v=3"], "v", 3),
        (["-grpc-port", "9102"], "grpc_port", 9102),
        (["--grpc-port=9102"], "grpc_port", 9102),
        (["--ha-enable-leader-election=T"], "ha_enable_leader_election", True),
        (["--ha-enable-leader-election=FALSE"], "ha_enable_leader_election", False),
        (["--refresh-metrics-interval=100ms"], "refresh_metrics_interval", 0.1),
    ],
)
def test_go_flag_syntax(argv: list[str], attr: str, want: object) -> None:
    assert getattr(parse([*POOL, *argv]), attr) == want


def test_epp_run_takes_the_same_syntax_and_stays_standalone() -> None:
    o = options_from_args(parse(["run", "--secure-serving=false", "--v=4", "--no-envoy"]))
    assert o.epp.secure_serving is False and o.epp.kubernetes_args is None
    assert o.epp.host == "127.0.0.1" and o.epp.upstream.metrics_auth is False


def test_bad_boolean_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([*POOL, "--tracing=maybe"]) == 2
    assert "invalid boolean value 'maybe' for --tracing" in capsys.readouterr().err


def test_upstream_mode_without_a_pool_is_upstreams_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["--zap-encoder", "json"]) == 1
    assert "either pool-name or endpoint-selector must be set" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "path"),
    [
        (["--zap-log-level", "loud"], "--zap-log-level"),
        (["--grpc-max-recv-msg-size", "lots"], "--grpc-max-recv-msg-size"),
        (["--metrics-client-ca-file", "/ca.pem"], "--metrics-client-ca-file"),
        (["--enable-cert-reload"], "--enable-cert-reload"),
    ],
)
def test_bad_values_name_the_flag(argv: list[str], path: str) -> None:
    with pytest.raises(ConfigError) as err:
        options([*POOL, *argv])
    assert path in str(err.value)


def test_zap_log_level_wins_over_v() -> None:
    assert options([*POOL, "--v", "1", "--zap-log-level", "debug"]).epp.upstream.log_level == (
        logging.DEBUG
    )
    assert options([*POOL, "--zap-log-level=error"]).epp.upstream.log_level == logging.ERROR


def test_metrics_auth_outside_kubernetes_is_refused() -> None:
    with pytest.raises(ConfigError, match="needs Kubernetes mode"):
        options_from_args(parse(["run", "--metrics-endpoint-auth"]))


def test_unusable_kubeconfig_is_a_start_up_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    missing = str(tmp_path / "no-kubeconfig")
    argv = [*POOL, "--kubeconfig", missing, "--metrics-endpoint-auth=false", "--host=127.0.0.1"]
    assert cli.main([*argv, "--grpc-port=0", "--grpc-health-port=0", "--metrics-port=0"]) == 1
    err = capsys.readouterr().err
    assert "--kubeconfig: no usable Kubernetes configuration" in err and "Traceback" not in err


@pytest.mark.parametrize(("flag", "want"), [([], False), (["--enable-grpc-stream-metrics"], True)])
def test_grpc_stream_metrics_flag_is_implemented(flag: list[str], want: bool) -> None:
    up = options(["--pool-name", "p", *flag]).epp.upstream
    assert up.grpc_stream_metrics is want
    assert not any("grpc-stream-metrics" in note for note in up.notes)  # no "accepted" line
