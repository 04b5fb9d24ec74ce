"""Upstream's own EndpointPickerConfigs (tests/data/upstream-configs, see its README) through
this project's loader.

What upstream accepts loads and builds here, except configs naming a plugin type that is not
implemented here: those fail with an error naming the type and saying "not implemented"
(the ``NOT_IMPLEMENTED`` table below; the types are ``registry.UPSTREAM_NOT_IMPLEMENTED``).
Upstream's negative loader cases (Go constants ``error...``) fail here too. Upstream's loader
tests use mock plugin types (``test-scorer``, ...); they are registered here as fakes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ConfigDict

from endpoint_picker.config import ConfigErrors, build, load_config, schema
from endpoint_picker.config import registry as r
from endpoint_picker.errors import ConfigError
from endpoint_picker.params import NoParams, PluginParams

DATA = Path(__file__).resolve().parents[1] / "data" / "upstream-configs"
CONFIGS = sorted(DATA.glob("*/*.yaml"))
LT = "pkg__epp__config__loader__testdata_test__"


class FakeTestScorerParams(PluginParams):
    """Upstream's mock ``test-scorer`` decodes ``blockSize`` as an int."""

    block_size: int = 0


class FakeLenientParams(PluginParams):
    model_config = ConfigDict(extra="allow")


# Upstream's loader-test mocks -> fakes with the kinds the tests use them as.
FAKE_TYPES: dict[str, tuple[set[str], type[PluginParams]]] = {
    "test-plugin": ({r.FILTER}, FakeLenientParams),
    "test-order-filter": ({r.FILTER}, NoParams),
    "test-scorer": ({r.SCORER}, FakeTestScorerParams),
    "test-picker": ({r.PICKER}, NoParams),
    "test-profile-handler": ({r.PROFILE_HANDLER}, NoParams),
    "test-source": ({r.DATA_SOURCE}, NoParams),
    "test-extractor": ({r.EXTRACTOR}, NoParams),
}

# Configs that name plugin types not implemented here -> those types (each must be named).
NOT_IMPLEMENTED: dict[str, set[str]] = {}  # filled below from the data, checked against it

# Configs upstream itself rejects (documentation fragments and mistakes, test-only mocks we do
# not fake): they fail here too.
UPSTREAM_REJECTS: dict[str, str] = {
    "gie-v1.5.0/config__charts__inferencepool__README.yaml": "placeholder type custom-scorer",
    "llm-d-router/config__charts__README.yaml": "placeholder type custom-scorer",
    "gie-v1.5.0/site-src__guides__epp-configuration__config-text-1.yaml": "'...' fragment",
    "gie-v1.5.0/site-src__guides__epp-configuration__config-text-3.yaml": "'...' fragment",
    "gie-v1.5.0/site-src__guides__epp-configuration__config-text-5.yaml": "merge markers",
    "llm-d-router/docs__architecture-1.yaml": "'...' fragment",
    "gie-v1.5.0/site-src__guides__flow-control.yaml": "apiVersion config.x-k8s.io/v1alpha1",
    "gie-v1.5.0/pkg__epp__framework__plugins__requestcontrol__requestattributereporter__README"
    ".yaml": "apiVersion config.apix.gateway-api-inference-extension.sigs.k8s.io/v1alpha1",
    "gie-v1.5.0/site-src__guides__troubleshooting-2.yaml": "unregistered gate prepareDataPlugins",
    "gie-v1.5.0/test__integration__epp__testdata__datalayer-config.yaml": "mock-metrics-source",
    "llm-d-router/test__integration__epp__testdata__datalayer-config.yaml": "mock-metrics-source",
    "llm-d-router/test__integration__epp__testdata__request-attribute-reporter-config.yaml": (
        "mock-metrics-source"
    ),
    "gie-v1.5.0/test__testdata__configloader_1_test.yaml": "mocks test-one, test-two",
    "llm-d-router/test__testdata__configloader_1_test.yaml": "mocks test-one, test-two",
    # Plugins with plugin dependencies (upstream's DAG tests) have no counterpart here.
    f"llm-d-router/{LT}pluginsInOrderText.yaml": "mock test-with-dependencies",
    f"llm-d-router/{LT}pluginsOutOfOrderText.yaml": "mock test-with-dependencies",
    f"llm-d-router/{LT}pluginsRefedByPointerText.yaml": "mock test-with-dependencies",
    f"llm-d-router/{LT}pluginsRefedInNestedingText.yaml": "mock test-with-nested-dependencies",
}


# Upstream's negative loader cases (Go constant -> the path our error names): same verdict.
NEGATIVE: dict[str, str] = {
    "errorBadExtractorReferenceText": "dataLayer.sources[0].extractors[0]",
    "errorBadFeatureGateText": "featureGates[0]",
    "errorBadPluginJSONText": "plugins[1].parameters.blockSize",
    "errorBadPluginJsonText": "plugins[1].parameters.blockSize",
    "errorBadPluginReferencePluginText": "plugins[0].type",
    "errorBadPluginReferenceText": "plugins[0].type",
    "errorBadProfilePluginRefText": "schedulingProfiles[0].plugins[0].pluginRef",
    "errorBadProfilePluginText": "schedulingProfiles[0].plugins[0].pluginRef",
    "errorBadSourceReferenceText": "plugins[0].type",
    "errorBadYamlText": "plugins[0]",
    "errorDuplicatePluginText": "plugins[1].name",
    "errorDuplicateProfileText": "schedulingProfiles[1].name",
    "errorFlowControlMissingPluginText": "flowControl.priorityBands[0].orderingPolicyRef",
    "errorFlowControlWrongPluginTypeText": "flowControl.priorityBands[0].orderingPolicyRef",
    "errorMultiProfilesUseSingleProfileHandlerText": "schedulingProfiles",
    "errorNoProfileHandlersText": "plugins",
    "errorNoProfileNameText": "schedulingProfiles[0].name",
    "errorParserWrongPluginNameText": "parser.pluginRef",
    "errorParserWrongPluginTypeText": "parser.pluginRef",
    "errorPluginsRefedInLoopText": "plugins[0].type",  # no plugin dependencies here
    "errorTwoPickersText": "schedulingProfiles[0].plugins",
    "errorTwoProfileHandlersText": "plugins",
    "errorUndefinedSaturationDetectorPluginText": "saturationDetector.pluginRef",
    "errorUnknownFeatureGateText": "featureGates[0]",
}


def _name(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def _types(path: Path) -> set[str]:
    import yaml

    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        return set()
    plugins = doc.get("plugins") if isinstance(doc, dict) else None
    return {p["type"] for p in plugins or [] if isinstance(p, dict) and "type" in p}


for _path in CONFIGS:
    _missing = _types(_path) & set(r.UPSTREAM_NOT_IMPLEMENTED)
    if _missing:
        NOT_IMPLEMENTED[_name(_path)] = _missing


@pytest.fixture(autouse=True)
def fake_upstream_test_plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for type_name, (kinds, params) in FAKE_TYPES.items():
        fake = r.PluginType(type_name, frozenset(kinds), params, lambda name, p: object())
        monkeypatch.setitem(r.PLUGIN_TYPES, type_name, fake)
    monkeypatch.setattr(schema, "FEATURE_GATES", (*schema.FEATURE_GATES, "test-feature-gate"))
    from endpoint_picker.config import loader

    monkeypatch.setattr(loader, "FEATURE_GATES", schema.FEATURE_GATES)
    yield


def test_the_data_is_there() -> None:
    assert len(CONFIGS) > 150
    assert (DATA / "README.md").is_file()
    named = (DATA / "README.md").read_text()
    assert all(_name(p) in named for p in CONFIGS)


@pytest.mark.parametrize("path", CONFIGS, ids=_name)
def test_upstream_config(path: Path) -> None:
    name = _name(path)
    uses_fakes = bool(_types(path) & set(FAKE_TYPES))
    if path.name.startswith(LT + "error"):
        with pytest.raises(ConfigError) as err:
            load_config(str(path))
        const = path.stem.removeprefix(LT)
        errors = err.value.errors if isinstance(err.value, ConfigErrors) else [err.value]
        expected = NEGATIVE[const]
        if path.parent.name == "llm-d-router" and expected == "parser.pluginRef":
            expected = "requestHandler.parsers[0].pluginRef"  # llm-d moved the parser there
        assert expected in [e.path for e in errors], str(err.value)
        return
    if name in UPSTREAM_REJECTS:
        with pytest.raises(ConfigError):
            load_config(str(path))
        return
    if name in NOT_IMPLEMENTED:
        with pytest.raises(ConfigError) as err:
            load_config(str(path))
        _assert_names_unimplemented(err.value, NOT_IMPLEMENTED[name])
        return
    cfg = load_config(str(path))
    if not uses_fakes:
        assert build(cfg).scheduler.profiles


def _assert_names_unimplemented(err: ConfigError, types: set[str]) -> None:
    errors = err.errors if isinstance(err, ConfigErrors) else [err]
    reasons = [e.reason for e in errors if "not implemented here" in e.reason]
    for t in types:
        assert any(repr(t) in reason for reason in reasons), (t, str(err))


def test_not_implemented_is_not_a_typo() -> None:
    reason = r.unknown_type_reason("disaggregatedset-rollout-screener")
    assert "not implemented here" in reason and "did you mean" not in reason
    assert "did you mean" in r.unknown_type_reason("queue-scorrer")


def test_not_implemented_types_are_not_registered() -> None:
    assert not set(r.UPSTREAM_NOT_IMPLEMENTED) & set(r.PLUGIN_TYPES)


def test_most_upstream_configs_that_use_our_plugins_load() -> None:
    loaded: list[Any] = []
    for path in CONFIGS:
        name = _name(path)
        if name in NOT_IMPLEMENTED or name in UPSTREAM_REJECTS or LT + "error" in name:
            continue
        loaded.append(name)
    assert len(loaded) >= 50
