"""Envoy for standalone runs: bootstrap generation and a managed Envoy process."""

from endpoint_picker.envoy.bootstrap import bootstrap, split_hostport
from endpoint_picker.envoy.process import EnvoyError, ManagedEnvoy, envoy_path, validate

__all__ = ["EnvoyError", "ManagedEnvoy", "bootstrap", "envoy_path", "split_hostport", "validate"]
