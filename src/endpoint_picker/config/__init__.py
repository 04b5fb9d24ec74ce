"""EndpointPickerConfig: schema, upstream's defaulting, the plugin registry, scheduler wiring.

``load_config(path)`` -> :class:`EppConfig`; ``build_scheduler(cfg)`` -> ``Scheduler``.
"""

from endpoint_picker.config.build import build_detector, build_scheduler
from endpoint_picker.config.loader import load_config, load_config_text
from endpoint_picker.config.model import EppConfig, PluginInstance, ProfileConfig, ProfileRef
from endpoint_picker.config.registry import PLUGIN_TYPES, register_plugin

__all__ = [
    "PLUGIN_TYPES",
    "EppConfig",
    "PluginInstance",
    "ProfileConfig",
    "ProfileRef",
    "build_detector",
    "build_scheduler",
    "load_config",
    "load_config_text",
    "register_plugin",
]
