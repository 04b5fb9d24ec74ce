"""Embedded defaults for standalone runs."""

from __future__ import annotations

from importlib.resources import files


def default_manifest_path() -> str:
    """The packaged pool + objectives manifest (critical=10, standard unset, sheddable=-10)."""
    return str(files("endpoint_picker.runner").joinpath("default-pool.yaml"))


def pd_config_path() -> str:
    """The packaged P/D EndpointPickerConfig ``--simulate-pd`` uses (llm-d's pd-epp-config)."""
    return str(files("endpoint_picker.runner").joinpath("pd-config.yaml"))
