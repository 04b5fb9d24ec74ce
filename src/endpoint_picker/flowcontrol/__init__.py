"""Admission: flows, priority bands, queues, fairness, ordering, capacity, saturation.

The director builds one admitter with :func:`build_admission` (a :class:`FlowController`, or
:class:`LegacyAdmission` when ``flowControl.enabled`` is false) and awaits ``admit(request)``
before scheduling. See docs/flow-control.md.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from endpoint_picker.clock import SYSTEM_CLOCK, Clock
from endpoint_picker.datalayer.freshness import DEFAULT_STALENESS_THRESHOLD
from endpoint_picker.datastore import Endpoint

from .config import FlowControlConfig, PriorityBandConfig
from .controller import CAPACITY_MESSAGE, FlowController, outcome_error
from .learned import LearnedCapacityDetector, LearnedCapacityParams
from .legacy import SHED_MESSAGE, LegacyAdmission
from .saturation import (
    SATURATION_DETECTORS,
    ConcurrencyDetector,
    SaturationDetector,
    UtilizationDetector,
    detector_from_config,
)
from .types import FlowKey, Outcome

__all__ = [
    "CAPACITY_MESSAGE",
    "SATURATION_DETECTORS",
    "SHED_MESSAGE",
    "ConcurrencyDetector",
    "FlowControlConfig",
    "FlowController",
    "FlowKey",
    "LearnedCapacityDetector",
    "LearnedCapacityParams",
    "LegacyAdmission",
    "Outcome",
    "PriorityBandConfig",
    "SaturationDetector",
    "UtilizationDetector",
    "build_admission",
    "detector_from_config",
    "outcome_error",
]


def build_admission(
    config: FlowControlConfig,
    detector: SaturationDetector,
    endpoints: Callable[[], Sequence[Endpoint]],
    clock: Clock = SYSTEM_CLOCK,
    *,
    pool_name: str = "",
    ready_threshold: float = DEFAULT_STALENESS_THRESHOLD,
) -> FlowController | LegacyAdmission:
    """The admitter the config asks for: flow control (default) or legacy shedding.
    ``ready_threshold``: how old an endpoint's metrics may be for it to count as ready
    (``--metrics-staleness-threshold``)."""
    if config.enabled:
        return FlowController(
            config, detector, endpoints, clock, pool_name=pool_name, ready_threshold=ready_threshold
        )
    return LegacyAdmission(detector, endpoints, clock)
