"""Upstream's remaining EPP flags (GIE v1.5.0 and llm-d-router), so their lists parse unchanged.

The flags ``epp run`` already had (ports, intervals, ``--config-file``, the Kubernetes ones)
keep their place in ``runner/commands.py`` and ``sources/k8s_args.py``; this module adds the
rest, with upstream's names, types and defaults (``pkg/epp/server/options.go`` and the zap and
``-v`` options of ``pkg/common/observability/logging``). A flag whose default is ``None`` here
was not given: that is how the few "accepted, but means nothing here" flags log their one line
only when someone asked for them. docs/compatibility.md has the table, flag by flag.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field
from typing import Any

from endpoint_picker.errors import ConfigError
from endpoint_picker.units import parse_quantity

log = logging.getLogger("endpoint_picker")

# Legacy metric-name flags -> upstream's engineConfigs field of the same meaning.
LEGACY_METRIC_FLAGS = {
    "total_queued_requests_metric": "queuedRequestsSpec",
    "total_running_requests_metric": "runningRequestsSpec",
    "kv_cache_usage_percentage_metric": "kvUsageSpec",
    "lora_info_metric": "loraSpec",
    "cache_info_metric": "cacheInfoSpec",
}
# Accepted and logged once: nothing here for them to switch.
NO_MEANING = {
    "enable_pprof": "there is no pprof in a Python process",
    "allow_experimental_plugins": "every plugin here is always available",
    "tls_cipher_suites": "grpc-python does not take a cipher list per server",
    "tls_min_version": "grpc-python serves TLS 1.2 and 1.3 and takes no minimum per server",
}
TLS_VERSIONS = ("VersionTLS10", "VersionTLS11", "VersionTLS12", "VersionTLS13")
ZAP_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "error": logging.ERROR,
    "panic": logging.CRITICAL,
}


def _bool(p: argparse._ArgumentGroup, name: str, default: bool | None, text: str) -> None:
    p.add_argument(name, default=default, action=argparse.BooleanOptionalAction, help=text)


def add_arguments(parser: argparse.ArgumentParser, duration: Any) -> None:
    """Add upstream's flags that ``epp run`` did not have (``duration`` parses Go durations)."""
    up = parser.add_argument_group(
        "upstream", "Upstream's other EPP flags, accepted unchanged (docs/compatibility.md)."
    )
    up.add_argument(
        "-v", "--v", type=int, default=2, metavar="N", help="Log verbosity (2 info, 4 debug)."
    )
    up.add_argument("--zap-encoder", choices=("json", "console"), default=None, help="Log format.")
    up.add_argument("--zap-log-level", default=None, help="debug, info, error, panic or N > 0.")
    _bool(up, "--zap-devel", None, "Development logging (console encoder).")
    up.add_argument("--zap-stacktrace-level", default=None, help="Accepted (info|error|panic).")
    up.add_argument(
        "--zap-time-encoding",
        choices=("epoch", "millis", "nano", "iso8601", "rfc3339", "rfc3339nano"),
        default=None,
        help="Timestamp format of JSON logs (default iso8601).",
    )
    _bool(
        up,
        "--tracing",
        None,
        "OpenTelemetry spans per request, configured by OTEL_* (docs/observability.md); "
        "default: on in Kubernetes mode, as upstream, off otherwise.",
    )
    _bool(up, "--health-checking", None, "Accepted; the gRPC health port is always served.")
    auth = "TokenReview + SubjectAccessReview on /metrics (on in Kubernetes mode, as upstream)."
    _bool(up, "--metrics-endpoint-auth", None, auth)
    up.add_argument("--metrics-cert-dir", default=None, help="tls.crt/tls.key: TLS on /metrics.")
    up.add_argument(
        "--metrics-client-ca-file", default=None, help="PEM CA: /metrics requires client certs."
    )
    _bool(up, "--enable-cert-reload", False, "Reload --cert-path files when they change.")
    up.add_argument("--tls-min-version", default=None, choices=TLS_VERSIONS, help="Accepted.")
    up.add_argument("--tls-cipher-suites", default=None, help="Accepted (Go cipher names).")
    up.add_argument(
        "--drain-timeout",
        type=duration,
        default=30.0,
        help="After SIGTERM: not ready at once, keep serving this long, then stop (Kubernetes "
        "mode; e.g. 30s).",
    )
    up.add_argument("--grpc-max-recv-msg-size", default=None, help="e.g. 10MiB (default 64Mi).")
    up.add_argument("--grpc-max-send-msg-size", default=None, help="e.g. 10MiB (default 64Mi).")
    up.add_argument("--model-server-metrics-scheme", default=None, choices=("http", "https"))
    up.add_argument("--model-server-metrics-path", default=None, help="Scrape path (/metrics).")
    _bool(up, "--model-server-metrics-https-insecure-skip-verify", None, "Skip TLS verification.")
    for dest in LEGACY_METRIC_FLAGS:
        flag = "--" + dest.replace("_", "-")
        up.add_argument(flag, default=None, help="Legacy metric name; sets the default engine.")
    _bool(up, "--enable-pprof", None, "Accepted; " + NO_MEANING["enable_pprof"] + ".")
    _bool(
        up,
        "--enable-grpc-stream-metrics",
        False,
        "Export llm-d-router's ext_proc stream metrics (llm_d_epp_extproc_streams_*).",
    )
    _bool(
        up,
        "--emit-endpoint-scores",
        False,
        "Put every candidate's score in the routing answer's envoy.lb metadata, under "
        "x-gateway-destination-endpoint-scores (ext_proc front).",
    )
    _bool(up, "--allow-experimental-plugins", None, "Accepted; all plugins are available.")


@dataclass
class UpstreamSettings:
    """What upstream's flags mean here, checked: the runner applies these."""

    log_level: int = logging.INFO
    log_json: bool = False
    time_encoding: str = "iso8601"
    metrics_auth: bool = False
    metrics_cert_dir: str | None = None
    metrics_client_ca: str | None = None
    cert_reload: bool = False
    drain_timeout: float = 30.0
    grpc_max_recv: int | None = None
    grpc_max_send: int | None = None
    scrape_params: dict[str, Any] = field(default_factory=dict)  # metrics-data-source params
    legacy_metrics: dict[str, str] = field(default_factory=dict)  # engineConfigs field -> spec
    tracing: bool = False  # --tracing (endpoint_picker.tracing)
    emit_endpoint_scores: bool = False  # per-endpoint scores in envoy.lb (Director)
    grpc_stream_metrics: bool = False  # ext_proc stream series (extproc/stream_metrics.py)
    notes: list[str] = field(default_factory=list)  # one log line each


def verbosity_level(v: int) -> int:
    """Upstream ``--v N`` (2 default, 3 verbose, 4 debug, 5 trace) as a Python log level."""
    return max(1, logging.INFO - 5 * max(0, v - 2))


def _zap_level(text: str) -> int:
    if text.lower() in ZAP_LEVELS:
        return ZAP_LEVELS[text.lower()]
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n <= 0:
        raise ConfigError(
            f"expected debug, info, error, panic or an integer > 0, got {text!r}",
            path="--zap-log-level",
        )
    return verbosity_level(n)


def _size(flag: str, text: str | None) -> int | None:
    """A gRPC size limit: a Kubernetes quantity, with a trailing B allowed (``10MiB``)."""
    if text is None or not text.strip():
        return None
    s = text.strip()
    if len(s) > 1 and s[-1] in "Bb":
        s = s[:-1]
    try:
        value = parse_quantity(s)
    except ValueError as err:
        raise ConfigError(str(err), path=flag) from None
    if value < 0 or value != int(value):
        raise ConfigError(f"must be a whole, non-negative size, got {text!r}", path=flag)
    return int(value)


def unquote(text: str) -> str:
    """Upstream's chart writes ``--flag="value"`` in YAML, so the quotes reach the process."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text


def settings_from_args(args: argparse.Namespace, *, kubernetes: bool) -> UpstreamSettings:
    """Check upstream's flags and turn them into :class:`UpstreamSettings`. Raises ConfigError."""
    s = UpstreamSettings(drain_timeout=args.drain_timeout)
    s.log_level = verbosity_level(args.v)
    if args.zap_log_level is not None:
        s.log_level = _zap_level(args.zap_log_level)
    s.log_json = args.zap_encoder == "json"
    s.time_encoding = args.zap_time_encoding or "iso8601"
    auth = args.metrics_endpoint_auth
    s.metrics_auth = kubernetes if auth is None else auth
    if s.metrics_auth and not kubernetes:
        raise ConfigError(
            "needs Kubernetes mode (--pool-name or --endpoint-selector): the reviews go to "
            "the Kubernetes API",
            path="--metrics-endpoint-auth",
        )
    s.metrics_cert_dir = args.metrics_cert_dir or None
    s.metrics_client_ca = args.metrics_client_ca_file or None
    if s.metrics_client_ca and not s.metrics_cert_dir:
        raise ConfigError("needs --metrics-cert-dir", path="--metrics-client-ca-file")
    s.cert_reload = bool(args.enable_cert_reload)
    if s.cert_reload and not args.cert_path:
        raise ConfigError(
            "needs --cert-path (a self-signed cert never changes)", path="--enable-cert-reload"
        )
    s.grpc_max_recv = _size("--grpc-max-recv-msg-size", args.grpc_max_recv_msg_size)
    s.grpc_max_send = _size("--grpc-max-send-msg-size", args.grpc_max_send_msg_size)
    if args.model_server_metrics_scheme is not None:
        s.scrape_params["scheme"] = args.model_server_metrics_scheme
    if args.model_server_metrics_path is not None:
        s.scrape_params["path"] = unquote(args.model_server_metrics_path)
    if args.model_server_metrics_https_insecure_skip_verify is not None:
        s.scrape_params["insecureSkipVerify"] = args.model_server_metrics_https_insecure_skip_verify
    for dest, field_name in LEGACY_METRIC_FLAGS.items():
        value = getattr(args, dest)
        if value is not None:
            s.legacy_metrics[field_name] = unquote(value)
    s.tracing = bool(args.tracing) if args.tracing is not None else kubernetes
    s.emit_endpoint_scores = bool(args.emit_endpoint_scores)
    s.grpc_stream_metrics = bool(args.enable_grpc_stream_metrics)
    for dest, why in NO_MEANING.items():
        if getattr(args, dest) not in (None, False):
            s.notes.append(f"--{dest.replace('_', '-')} accepted: {why}")
    if args.zap_stacktrace_level is not None:
        s.notes.append("--zap-stacktrace-level accepted: tracebacks are logged at ERROR")
    return s
