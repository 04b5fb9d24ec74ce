"""EndpointPickerConfig: schema, upstream's defaulting, the plugin registry, the one build.

``load_config(path)`` -> :class:`EppConfig` (validated, defaulted; raises ``ConfigError``);
``build(cfg)`` -> :class:`Built` (every plugin built once, wired).
"""

from endpoint_picker.config.build import Built, build, build_scheduler
from endpoint_picker.config.loader import load_config, load_config_text
from endpoint_picker.config.model import (
    ConfigErrors,
    EppConfig,
    PluginInstance,
    ProfileConfig,
    ProfileRef,
)
from endpoint_picker.config.registry import (
    PLUGIN_TYPES,
    UPSTREAM_NOT_IMPLEMENTED,
    register_plugin,
)

__all__ = [
    "PLUGIN_TYPES",
    "UPSTREAM_NOT_IMPLEMENTED",
    "Built",
    "ConfigErrors",
    "EppConfig",
    "PluginInstance",
    "ProfileConfig",
    "ProfileRef",
    "build",
    "build_scheduler",
    "load_config",
    "load_config_text",
    "register_plugin",
]
