"""Build everything a loaded :class:`EppConfig` describes, each plugin exactly once.

``build(cfg)`` calls every configured plugin's factory one time with its validated parameters
and wires the objects: the scheduler (profiles, handler, producers), the saturation detector
(one object, used by flow control and, where a profile lists it, as a filter), the parser, the
data layer's settings and flow control's config. The runner uses what it returns and never
reads parameters itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from endpoint_picker.clock import SYSTEM_CLOCK, Clock
from endpoint_picker.config import registry as r
from endpoint_picker.config.model import EppConfig
from endpoint_picker.datalayer.params import (
    MetricsExtractorParams,
    MetricsSourceParams,
    layer_kwargs,
)
from endpoint_picker.flowcontrol.config import FlowControlConfig
from endpoint_picker.flowcontrol.saturation import SaturationDetector
from endpoint_picker.requests import Parser
from endpoint_picker.requests.registry import ParserRegistry
from endpoint_picker.scheduling import Scheduler, SchedulerProfile, WeightedScorer
from endpoint_picker.scheduling.plugins import SaturationFilter

# Whether a detector used as a filter passes every endpoint when all are saturated (upstream).
FAIL_OPEN = {"utilization-detector": True, "concurrency-detector": False}


@dataclass(slots=True)
class Built:
    """The objects one config makes; each plugin object is built once and shared."""

    config: EppConfig
    plugins: dict[str, Any]
    scheduler: Scheduler
    detector: SaturationDetector
    parser: Parser
    data_layer: dict[str, Any] | None  # DataLayer keyword arguments; None: legacy metrics
    flow_control: FlowControlConfig


def build(cfg: EppConfig, *, clock: Clock = SYSTEM_CLOCK) -> Built:
    """Instantiate every plugin of ``cfg`` once and wire them (fresh state on every call)."""
    objects = {
        name: r.PLUGIN_TYPES[p.type_name].factory(name, p.params) for name, p in cfg.plugins.items()
    }
    for obj in objects.values():  # plugins naming other plugins (a handler's deciders)
        bind = getattr(obj, "bind", None)
        if callable(bind):
            bind(objects)
    filters: dict[str, Any] = {}

    def as_filter(name: str) -> Any:
        p = cfg.plugins[name]
        if r.SATURATION_DETECTOR not in p.kinds:
            return objects[name]
        if name not in filters:  # one filter view per detector, over the one detector object
            filters[name] = SaturationFilter(
                objects[name],
                type_name=p.type_name,
                name=name,
                fail_open=FAIL_OPEN.get(p.type_name, True),
                clock=clock,
            )
        return filters[name]

    profiles: list[SchedulerProfile] = []
    for prof in cfg.profiles:
        flts, scorers, picker = [], [], None
        for ref in prof.refs:
            kinds = cfg.plugins[ref.plugin_ref].kinds
            if r.FILTER in kinds:
                flts.append(as_filter(ref.plugin_ref))
            if r.SCORER in kinds:
                weight = ref.weight if ref.weight is not None else 1.0
                scorers.append(WeightedScorer(objects[ref.plugin_ref], weight))
            if r.PICKER in kinds:
                picker = objects[ref.plugin_ref]
        assert picker is not None  # guaranteed by defaulting
        profiles.append(SchedulerProfile(prof.name, filters=flts, scorers=scorers, picker=picker))
    handler = next(objects[n] for n, p in cfg.plugins.items() if r.PROFILE_HANDLER in p.kinds)
    extras = [
        objects[n]
        for n, p in cfg.plugins.items()
        if p.kinds & {r.PRODUCER, r.RESPONSE_HEADER, r.RESPONSE_BODY, r.ADMITTER, r.PRE_REQUEST}
    ]
    return Built(
        config=cfg,
        plugins=objects,
        scheduler=Scheduler(profiles, handler, plugins=extras),
        detector=objects[cfg.saturation_detector],
        parser=_parser(cfg, objects),
        data_layer=_data_layer(cfg, objects),
        flow_control=cfg.flow_control,
    )


def _parser(cfg: EppConfig, objects: dict[str, Any]) -> Any:
    """The one parser, or with several (``requestHandler.parsers``) a registry that picks one
    per request by its path, as llm-d-router."""
    if len(cfg.parsers) == 1:
        return objects[cfg.parsers[0]]
    return ParserRegistry([(name, objects[name]) for name in cfg.parsers])


def _data_layer(cfg: EppConfig, objects: dict[str, Any]) -> dict[str, Any] | None:
    """``DataLayer`` arguments from the metrics source and extractor the config wires."""
    if cfg.data_sources is None:
        return None
    source: MetricsSourceParams | None = None
    extractor: MetricsExtractorParams | None = None
    for src in cfg.data_sources:
        for name in (src.plugin_ref, *src.extractors):
            obj = objects[name]
            if isinstance(obj, MetricsSourceParams):
                source = source or obj
            elif isinstance(obj, MetricsExtractorParams):
                extractor = extractor or obj
    return layer_kwargs(source, extractor)


def build_scheduler(cfg: EppConfig, *, clock: Clock = SYSTEM_CLOCK) -> Scheduler:
    """Only the scheduler of :func:`build` (tests and benchmarks that need nothing else)."""
    return build(cfg, clock=clock).scheduler
