"""Embedded defaults for standalone runs."""

from __future__ import annotations

from importlib.resources import files


def default_manifest_path() -> str:
    """The packaged pool + objectives manifest (critical=10, standard unset, sheddable=-10)."""
    return str(files("endpoint_picker.runner").joinpath("default-pool.yaml"))


def pd_config_path() -> str:
    """The packaged P/D EndpointPickerConfig ``--simulate-pd`` uses (llm-d's pd-epp-config)."""
    return str(files("endpoint_picker.runner").joinpath("pd-config.yaml"))


def dp_config_text(primary_port: int) -> str:
    """The packaged data-parallel EndpointPickerConfig ``--simulate-dp`` uses (llm-d's
    dp-epp-config), with ``primaryPort`` set to the simulated pod's rank-0 port."""
    text = files("endpoint_picker.runner").joinpath("dp-config.yaml").read_text()
    old = "primaryPort: 8000"
    if old not in text:
        raise RuntimeError(f"dp-config.yaml has no {old!r} to set")
    return text.replace(old, f"primaryPort: {primary_port}")
