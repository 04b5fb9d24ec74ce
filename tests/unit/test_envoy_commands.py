"""``epp envoy-config`` through the real CLI entry point."""

from __future__ import annotations

import json

import pytest
import yaml

from endpoint_picker.cli import main


def test_prints_a_valid_yaml_bootstrap(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(
        [
            "envoy-config",
            "--listen-port", "8081",
            "--epp-address", "10.1.2.3:9002",
            "--mode", "buffered",
            "--failure-mode", "FailOpen",
            "--pool-endpoint", "10.0.0.1:8000,10.0.0.2:8000",
            "--pool-endpoint", "10.0.0.3:8000",
            "--validate",
        ]
    )  # fmt: skip
    assert rc == 0
    config = yaml.safe_load(capsys.readouterr().out)
    listener = config["static_resources"]["listeners"][0]
    assert listener["address"]["socket_address"]["port_value"] == 8081
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    epp = clusters["epp"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    assert epp["endpoint"]["address"]["socket_address"] == {
        "address": "10.1.2.3",
        "port_value": 9002,
    }
    assert len(clusters["pool"]["load_assignment"]["endpoints"][0]["lb_endpoints"]) == 3


def test_json_output_and_no_tls(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["envoy-config", "--format", "json", "--no-tls"]) == 0
    config = json.loads(capsys.readouterr().out)
    assert all("transport_socket" not in c for c in config["static_resources"]["clusters"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--failure-mode", "FailOpen"], "pool"),
        (["--epp-address", "nowhere"], "host:port"),
        (["--mode", "buffered", "--failure-mode", "FailOpen", "--pool-endpoint", "x:1"], "IP"),
    ],
)
def test_bad_input_is_a_clear_error(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["envoy-config", *argv]) == 1
    captured = capsys.readouterr()
    assert message in captured.err and "Traceback" not in captured.err
    assert captured.out == ""
