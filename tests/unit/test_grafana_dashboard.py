"""The Grafana dashboard queries only metrics the EPP exports, and is what its generator writes."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client.core import Metric
from tests.unit.script_module import load_script

import endpoint_picker.fastfront.metrics
import endpoint_picker.flowcontrol.metrics
import endpoint_picker.scheduling.metrics  # noqa: F401  (registers its metrics)
from endpoint_picker.datastore import Datastore
from endpoint_picker.metrics import REGISTRY
from endpoint_picker.runner.observability import PerPodQueue

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "endpoint-picker.json"
NAME = re.compile(r"\b((?:inference|endpoint_picker)_[a-z0-9_]+)\b")
MATCHERS = re.compile(r"\{[^}]*\}")  # label matchers name labels, not metrics
SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("_sum", "_count"),
}


def _series_names(families: list[Metric]) -> set[str]:
    names: set[str] = set()
    for fam in families:
        for suffix in SUFFIXES.get(fam.type, ("",)):
            names.add(fam.name + suffix)
    return names


def exported() -> set[str]:
    families = list(REGISTRY.collect())
    families += list(PerPodQueue(Datastore(), lambda: "pool").collect())
    return _series_names(families)


def queries() -> list[str]:
    doc = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]


def test_every_queried_metric_is_exported() -> None:
    names = exported()
    used = {m for expr in queries() for m in NAME.findall(MATCHERS.sub("", expr))}
    assert len(used) >= 15, used  # the dashboard covers the EPP, not a corner of it
    missing = sorted(used - names)
    assert not missing, f"dashboard queries metrics the EPP does not export: {missing}"


def test_the_check_catches_a_misspelt_metric() -> None:
    assert "inference_objective_request_totl" not in exported()
    assert "inference_objective_request_total" in exported()


def test_dashboard_covers_the_operator_questions() -> None:
    titles = [p["title"] for p in json.loads(DASHBOARD.read_text())["panels"]]
    text = " ".join(titles).lower()
    for topic in ("requests/s", "errors", "queue time", "priority band", "saturation",
                  "scheduler latency", "per endpoint", "prefix cache hit"):  # fmt: skip
        assert topic in text, topic


def test_committed_dashboard_is_what_the_generator_writes() -> None:
    gen = load_script(DASHBOARD.with_name("generate.py"), "grafana_generate")
    assert gen.render() == DASHBOARD.read_text(), "run: python deploy/grafana/generate.py"
