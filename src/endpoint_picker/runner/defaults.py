"""Embedded defaults for standalone runs."""

from __future__ import annotations

from importlib.resources import files


def default_manifest_path() -> str:
    """The packaged pool + objectives manifest (critical=10, standard unset, sheddable=-10)."""
    return str(files("endpoint_picker.runner").joinpath("default-pool.yaml"))


def demo_config_path() -> str:
    """The demo's config: default scorers + a concurrency detector sized to the simulators."""
    return str(files("endpoint_picker.runner").joinpath("demo-config.yaml"))
