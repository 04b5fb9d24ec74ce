"""Envoy bootstrap for the fast front: pick over ext_authz (HTTP/1.1), complete over gRPC ALS.

The request path: a header-mutation filter removes every header a client could use to steer
routing or to finish someone else's request (the destination, the served endpoint, the fast
front's ticket), then ``ext_authz`` sends the headers and the whole body (``with_request_body``,
``allow_partial_message: false``) to the EPP's pick endpoint over plain HTTP/1.1. A 200 answer
copies the destination and ticket headers onto the request; any other status goes to the client
as it is (400/429/503 with the director's body). With the EPP unreachable Envoy answers 500
(``FailClose``) or lets the request through *without* a destination (``FailOpen``).

The response path needs no per-request stream: every request that carries a ticket is logged to
the EPP's gRPC access-log service (one long-lived stream per Envoy worker, entries batched and
flushed every ``als_flush_interval_s``), and the EPP finishes the matching request from it.

Routing, safe by construction as in ``bootstrap``: without a pool list (``FailClose``) an
``ORIGINAL_DST`` cluster connects to the header the EPP set (clients cannot set it: stripped).
With a pool, the upstream cluster is the pool with ``override_host`` reading that header and
round robin *within the pool* as fallback, so ``FailOpen`` never leaves the pool.
"""

from __future__ import annotations

import copy
from typing import Any

from endpoint_picker.envoy.bootstrap import (
    _BIG,
    ACCESS_LOG_FORMAT,
    FailureMode,
    _endpoints,
    _is_ip,
    _pool_cluster,
    checked_pool,
    file_access_log,
    gateway_bootstrap,
    http2_only,
    strip_headers,
)
from endpoint_picker.errors import ConfigError
from endpoint_picker.pd_headers import SIDECAR_HEADERS
from endpoint_picker.requests.types import (
    DESTINATION_HEADER,
    DESTINATION_SERVED_HEADER,
    HEADER_ALIASES,
    MODEL_REWRITE_HEADER,
    REQUEST_ID_HEADER,
)

_T = "type.googleapis.com/envoy."

# The fast front's own headers: the ticket ties an access-log entry to the request it finishes.
TICKET_HEADER = "x-epp-ticket"
# ext_authz requests arrive at the EPP under this prefix (the client's path follows it), so the
# pick endpoint's own paths (health) can never be reached by a client's request path.
PICK_PATH_PREFIX = "/pick"
ALS_LOG_NAME = "epp-fast-front"
# Big enough for long prompts; bodies over it get 413 from Envoy (nothing partial reaches the EPP).
DEFAULT_MAX_REQUEST_BYTES = 16 * 1024 * 1024

# The same line as the ext_proc bootstrap's, with the EPP's header where ext_proc's metadata is.
FAST_ACCESS_LOG_FORMAT = ACCESS_LOG_FORMAT.replace(
    "%DYNAMIC_METADATA(envoy.lb:x-gateway-destination-endpoint)%",
    "%REQ(X-GATEWAY-DESTINATION-ENDPOINT)%",
)

# ext_authz treats a 5xx answer from the pick endpoint as the side-call *failing* (then
# ``status_on_error`` or fail-open applies), so the pick sends the director's 5xx answers under
# these 4xx stand-ins and Envoy's local-reply mapper restores the real status for the client.
STATUS_STANDINS = {500: 450, 503: 453}

# Headers the pick answer may put on the upstream request (everything else in it is ignored).
# llm-d's P/D sidecar headers: the EPP's choice (disagg/data-parallel handlers) is forwarded.
UPSTREAM_HEADERS = (DESTINATION_HEADER, TICKET_HEADER, REQUEST_ID_HEADER, *SIDECAR_HEADERS)
# Headers a client may never send: removed before the side-call, so they cannot steer routing.
STRIPPED_HEADERS = (
    DESTINATION_HEADER,
    DESTINATION_SERVED_HEADER,
    TICKET_HEADER,
    # No gateway sets it in an Envoy we write: a client's must not apply (both names).
    *HEADER_ALIASES[MODEL_REWRITE_HEADER],
    # llm-d's P/D sidecar acts on them (it would call the host a client named).
    *SIDECAR_HEADERS,
)


def _exact(names: tuple[str, ...]) -> dict[str, Any]:
    return {"patterns": [{"exact": n, "ignore_case": True} for n in names]}


def _ext_authz_filter(
    failure_mode: FailureMode, max_request_bytes: int, timeout_s: float
) -> dict[str, Any]:
    return {
        "name": "envoy.filters.http.ext_authz",
        "typed_config": {
            "@type": _T + "extensions.filters.http.ext_authz.v3.ExtAuthz",
            "http_service": {
                "server_uri": {
                    "uri": "http://epp-pick",
                    "cluster": "epp_pick",
                    # Flow control may queue a request: the side-call lasts as long as it waits.
                    "timeout": f"{timeout_s:g}s",
                },
                "path_prefix": PICK_PATH_PREFIX,
                "authorization_response": {"allowed_upstream_headers": _exact(UPSTREAM_HEADERS)},
            },
            "with_request_body": {
                "max_request_bytes": max_request_bytes,
                "allow_partial_message": False,
                "pack_as_bytes": True,
            },
            # Every client header, as ext_proc sends them (objective, fairness id, request id,
            # plugins' own); without this Envoy sends only host, method, path and length.
            "allowed_headers": {"patterns": [{"safe_regex": {"regex": ".*"}}]},
            "failure_mode_allow": failure_mode == "FailOpen",
            # The ext_proc front's fail-closed answer is 500: keep the two fronts alike.
            "status_on_error": {"code": "InternalServerError"},
            "transport_api_version": "V3",
        },
    }


def _als(flush_interval_s: float, buffer_bytes: int) -> dict[str, Any]:
    return {
        "name": "envoy.access_loggers.http_grpc",
        # Requests the EPP picked carry a ticket. One whose client left while the pick's answer
        # was on its way has none (Envoy dropped the answer) and is logged with the downstream
        # termination flag; the EPP matches it by x-request-id, so its load is released.
        "filter": {
            "or_filter": {
                "filters": [
                    {"header_filter": {"header": {"name": TICKET_HEADER, "present_match": True}}},
                    {"response_flag_filter": {"flags": ["DC"]}},
                ]
            }
        },
        "typed_config": {
            "@type": _T + "extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig",
            "common_config": {
                "log_name": ALS_LOG_NAME,
                "transport_api_version": "V3",
                "grpc_service": {"envoy_grpc": {"cluster_name": "epp_als"}},
                "buffer_flush_interval": f"{flush_interval_s:g}s",
                "buffer_size_bytes": buffer_bytes,
            },
            "additional_request_headers_to_log": [TICKET_HEADER],
        },
    }


def _status_mappers() -> list[dict[str, Any]]:
    return [
        {
            "filter": {
                "status_code_filter": {
                    "comparison": {
                        "op": "EQ",
                        "value": {"default_value": standin, "runtime_key": f"epp.standin_{real}"},
                    }
                }
            },
            "status_code": real,
        }
        for real, standin in STATUS_STANDINS.items()
    ]


def _pick_cluster(host: str, port: int) -> dict[str, Any]:
    return {
        "name": "epp_pick",
        "type": "STATIC" if _is_ip(host) else "STRICT_DNS",
        "connect_timeout": "1s",
        # HTTP/1.1 keep-alive: one connection per concurrent side-call (a queued request holds
        # its connection while it waits), so the limits must cover the whole queue.
        "circuit_breakers": {"thresholds": [_BIG]},
        "load_assignment": _endpoints("epp_pick", [(host, port)]),
    }


def _als_cluster(host: str, port: int) -> dict[str, Any]:
    return {
        "name": "epp_als",
        "type": "STATIC" if _is_ip(host) else "STRICT_DNS",
        "connect_timeout": "1s",
        "typed_extension_protocol_options": http2_only(),
        "load_assignment": _endpoints("epp_als", [(host, port)]),
    }


def _header_pool_cluster(endpoints: list[tuple[str, int]]) -> dict[str, Any]:
    """The pool with ``override_host`` reading the EPP's header (stripped from clients)."""
    cluster = copy.deepcopy(_pool_cluster(endpoints))
    policy = cluster["load_balancing_policy"]["policies"][0]["typed_extension_config"]
    policy["typed_config"]["override_host_sources"] = [{"header": DESTINATION_HEADER}]
    return cluster


def fast_bootstrap(
    listen_port: int,
    pick_host: str,
    pick_port: int,
    als_port: int,
    *,
    failure_mode: FailureMode = "FailClose",
    pool_endpoints: list[str] | None = None,
    als_host: str | None = None,
    als_flush_interval_s: float = 0.05,
    als_buffer_bytes: int = 16384,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    admin_port: int | None = None,
    access_log_path: str | None = None,
    listen_host: str = "127.0.0.1",
    route_timeout_s: float = 300.0,
    pick_timeout_s: float = 300.0,
) -> dict[str, Any]:
    """An Envoy bootstrap: listener -> strip -> ext_authz (pick) -> router, ALS (complete)."""
    pool = checked_pool(failure_mode, pool_endpoints)
    if als_flush_interval_s <= 0:
        raise ConfigError(f"access-log flush interval must be > 0, got {als_flush_interval_s}")
    if max_request_bytes <= 0:
        raise ConfigError(f"max request bytes must be > 0, got {max_request_bytes}")
    access_log = [_als(als_flush_interval_s, als_buffer_bytes)]
    if access_log_path:
        access_log.append(file_access_log(access_log_path, FAST_ACCESS_LOG_FORMAT))
    return gateway_bootstrap(
        listen_host=listen_host,
        listen_port=listen_port,
        admin_port=admin_port,
        pool=pool,
        route_timeout_s=route_timeout_s,
        http_filters=[
            strip_headers(STRIPPED_HEADERS),
            _ext_authz_filter(failure_mode, max_request_bytes, pick_timeout_s),
        ],
        access_log=access_log,
        epp_clusters=[
            _pick_cluster(pick_host, pick_port),
            _als_cluster(als_host or pick_host, als_port),
        ],
        hcm_extra={"local_reply_config": {"mappers": _status_mappers()}},
        # ext_authz buffers the whole body: the buffer limit must hold it.
        listener_extra={"per_connection_buffer_limit_bytes": max_request_bytes},
        pool_cluster=_header_pool_cluster(pool) if pool else None,
    )
