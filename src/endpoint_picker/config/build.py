"""Build a :class:`~endpoint_picker.scheduling.Scheduler` from a loaded :class:`EppConfig`."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from endpoint_picker.clock import SYSTEM_CLOCK, Clock
from endpoint_picker.config import registry as r
from endpoint_picker.config.model import EppConfig, PluginInstance
from endpoint_picker.errors import ConfigError
from endpoint_picker.scheduling import Scheduler, SchedulerProfile, WeightedScorer
from endpoint_picker.scheduling.plugins import SaturationFilter

FAIL_OPEN = {"utilization-detector": True, "concurrency-detector": False}


def build_detector(plugin: PluginInstance) -> Any:
    """A saturation detector from ``endpoint_picker.flowcontrol`` (its ``SATURATION_DETECTORS``)."""
    try:
        from endpoint_picker import flowcontrol
    except ImportError:  # pragma: no cover
        flowcontrol = None  # type: ignore[assignment]
    factories: Mapping[str, Callable[..., Any]] | None = getattr(
        flowcontrol, "SATURATION_DETECTORS", None
    )
    if factories is None or plugin.type_name not in factories:
        raise ConfigError(
            f"saturation detector {plugin.type_name!r} is not available "
            "(endpoint_picker.flowcontrol provides none)",
            path=f"plugins[{plugin.name}]",
        )
    factory = factories[plugin.type_name]
    from_params = getattr(factory, "from_params", None)
    if from_params is not None:  # flow control's detector classes
        return from_params(plugin.parameters)
    try:
        n_args = len(inspect.signature(factory).parameters)
    except (TypeError, ValueError):
        n_args = 1
    return factory(plugin.name, plugin.parameters) if n_args >= 2 else factory(plugin.parameters)


def build_scheduler(
    cfg: EppConfig,
    *,
    clock: Clock = SYSTEM_CLOCK,
    detectors: Mapping[str, Any] | None = None,
) -> Scheduler:
    """Fresh plugin instances wired as the config says (plugin state is never shared between
    schedulers). ``detectors`` (plugin name -> detector) lets the runner pass the detector
    objects flow control already uses, so both read the same in-flight counters."""
    built: dict[str, Any] = {}

    def get(name: str) -> Any:
        if name not in built:
            p = cfg.plugins[name]
            if r.SATURATION_DETECTOR in p.kinds:
                det = (detectors or {}).get(name) or build_detector(p)
                built[name] = SaturationFilter(
                    det,
                    type_name=p.type_name,
                    name=p.name,
                    fail_open=FAIL_OPEN.get(p.type_name, True),
                    clock=clock,
                )
            else:
                factory = r.PLUGIN_TYPES[p.type_name].factory
                assert factory is not None
                built[name] = factory(p.name, p.parameters)
        return built[name]

    profiles: list[SchedulerProfile] = []
    for prof in cfg.profiles:
        filters, scorers, picker = [], [], None
        for ref in prof.refs:
            kinds = cfg.plugins[ref.plugin_ref].kinds
            obj = get(ref.plugin_ref)
            if r.FILTER in kinds:
                filters.append(obj)
            if r.SCORER in kinds:
                scorers.append(WeightedScorer(obj, ref.weight if ref.weight is not None else 1.0))
            if r.PICKER in kinds:
                picker = obj
        assert picker is not None  # guaranteed by defaulting
        profiles.append(
            SchedulerProfile(prof.name, filters=filters, scorers=scorers, picker=picker)
        )
    handler = next(get(p.name) for p in cfg.plugins.values() if r.PROFILE_HANDLER in p.kinds)
    extras = [
        get(p.name) for p in cfg.plugins.values() if p.kinds & {r.PRODUCER, r.RESPONSE_HEADER}
    ]
    return Scheduler(profiles, handler, plugins=extras)
