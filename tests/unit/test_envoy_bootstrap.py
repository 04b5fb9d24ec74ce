"""Generated Envoy bootstraps: safe by construction, and accepted by Envoy itself."""

from __future__ import annotations

import json
from typing import Any

import pytest

from endpoint_picker.envoy import bootstrap, split_hostport, validate
from endpoint_picker.errors import ConfigError

POOL = ["10.0.0.1:8000", "10.0.0.2:8000"]


def filters(config: dict[str, Any]) -> list[dict[str, Any]]:
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    return hcm["typed_config"]["http_filters"]  # type: ignore[no-any-return]


def ext_proc(config: dict[str, Any]) -> dict[str, Any]:
    (f,) = [f for f in filters(config) if f["name"] == "envoy.filters.http.ext_proc"]
    return f["typed_config"]  # type: ignore[no-any-return]


def clusters(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in config["static_resources"]["clusters"]}


VARIANTS = [
    {"mode": "duplex", "failure_mode": "FailClose"},
    {"mode": "duplex", "failure_mode": "FailClose", "pool_endpoints": POOL},
    {"mode": "buffered", "failure_mode": "FailClose", "tls": False},
    {"mode": "buffered", "failure_mode": "FailOpen", "pool_endpoints": POOL},
    {"mode": "buffered", "failure_mode": "FailOpen", "pool_endpoints": POOL, "tls": False},
]


@pytest.mark.parametrize("kwargs", VARIANTS, ids=lambda k: json.dumps(k, sort_keys=True))
def test_every_variant_passes_envoy_validate(kwargs: dict[str, Any]) -> None:
    validate(bootstrap(10000, "127.0.0.1", 9002, access_log_path="/dev/null", **kwargs))


def test_dns_name_for_the_epp_validates() -> None:
    config = bootstrap(10000, "epp.default.svc", 9002)
    assert clusters(config)["epp"]["type"] == "STRICT_DNS"
    validate(config)


@pytest.mark.parametrize("kwargs", VARIANTS, ids=lambda k: json.dumps(k, sort_keys=True))
def test_client_routing_headers_are_stripped_before_ext_proc(kwargs: dict[str, Any]) -> None:
    names = [f["name"] for f in filters(bootstrap(0, "127.0.0.1", 9002, **kwargs))]
    assert names == [
        "envoy.filters.http.header_mutation",
        "envoy.filters.http.ext_proc",
        "envoy.filters.http.router",
    ]
    mutation = filters(bootstrap(0, "127.0.0.1", 9002, **kwargs))[0]["typed_config"]
    removed = {m["remove"] for m in mutation["mutations"]["request_mutations"]}
    assert "x-gateway-destination-endpoint" in removed


@pytest.mark.parametrize("kwargs", VARIANTS, ids=lambda k: json.dumps(k, sort_keys=True))
def test_metadata_namespace_and_failure_mode_are_explicit(kwargs: dict[str, Any]) -> None:
    cfg = ext_proc(bootstrap(0, "127.0.0.1", 9002, **kwargs))
    assert cfg["metadata_options"]["receiving_namespaces"]["untyped"] == ["envoy.lb"]
    assert cfg["failure_mode_allow"] is (kwargs["failure_mode"] == "FailOpen")
    assert cfg["processing_mode"]["request_header_mode"] == "SEND"


def test_fail_open_routes_only_within_the_pool() -> None:
    config = bootstrap(
        0, "127.0.0.1", 9002, mode="buffered", failure_mode="FailOpen", pool_endpoints=POOL
    )
    text = json.dumps(config)
    assert "ORIGINAL_DST" not in text and "use_http_header" not in text
    pool = clusters(config)["pool"]
    policy = pool["load_balancing_policy"]["policies"][0]["typed_extension_config"]
    assert policy["name"] == "envoy.load_balancing_policies.override_host"
    sources = policy["typed_config"]["override_host_sources"]
    assert sources == [
        {"metadata": {"key": "envoy.lb", "path": [{"key": "x-gateway-destination-endpoint"}]}}
    ]
    hosts = [
        e["endpoint"]["address"]["socket_address"]
        for e in pool["load_assignment"]["endpoints"][0]["lb_endpoints"]
    ]
    assert [f"{h['address']}:{h['port_value']}" for h in hosts] == POOL


def test_fail_close_without_pool_uses_original_dst_on_the_epp_header() -> None:
    config = bootstrap(0, "127.0.0.1", 9002)
    odc = clusters(config)["original_destination_cluster"]
    assert odc["original_dst_lb_config"] == {
        "use_http_header": True,
        "http_header_name": "x-gateway-destination-endpoint",
    }
    assert ext_proc(config)["failure_mode_allow"] is False


def test_duplex_mode_is_upstreams_processing_mode() -> None:
    mode = ext_proc(bootstrap(0, "127.0.0.1", 9002, mode="duplex"))["processing_mode"]
    assert mode == {
        "request_header_mode": "SEND",
        "request_body_mode": "FULL_DUPLEX_STREAMED",
        "request_trailer_mode": "SEND",
        "response_header_mode": "SEND",
        "response_body_mode": "FULL_DUPLEX_STREAMED",
        "response_trailer_mode": "SEND",
    }


def test_tls_to_the_epp_is_on_by_default() -> None:
    assert "transport_socket" in clusters(bootstrap(0, "127.0.0.1", 9002))["epp"]
    assert "transport_socket" not in clusters(bootstrap(0, "127.0.0.1", 9002, tls=False))["epp"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"failure_mode": "FailOpen", "mode": "buffered"}, "pool"),
        ({"failure_mode": "FailOpen", "pool_endpoints": POOL}, "buffered"),
        ({"failure_mode": "Sometimes"}, "failure mode"),
        ({"mode": "fast"}, "mode"),
        ({"pool_endpoints": ["10.0.0.1"]}, "host:port"),
        ({"pool_endpoints": ["model-a:8000"]}, "IP"),
    ],
)
def test_unsafe_or_malformed_requests_are_refused(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        bootstrap(0, "127.0.0.1", 9002, **kwargs)


def test_split_hostport() -> None:
    assert split_hostport("10.0.0.1:80") == ("10.0.0.1", 80)
    assert split_hostport("[::1]:9002") == ("::1", 9002)
    for bad in ("", "host", ":80", "h:99999", "h:x"):
        with pytest.raises(ConfigError):
            split_hostport(bad)


def test_validate_reports_envoys_reason() -> None:
    config = bootstrap(0, "127.0.0.1", 9002)
    config["static_resources"]["clusters"][0]["type"] = "NOT_A_TYPE"
    with pytest.raises(ConfigError, match="NOT_A_TYPE"):
        validate(config)


def _route(config: dict[str, Any]) -> dict[str, Any]:
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    route: dict[str, Any] = hcm["typed_config"]["route_config"]["virtual_hosts"][0]["routes"][0]
    return route


def test_with_a_pool_a_failed_connection_is_retried_elsewhere() -> None:
    route = _route(bootstrap(8081, "127.0.0.1", 9002, pool_endpoints=["10.0.0.1:8000"]))
    policy = route["route"]["retry_policy"]
    # only failures where the request never reached a server: nothing is sent twice
    assert set(policy["retry_on"].split(",")) == {
        "connect-failure",
        "refused-stream",
        "reset-before-request",
    }
    assert policy["retry_host_predicate"][0]["name"].endswith("previous_hosts")
    served = route["response_headers_to_add"][0]["header"]
    assert served == {
        "key": "x-gateway-destination-endpoint-served",
        "value": "%UPSTREAM_REMOTE_ADDRESS%",
    }


def test_without_a_pool_there_is_no_other_host_to_retry() -> None:
    route = _route(bootstrap(8081, "127.0.0.1", 9002))
    assert "retry_policy" not in route["route"]
    assert "response_headers_to_add" not in route


@pytest.mark.parametrize("kwargs", VARIANTS, ids=lambda k: json.dumps(k, sort_keys=True))
def test_ext_proc_runs_only_on_routed_requests(kwargs: dict[str, Any]) -> None:
    """Envoy's codec-error replies have no route: with the filter off by default and on in the
    route, they skip ext_proc and reach the client (issue 18, item 14)."""
    config = bootstrap(10000, "127.0.0.1", 9002, **kwargs)
    (f,) = [f for f in filters(config) if f["name"] == "envoy.filters.http.ext_proc"]
    assert f["disabled"] is True
    per_route = _route(config)["typed_per_filter_config"]["envoy.filters.http.ext_proc"]
    assert per_route["config"]["overrides"] == {}
    assert not per_route.get("disabled", False)
