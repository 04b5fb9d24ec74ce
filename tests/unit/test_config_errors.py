"""Bad EndpointPickerConfigs: every error names the file, the field path and the fix, and
``epp config`` and ``epp run`` refuse the same file with the same text."""

from __future__ import annotations

from pathlib import Path

import pytest

from endpoint_picker.cli import main
from endpoint_picker.config import ConfigErrors, load_config, load_config_text
from endpoint_picker.errors import ConfigError

HEAD = "apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\n"


def error_of(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        load_config_text(text, "bad.yaml")
    assert err.value.file == "bad.yaml"
    assert str(err.value).startswith("bad.yaml: ") or "bad.yaml: " in str(err.value)
    return err.value


BAD = [
    (  # typo in a parameter name
        "plugins:\n- type: static-usage-limit-policy\n  parameters: {threshhold: 0.5}\n",
        "plugins[0].parameters.threshhold",
        "unknown field; did you mean 'threshold'?",
    ),
    (  # wrong type (strict, as Go's decoder)
        "plugins:\n- type: max-score-picker\n  parameters: {maxNumOfEndpoints: '3'}\n",
        "plugins[0].parameters.maxNumOfEndpoints",
        "must be an integer, got '3'",
    ),
    (  # out of range
        "plugins:\n- type: utilization-detector\n  parameters: {kvCacheUtilThreshold: 1.5}\n",
        "plugins[0].parameters.kvCacheUtilThreshold",
        "must be <= 1",
    ),
    (  # unknown plugin type: a typo gets a suggestion
        "plugins:\n- type: queue-scorrer\n",
        "plugins[0].type",
        "unknown plugin type 'queue-scorrer'; did you mean 'queue-scorer'?",
    ),
    (  # upstream's type we lack: says so, distinct from a typo
        "plugins:\n- type: disaggregatedset-rollout-screener\n",
        "plugins[0].type",
        "is not implemented here",
    ),
    (  # unknown parameter on a plugin that takes none
        "plugins:\n- type: openai-parser\n  parameters: {strict: true}\n",
        "plugins[0].parameters.strict",
        "takes no parameters",
    ),
    (  # unknown field in the document
        "plugins: []\nschedulingProfile: []\n",
        "schedulingProfile",
        "did you mean 'schedulingProfiles'?",
    ),
    (  # unknown field, no close match: the known fields are listed
        "plugins:\n- type: metrics-data-source\n  parameters: {port: 9}\n",
        "plugins[0].parameters.port",
        "(known: scheme, path, insecureSkipVerify)",
    ),
    (  # bad duration
        "plugins:\n- type: utilization-detector\n  parameters: {metricsStalenessThreshold: soon}\n",
        "plugins[0].parameters.metricsStalenessThreshold",
        "invalid duration 'soon'",
    ),
    (  # bad value in a nested list of models
        "plugins:\n- type: core-metrics-extractor\n"
        "  parameters: {engineConfigs: [{name: x, kvUsageSpc: m}]}\n",
        "plugins[0].parameters.engineConfigs[0].kvUsageSpc",
        "did you mean 'kvUsageSpec'?",
    ),
    (  # a cross-field rule
        "plugins:\n- type: approx-prefix-cache-producer\n"
        "  parameters: {autoTune: false, blockSizeTokens: 0}\n",
        "plugins[0].parameters.blockSizeTokens",
        "must be > 0 when autoTune is false",
    ),
    (
        "plugins:\n- type: token-load-scorer\n  parameters: [1, 2]\n",
        "plugins[0].parameters",
        "must be a mapping",
    ),
    (
        "featureGates: [flowControll]\nplugins: []\n",
        "featureGates[0]",
        "did you mean 'flowControl'?",
    ),
    (
        "featureGates: ['flowControl=maybe']\nplugins: []\n",
        "featureGates[0]",
        "not true or false",
    ),
    (
        "plugins: []\nschedulingProfiles:\n- name: a\n  plugins: [{pluginRef: queue-scorer}]\n",
        "schedulingProfiles[0].plugins[0].pluginRef",
        "not defined in plugins",
    ),
    (
        "plugins: [{type: queue-scorer}]\nrequestHandler: {parsers: [{pluginRef: queue-scorer}]}\n",
        "requestHandler.parsers[0].pluginRef",
        "is not a parser",
    ),
    (
        "plugins: []\nflowControl: {saturationDetector: {pluginRef: busy}}\n",
        "flowControl.saturationDetector.pluginRef",
        "not defined",
    ),
    (
        "plugins: []\ndataLayer: {discovery: {pluginRef: file-discovery}}\n",
        "dataLayer.discovery.pluginRef",
        "not defined",
    ),
    ("plugins: []\nflowControl: {maxRequests: -1}\n", "flowControl.maxRequests", "negative"),
    (
        "plugins: []\ndataLayer: {peerDiscovery: {pluginRef: x}}\n",
        "dataLayer.peerDiscovery",
        "not implemented here",
    ),
    ("plugins: []\nplugins: []\n", None, "duplicate key 'plugins'"),
    ("plugins: [\n", None, "invalid YAML"),
]


@pytest.mark.parametrize(("body", "path", "reason"), BAD, ids=[str(b[1]) for b in BAD])
def test_bad_config_names_file_path_and_fix(body: str, path: str | None, reason: str) -> None:
    err = error_of(HEAD + body)
    found = err.errors if isinstance(err, ConfigErrors) else [err]
    assert any(e.path == path and reason in e.reason for e in found), str(err)


@pytest.mark.parametrize(
    ("api", "reason"),
    [
        ("config.x-k8s.io/v1alpha1", "apiVersion must be one of"),
        ("llm-d.ai/v1alpha2", "llm-d.ai/v1alpha1"),
    ],
)
def test_wrong_api_version(api: str, reason: str) -> None:
    err = error_of(f"apiVersion: {api}\nkind: EndpointPickerConfig\nplugins: []\n")
    assert err.path == "apiVersion" and reason in err.reason


def test_every_error_is_reported_at_once() -> None:
    err = error_of(
        HEAD + "plugins:\n- type: queue-scorrer\n- type: max-score-picker\n"
        "  parameters: {maxNumOfEndpoint: 2}\n- type: token-load-scorer\n"
        "  parameters: {queueThresholdTokens: lots}\n"
    )
    assert isinstance(err, ConfigErrors)
    assert [e.path for e in err.errors] == [
        "plugins[0].type",
        "plugins[1].parameters.maxNumOfEndpoint",
        "plugins[2].parameters.queueThresholdTokens",
    ]
    text = str(err)
    assert text.startswith("bad.yaml: 3 errors:")
    assert "bad.yaml: plugins[2].parameters.queueThresholdTokens: must be an integer" in text


def test_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(str(tmp_path / "absent.yaml"))
    assert err.value.file == str(tmp_path / "absent.yaml")
    assert "cannot read config file" in err.value.reason


def test_epp_config_and_epp_run_print_the_same_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(HEAD + "plugins:\n- type: static-usage-limit-policy\n  parameters: {x: 1}\n")
    assert main(["config", "--config-file", str(bad)]) == 1
    from_config = capsys.readouterr().err
    assert f"{bad}: plugins[0].parameters.x: unknown field" in from_config
    argv = ["run", "--no-envoy", "--config-file", str(bad), "--host", "127.0.0.1"]
    argv += ["--grpc-port", "0", "--grpc-health-port", "0", "--metrics-port", "0"]
    assert main(argv) == 1
    assert capsys.readouterr().err.strip().endswith(from_config.strip())
