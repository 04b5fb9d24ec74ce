"""Upstream's own manifests (tests/data/upstream/, copied unchanged) load here as there.

Every InferencePool, InferenceObjective and InferenceModelRewrite in them validates, in both API
groups, with unknown fields pruned as the API server prunes them (upstream's hermetic test data
still carries an InferenceObjective's old ``targetModels``). Other kinds in the files
(Deployments, Services) are not ours to check. ``$E2E_NS``-style placeholders are filled in.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from endpoint_picker.api.manifests import KINDS, ManifestError, parse_object

DATA = Path(__file__).resolve().parents[1] / "data" / "upstream"
FILES = sorted(DATA.glob("*.yaml"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_upstream_manifest_objects_load(path: Path) -> None:
    text = re.sub(r"\$\{?[A-Z_]+\}?", "default", path.read_text())
    ours = [d for d in yaml.safe_load_all(text) if isinstance(d, dict) and d.get("kind") in KINDS]
    assert ours, f"{path.name} has none of our kinds"
    for index, doc in enumerate(ours, 1):
        warnings: list[ManifestError] = []
        obj = parse_object(doc, file=path.name, index=index, strict=False, warnings=warnings)
        assert obj.api_version == doc["apiVersion"]
        assert all("unknown field" in w.reason for w in warnings)


def test_both_groups_are_in_upstreams_data() -> None:
    versions = set()
    for path in FILES:
        versions |= set(re.findall(r"^apiVersion: (\S+)", path.read_text(), flags=re.M))
    assert {"llm-d.ai/v1alpha2", "inference.networking.x-k8s.io/v1alpha2"} <= versions
