"""Envoy 1.40 bootstraps for the EPP, safe by construction.

The properties that matter, each held by the structure of the config rather than by care:

* A client's ``x-gateway-destination-endpoint`` (and ``-served``) is removed by a
  header-mutation filter *before* ext_proc, so only the EPP's value can reach the load balancer.
* ext_proc may write dynamic metadata into ``envoy.lb`` only (``receiving_namespaces``).
* The failure mode is explicit. ``FailOpen`` needs ``mode="buffered"`` (Envoy cannot fail open
  once a body chunk was streamed to the EPP) and the pool's endpoints: the upstream cluster is
  then the pool itself with the ``override_host`` policy (host from ``envoy.lb`` metadata, which
  only ext_proc can write) and round robin over the pool when the EPP is away. It is never
  combined with ``ORIGINAL_DST``, which would connect wherever a request says.
* Without a pool list (``FailClose`` only), routing uses ``ORIGINAL_DST`` on the header the EPP
  sets, as upstream's test configuration does.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Literal

from endpoint_picker.errors import ConfigError
from endpoint_picker.pd_headers import SIDECAR_HEADERS
from endpoint_picker.requests.types import (
    DESTINATION_HEADER,
    DESTINATION_NAMESPACE,
    DESTINATION_SERVED_HEADER,
    HEADER_ALIASES,
    MODEL_REWRITE_HEADER,
)

Mode = Literal["duplex", "buffered"]
FailureMode = Literal["FailClose", "FailOpen"]

_T = "type.googleapis.com/envoy."
_BIG = {"max_connections": 100_000, "max_pending_requests": 100_000, "max_requests": 100_000}
ACCESS_LOG_FORMAT = (
    "[%START_TIME%] %REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS% "
    "upstream=%UPSTREAM_HOST% md=%DYNAMIC_METADATA(envoy.lb:x-gateway-destination-endpoint)% "
    "rid=%REQ(X-REQUEST-ID)% %DURATION%ms details=%RESPONSE_CODE_DETAILS%\n"
)


def split_hostport(value: str) -> tuple[str, int]:
    """``"ip:port"`` or ``"[v6]:port"`` -> (host, port); ConfigError when malformed."""
    host, sep, port = value.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"expected host:port, got {value!r}")
    return host, int(port)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _address(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def _endpoints(name: str, hostports: list[tuple[str, int]]) -> dict[str, Any]:
    return {
        "cluster_name": name,
        "endpoints": [
            {"lb_endpoints": [{"endpoint": {"address": _address(h, p)}} for h, p in hostports]}
        ],
    }


def http2_only() -> dict[str, Any]:
    """A cluster's protocol options for a gRPC upstream (HTTP/2, no negotiation)."""
    return {
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": _T + "extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}},
        }
    }


def _processing_mode(mode: Mode) -> dict[str, str]:
    if mode == "duplex":  # upstream's mode; trailers must be SEND with FULL_DUPLEX_STREAMED
        return {
            "request_header_mode": "SEND",
            "request_body_mode": "FULL_DUPLEX_STREAMED",
            "request_trailer_mode": "SEND",
            "response_header_mode": "SEND",
            "response_body_mode": "FULL_DUPLEX_STREAMED",
            "response_trailer_mode": "SEND",
        }
    # The request body in one message (fewer messages; capped by the 1 MiB buffer limit),
    # the response still streamed chunk by chunk so SSE is not held back.
    return {
        "request_header_mode": "SEND",
        "request_body_mode": "BUFFERED",
        "request_trailer_mode": "SKIP",
        "response_header_mode": "SEND",
        "response_body_mode": "FULL_DUPLEX_STREAMED",
        "response_trailer_mode": "SEND",
    }


def _epp_cluster(host: str, port: int, tls: bool) -> dict[str, Any]:
    cluster: dict[str, Any] = {
        "name": "epp",
        "type": "STATIC" if _is_ip(host) else "STRICT_DNS",
        "connect_timeout": "1s",
        "circuit_breakers": {"thresholds": [_BIG]},  # one ext_proc stream per HTTP request
        "typed_extension_protocol_options": http2_only(),
        "load_assignment": _endpoints("epp", [(host, port)]),
    }
    if tls:  # the EPP's certificate is self-signed by default: encrypted, not verified
        cluster["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": _T + "extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "common_tls_context": {"alpn_protocols": ["h2"]},
            },
        }
    return cluster


def _pool_cluster(endpoints: list[tuple[str, int]]) -> dict[str, Any]:
    lb = _T + "extensions.load_balancing_policies."
    return {
        "name": "pool",
        "type": "STATIC",
        "connect_timeout": "2s",
        "circuit_breakers": {"thresholds": [_BIG]},
        "load_assignment": _endpoints("pool", endpoints),
        "load_balancing_policy": {
            "policies": [
                {
                    "typed_extension_config": {
                        "name": "envoy.load_balancing_policies.override_host",
                        "typed_config": {
                            "@type": lb + "override_host.v3.OverrideHost",
                            # metadata only: a request header could be spoofed by clients
                            "override_host_sources": [
                                {
                                    "metadata": {
                                        "key": DESTINATION_NAMESPACE,
                                        "path": [{"key": DESTINATION_HEADER}],
                                    }
                                }
                            ],
                            "fallback_policy": {
                                "policies": [
                                    {
                                        "typed_extension_config": {
                                            "name": "envoy.load_balancing_policies.round_robin",
                                            "typed_config": {
                                                "@type": lb + "round_robin.v3.RoundRobin"
                                            },
                                        }
                                    }
                                ]
                            },
                        },
                    }
                }
            ]
        },
    }


def _original_dst_cluster() -> dict[str, Any]:
    return {
        "name": "original_destination_cluster",
        "type": "ORIGINAL_DST",
        "lb_policy": "CLUSTER_PROVIDED",
        "connect_timeout": "2s",
        "circuit_breakers": {"thresholds": [_BIG]},
        "original_dst_lb_config": {"use_http_header": True, "http_header_name": DESTINATION_HEADER},
    }


def strip_headers(names: tuple[str, ...]) -> dict[str, Any]:
    """A header-mutation filter removing ``names`` from every request (clients cannot set them)."""
    return {
        "name": "envoy.filters.http.header_mutation",
        "typed_config": {
            "@type": _T + "extensions.filters.http.header_mutation.v3.HeaderMutation",
            "mutations": {"request_mutations": [{"remove": h} for h in names]},
        },
    }


def checked_pool(
    failure_mode: str, pool_endpoints: list[str] | None
) -> list[tuple[str, int]] | None:
    """The pool's (IP, port) list, with the checks both fronts need; ConfigError otherwise."""
    if failure_mode not in ("FailClose", "FailOpen"):
        raise ConfigError(f"failure mode must be 'FailClose' or 'FailOpen', got {failure_mode!r}")
    pool = [split_hostport(e) for e in pool_endpoints] if pool_endpoints else None
    for host, _ in pool or []:
        if not _is_ip(host):
            raise ConfigError(f"pool endpoints must be IP addresses, got {host!r}")
    if failure_mode == "FailOpen" and not pool:
        raise ConfigError(
            "FailOpen needs the pool's endpoints (--pool-endpoint): without them the fallback "
            "would have to trust a destination the client can name"
        )
    return pool


def file_access_log(path: str, line_format: str) -> dict[str, Any]:
    """Envoy's file access logger writing ``line_format`` to ``path``."""
    return {
        "name": "envoy.access_loggers.file",
        "typed_config": {
            "@type": _T + "extensions.access_loggers.file.v3.FileAccessLog",
            "path": path,
            "log_format": {"text_format_source": {"inline_string": line_format}},
        },
    }


# Retried only where the request never reached a server: the connection failed, was refused
# (HTTP/2 REFUSED_STREAM), or was reset before the request was sent. Envoy's override_host takes
# the next endpoint of the EPP's list on a retry, then the pool's round robin; previous_hosts keeps
# a retry off an endpoint that already failed it.
RETRY_ON = "connect-failure,refused-stream,reset-before-request"
RETRIES = 2


def retry_policy() -> dict[str, Any]:
    """The route's retry policy: a failed connection is retried on another endpoint (issue 18,
    item 10). A request that reached its server is never sent twice."""
    return {
        "retry_on": RETRY_ON,
        "num_retries": RETRIES,
        "retry_host_predicate": [
            {
                "name": "envoy.retry_host_predicates.previous_hosts",
                "typed_config": {
                    "@type": _T + "extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"
                },
            }
        ],
        "host_selection_retry_max_attempts": 5,
    }


def gateway_bootstrap(
    *,
    listen_host: str,
    listen_port: int,
    admin_port: int | None,
    pool: list[tuple[str, int]] | None,
    route_timeout_s: float,
    http_filters: list[dict[str, Any]],
    access_log: list[dict[str, Any]],
    epp_clusters: list[dict[str, Any]],
    hcm_extra: dict[str, Any] | None = None,
    listener_extra: dict[str, Any] | None = None,
    pool_cluster: dict[str, Any] | None = None,
    report_served: bool = False,
    route_extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The bootstrap both fronts share: one listener, one catch-all route to the pool (with a
    pool list) or to ``ORIGINAL_DST`` on the EPP's header, ``http_filters`` then the router, the
    EPP's clusters and the upstream cluster (``pool_cluster`` in place of the default pool
    cluster, which routes on the ``envoy.lb`` metadata ext_proc writes). Ports 0 let the kernel
    choose (``ManagedEnvoy`` reads them back from the admin API). With a pool list, a failed
    connection is retried on another endpoint (``retry_policy``); ``report_served`` adds the
    endpoint that really served as the response header ``x-gateway-destination-endpoint-served``
    for the EPP (ext_proc sees the response before the client; the EPP removes it)."""
    router = {
        "name": "envoy.filters.http.router",
        "typed_config": {"@type": _T + "extensions.filters.http.router.v3.Router"},
    }
    route: dict[str, Any] = {
        "cluster": "pool" if pool else "original_destination_cluster",
        "timeout": f"{route_timeout_s:g}s",
    }
    if pool:  # ORIGINAL_DST has no other host to retry on
        route["retry_policy"] = retry_policy()
    served: dict[str, Any] = {}
    if report_served and pool:
        served["response_headers_to_add"] = [
            {
                "header": {"key": DESTINATION_SERVED_HEADER, "value": "%UPSTREAM_REMOTE_ADDRESS%"},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
            }
        ]
    hcm = {
        "@type": _T + "extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "ingress",
        "codec_type": "AUTO",
        "access_log": access_log,
        **(hcm_extra or {}),
        "route_config": {
            "name": "local",
            "virtual_hosts": [
                {
                    "name": "all",
                    "domains": ["*"],
                    "routes": [
                        {"match": {"prefix": "/"}, "route": route, **served, **(route_extra or {})}
                    ],
                }
            ],
        },
        "http_filters": [*http_filters, router],
    }
    hcm_filter = {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}
    upstream = (pool_cluster or _pool_cluster(pool)) if pool else _original_dst_cluster()
    return {
        "admin": {"address": _address("127.0.0.1", admin_port or 0)},
        "static_resources": {
            "listeners": [
                {
                    "name": "main",
                    "address": _address(listen_host, listen_port),
                    **(listener_extra or {}),
                    "filter_chains": [{"filters": [hcm_filter]}],
                }
            ],
            "clusters": [*epp_clusters, upstream],
        },
    }


# The catch-all route turns on the ext_proc filter, which is disabled by default (see bootstrap).
ROUTE_ENABLES_EXT_PROC: dict[str, Any] = {
    "typed_per_filter_config": {
        "envoy.filters.http.ext_proc": {
            "@type": _T + "config.route.v3.FilterConfig",
            "config": {
                "@type": _T + "extensions.filters.http.ext_proc.v3.ExtProcPerRoute",
                "overrides": {},  # the filter's own settings, unchanged
            },
        }
    }
}


def bootstrap(
    listen_port: int,
    epp_host: str,
    epp_port: int,
    *,
    mode: Mode = "duplex",
    failure_mode: FailureMode = "FailClose",
    pool_endpoints: list[str] | None = None,
    tls: bool = True,
    admin_port: int | None = None,
    access_log_path: str | None = None,
    listen_host: str = "127.0.0.1",
    route_timeout_s: float = 300.0,
    message_timeout_s: float = 1000.0,
) -> dict[str, Any]:
    """An Envoy bootstrap: listener -> (strip client routing headers) -> ext_proc -> router.

    Port 0 (listener or admin, ``admin_port=None``) lets the kernel choose; ``ManagedEnvoy``
    reads the chosen ports back from the admin API.
    """
    if mode not in ("duplex", "buffered"):
        raise ConfigError(f"mode must be 'duplex' or 'buffered', got {mode!r}")
    pool = checked_pool(failure_mode, pool_endpoints)
    if failure_mode == "FailOpen" and mode == "duplex":
        # Envoy (1.36+) fails open in FULL_DUPLEX_STREAMED mode only until the first body chunk
        # is on its way to the EPP; with the EPP down that chunk is already sent, so every
        # request with a body fails closed (measured: 500). BUFFERED keeps a copy and can.
        raise ConfigError(
            "FailOpen needs mode 'buffered': in FULL_DUPLEX_STREAMED mode Envoy cannot fail "
            "open once a request body has been streamed to the EPP"
        )
    ext_proc = {
        "name": "envoy.filters.http.ext_proc",
        # Off unless a route turns it on (ROUTE_ENABLES_EXT_PROC): Envoy's own codec-error replies
        # (431 headers too large, 400 bad framing) have no route, so they reach the client
        # instead of waiting on the EPP while Envoy closes the connection under them.
        "disabled": True,
        "typed_config": {
            "@type": _T + "extensions.filters.http.ext_proc.v3.ExternalProcessor",
            "grpc_service": {"envoy_grpc": {"cluster_name": "epp"}, "timeout": "10s"},
            "failure_mode_allow": failure_mode == "FailOpen",
            "message_timeout": f"{message_timeout_s:g}s",
            "processing_mode": _processing_mode(mode),
            "metadata_options": {"receiving_namespaces": {"untyped": [DESTINATION_NAMESPACE]}},
        },
    }
    return gateway_bootstrap(
        listen_host=listen_host,
        listen_port=listen_port,
        admin_port=admin_port,
        pool=pool,
        route_timeout_s=route_timeout_s,
        # The model rewrite header too: upstream honours it as a gateway's control header, and in
        # an Envoy we write no gateway sets it, so a client's would pick the served model.
        http_filters=[
            strip_headers(
                (
                    DESTINATION_HEADER,
                    DESTINATION_SERVED_HEADER,
                    *HEADER_ALIASES[MODEL_REWRITE_HEADER],
                    *SIDECAR_HEADERS,  # llm-d's P/D sidecar's: only the EPP may choose them
                )
            ),
            ext_proc,
        ],
        access_log=[file_access_log(access_log_path, ACCESS_LOG_FORMAT)] if access_log_path else [],
        epp_clusters=[_epp_cluster(epp_host, epp_port, tls)],
        report_served=True,
        route_extra=ROUTE_ENABLES_EXT_PROC,
    )
