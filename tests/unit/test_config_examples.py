"""Every EndpointPickerConfig shipped in this repository loads and builds, as `epp run` would."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from endpoint_picker.config import build, load_config, load_config_text

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted(
    [
        *ROOT.glob("examples/config/*.yaml"),
        *ROOT.glob("benchmarks/configs/*.yaml"),
        *ROOT.glob("src/endpoint_picker/runner/*config*.yaml"),
    ]
)


def test_the_repository_has_configs() -> None:
    assert len(CONFIGS) >= 10


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_config_loads_and_builds(path: Path) -> None:
    cfg = load_config(str(path))
    built = build(cfg)
    assert built.scheduler.profiles and built.parser is not None
    # Round trip: the effective config (`epp config --show`) is itself a valid config.
    again = load_config_text(yaml.safe_dump(cfg.to_dict()), "shown.yaml")
    assert again.to_dict() == cfg.to_dict()
