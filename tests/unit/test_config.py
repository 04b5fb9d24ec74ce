"""EndpointPickerConfig: parsing, upstream's defaulting, strictness, `epp config --show`."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from endpoint_picker.cli import main
from endpoint_picker.config import build_scheduler, load_config, load_config_text
from endpoint_picker.errors import ConfigError

HEAD = "apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\n"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "config"


def err_of(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        load_config_text(text, "cfg.yaml")
    assert err.value.file == "cfg.yaml"
    return err.value


def test_default_config_effective_plugins() -> None:
    cfg = load_config(None)
    (profile,) = cfg.profiles
    assert [(r.plugin_ref, r.weight) for r in profile.refs] == [
        ("queue-scorer", 2),
        ("kv-cache-utilization-scorer", 2),
        ("prefix-cache-scorer", 3),
        ("max-score-picker", None),
    ]
    for name in (
        "single-profile-handler",
        "fcfs-ordering-policy",
        "global-strict-fairness-policy",
        "static-usage-limit-policy",
        "openai-parser",
        "learned-capacity-detector",
        "approx-prefix-cache-producer",
        "metrics-data-source",
        "core-metrics-extractor",
    ):
        assert name in cfg.plugins
    assert cfg.flow_control_enabled and cfg.saturation_detector == "learned-capacity-detector"
    assert cfg.parser == "openai-parser"
    assert load_config_text("").to_dict() == cfg.to_dict() != {}


def test_no_profiles_makes_default_profile_of_all_scheduling_plugins() -> None:
    cfg = load_config_text(
        HEAD + "plugins:\n- type: queue-scorer\n- {name: lora, type: lora-affinity-scorer}\n"
    )
    assert [(r.plugin_ref, r.weight) for r in cfg.profiles[0].refs] == [
        ("queue-scorer", 1.0),
        ("lora", 1.0),
        ("max-score-picker", None),
    ]
    assert cfg.profiles[0].name == "default"
    assert "approx-prefix-cache-producer" not in cfg.plugins  # no prefix scorer, no producer


def test_explicit_picker_is_used_and_legacy_metrics_drop_data_layer() -> None:
    cfg = load_config_text(
        HEAD
        + "featureGates: [enableLegacyMetrics, flowControl]\nplugins:\n- type: random-picker\n"
        + "- type: queue-scorer\nschedulingProfiles:\n- name: p\n  plugins: [{pluginRef: queue-scorer}]\n"  # noqa: E501
    )
    assert [r.plugin_ref for r in cfg.profiles[0].refs] == ["queue-scorer", "random-picker"]
    assert "max-score-picker" not in cfg.plugins and cfg.data_sources is None
    assert cfg.flow_control_enabled  # upstream's gate turns flow control on


def test_flow_control_switch_off() -> None:
    cfg = load_config_text(
        HEAD + "plugins: []\nflowControl:\n  enabled: false\n  maxRequests: 10\n"
    )
    assert not cfg.flow_control_enabled
    assert cfg.flow_control.max_requests == 10
    assert cfg.to_dict()["flowControl"]["enabled"] is False


def test_scorer_params_reach_auto_created_producer() -> None:
    cfg = load_config_text(
        HEAD
        + "plugins:\n- type: prefix-cache-scorer\n  parameters: {blockSizeTokens: 32, lruCapacityPerServer: 99}\n"  # noqa: E501
    )
    producer = cfg.plugins["approx-prefix-cache-producer"]
    assert producer.parameters["blockSizeTokens"] == 32
    assert producer.parameters["lruCapacityPerServer"] == 99
    sched = build_scheduler(cfg)
    assert sched.producers[0].config.block_size_tokens == 32  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("text", "path", "reason"),
    [
        (HEAD + "plugins: []\nplugin: []\n", "plugin", "unknown field"),
        (
            HEAD + "plugins:\n- type: queue-scorer\n  paramters: {}\n",
            "plugins[0].paramters",
            "unknown field",
        ),
        (HEAD + "plugins:\n- type: no-such-scorer\n", "plugins[0].type", "unknown plugin type"),
        (
            HEAD + "plugins:\n- type: queue-scorer\n- type: queue-scorer\n",
            "plugins[1].name",
            "duplicate plugin name",
        ),
        (
            HEAD + "plugins:\n- type: max-score-picker\n  parameters: {maxNumOfEndpoint: 2}\n",
            "plugins[0].parameters.maxNumOfEndpoint",
            "unknown field; did you mean 'maxNumOfEndpoints'?",
        ),
        (
            HEAD
            + "plugins:\n- type: token-load-scorer\n  parameters: {queueThresholdTokens: lots}\n",
            "plugins[0].parameters.queueThresholdTokens",
            "integer",
        ),
        (
            HEAD + "featureGates: [warpDrive]\nplugins: []\n",
            "featureGates[0]",
            "unknown feature gate",
        ),
        (
            HEAD.replace("inference.networking.x-k8s.io", "config.x-k8s.io") + "plugins: []\n",
            "apiVersion",
            "apiVersion must be",
        ),
        (
            HEAD + "plugins: []\nschedulingProfiles:\n- name: a\n  plugins: [{pluginRef: nope}]\n",
            "schedulingProfiles[0].plugins[0].pluginRef",
            "not defined",
        ),
        (
            HEAD + "plugins: [{type: queue-scorer}]\nschedulingProfiles:\n- name: a\n- name: a\n",
            "schedulingProfiles[1].name",
            "duplicate profile",
        ),
        (
            HEAD + "plugins: [{type: queue-scorer}]\nschedulingProfiles:\n- name: a\n- name: b\n",
            "plugins",
            "no profile handler",
        ),
        (
            HEAD
            + "plugins: [{type: random-picker}, {type: max-score-picker}]\nschedulingProfiles:\n- name: a\n  plugins: [{pluginRef: random-picker}, {pluginRef: max-score-picker}]\n",  # noqa: E501
            "schedulingProfiles[0].plugins",
            "only one picker",
        ),
        (HEAD + "plugins: []\nparser: {pluginRef: my-parser}\n", "parser.pluginRef", "not defined"),
        (
            HEAD
            + "plugins: [{type: queue-scorer}]\nsaturationDetector: {pluginRef: queue-scorer}\n",
            "saturationDetector.pluginRef",
            "not a saturation-detector",
        ),
        (
            HEAD + "plugins: []\ndataLayer: {sources: [{pluginRef: nope}]}\n",
            "dataLayer.sources[0].pluginRef",
            "not defined",
        ),
        (HEAD + "plugins: []\nflowControl: {maxRequests: -1}\n", "flowControl.maxRequests", ""),
        (HEAD + "plugins: []\nplugins: []\n", None, "duplicate key"),
        (HEAD + "plugins: [\n", None, "invalid YAML"),
    ],
)
def test_invalid_configs_name_path_and_reason(text: str, path: str | None, reason: str) -> None:
    err = err_of(text)
    assert err.path == path
    assert reason in err.reason


def test_cli_show_default(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "--show"]) == 0
    doc = yaml.safe_load(capsys.readouterr().out)
    assert doc["kind"] == "EndpointPickerConfig"
    weights = {p["pluginRef"]: p.get("weight") for p in doc["schedulingProfiles"][0]["plugins"]}
    assert weights == {
        "queue-scorer": 2,
        "kv-cache-utilization-scorer": 2,
        "prefix-cache-scorer": 3,
        "max-score-picker": None,
    }


def test_cli_invalid_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(HEAD + "plugins:\n- type: queue-scorer\n  weight: 2\n")
    assert main(["config", "--show", "--config-file", str(bad)]) == 1
    assert f"{bad}: plugins[0].weight: unknown field" in capsys.readouterr().err
    assert main(["config", "--config-file", str(tmp_path / "missing.yaml")]) == 1


def test_detector_as_filter_uses_flow_controls_detector() -> None:
    from endpoint_picker.datastore import Endpoint, Metrics
    from endpoint_picker.requests.types import InferenceRequest

    cfg = load_config(str(EXAMPLES / "flow-control.yaml"))
    sched = build_scheduler(cfg)
    (flt,) = sched.profiles["default"].filters
    assert type(flt.detector).__module__.startswith("endpoint_picker.flowcontrol")  # type: ignore[attr-defined]
    now = flt.clock.now()  # type: ignore[attr-defined]
    busy = Endpoint(
        "busy", "busy", "10.0.0.1", 8000, metrics=Metrics(waiting_queue_size=9, update_time=now)
    )
    ok = Endpoint(
        "ok",
        "ok",
        "10.0.0.2",
        8000,
        metrics=Metrics(waiting_queue_size=9, kv_cache_usage_percent=0.0, update_time=now),
    )
    ok.metrics.waiting_queue_size = 0
    # Equal on KV; only the detector (queue 9 >= 5) keeps "busy" out.
    req = InferenceRequest("r", {}, target_model="m", prompt_text="hi")
    assert sched.schedule(req, [busy, ok]).primary is ok
    assert sched.schedule(req, [busy]).primary is busy  # utilization-detector fails open


def test_detector_parameters_validated_with_path() -> None:
    err = err_of(
        HEAD + "plugins:\n- type: utilization-detector\n  parameters: {queueDepthThreshold: 0}\n"
    )
    assert err.path == "plugins[0].parameters.queueDepthThreshold"


@pytest.mark.parametrize(
    ("body", "on"),
    [
        ("plugins: []\n", False),  # a config file without the switch: upstream's legacy path
        ("featureGates: [flowControl]\nplugins: []\n", True),
        ("featureGates: ['flowControl=false']\nplugins: []\n", False),
        ("plugins: []\nflowControl: {maxRequests: 100}\n", True),  # a section with settings
        (
            "plugins: []\nflowControl: {saturationDetector: {pluginRef: utilization-detector}}\n",
            False,
        ),
        ("featureGates: [flowControl]\nplugins: []\nflowControl: {enabled: false}\n", False),
        ("featureGates: ['flowControl=false']\nplugins: []\nflowControl: {enabled: true}\n", True),
    ],
)
def test_flow_control_switch_with_a_config_file(body: str, on: bool) -> None:
    from endpoint_picker.config import build
    from endpoint_picker.flowcontrol import FlowController, LegacyAdmission, build_admission

    built = build(load_config_text(HEAD + body, "cfg.yaml"))
    assert built.flow_control.enabled is on
    admission = build_admission(built.flow_control, built.detector, lambda: [])
    assert isinstance(admission, FlowController if on else LegacyAdmission)


def test_embedded_default_runs_flow_control() -> None:
    assert load_config(None).flow_control_enabled
    assert load_config_text("   \n").flow_control_enabled


def test_llm_d_api_version_and_fields() -> None:
    cfg = load_config_text(
        "apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\n"
        "plugins:\n- type: concurrency-detector\n- {name: pt, type: passthrough-parser}\n"
        "- type: queue-scorer\n"
        "requestHandler: {parsers: [{pluginRef: pt}]}\n"
        "saturationDetector: {pluginRef: utilization-detector}\n"
        "flowControl: {saturationDetector: {pluginRef: concurrency-detector}}\n",
        "llmd.yaml",
    )
    assert cfg.saturation_detector == "concurrency-detector"  # flowControl's place wins
    assert cfg.parsers == ["pt"] and cfg.parser_plugin.type_name == "passthrough-parser"
    assert not cfg.flow_control_enabled  # the section holds no flow-control settings
    shown = cfg.to_dict()
    assert shown["apiVersion"] == "llm-d.ai/v1alpha1"
    assert shown["requestHandler"] == {"parsers": [{"pluginRef": "pt"}]}


def test_show_prints_effective_parameters(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "--show"]) == 0
    doc = yaml.safe_load(capsys.readouterr().out)
    params = {p["name"]: p.get("parameters") for p in doc["plugins"]}
    assert params["learned-capacity-detector"] == {
        "initialCapacity": 4,
        "maxCapacity": 4096,
        "probeInterval": "5s",
        "plateauWindow": "2s",
        "kvCacheUtilThreshold": 0.95,
        "metricsStalenessThreshold": "2s",
        "holdback": 0.05,
        "holdbackMissRate": 0.05,
        "holdbackMaxIdle": 0.08,
        "affinityBudget": 2,
        "serverView": True,
        "transitAllowance": "100ms",
    }
    assert params["max-score-picker"] == {"maxNumOfEndpoints": 1}
    assert params["static-usage-limit-policy"] == {"threshold": 1.0}
    assert params["queue-scorer"] is None  # takes no parameters


def test_docs_quote_the_registry() -> None:
    from endpoint_picker.config.registry import plugin_tables

    doc = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    start = doc.index("<!-- plugin-tables")
    block = doc[doc.index("\n", start) + 1 : doc.index("<!-- /plugin-tables -->")]
    assert block == plugin_tables(), "regenerate with: epp config --plugins"


def test_cli_lists_plugins(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "--plugins"]) == 0
    out = capsys.readouterr().out
    assert "| `utilization-detector` |" in out and "| `pd-profile-handler` |" in out


def test_negative_priority_band_template() -> None:
    cfg = load_config_text(
        HEAD + "featureGates: [flowControl]\nplugins: []\nflowControl:\n"
        "  defaultPriorityBand: {maxRequests: 50}\n"
        "  defaultNegativePriorityBand: {maxRequests: 5}\n",
        "cfg.yaml",
    )
    assert cfg.flow_control.band(-10).max_requests == 5
    assert cfg.flow_control.band(-10).priority == -10
    assert cfg.flow_control.band(3).max_requests == 50


def test_empty_top_level_keys_read_as_absent() -> None:
    cfg = load_config_text(HEAD + "plugins:\n- type: queue-scorer\nschedulingProfiles:\n", "c.yaml")
    assert [r.plugin_ref for r in cfg.profiles[0].refs] == ["queue-scorer", "max-score-picker"]
