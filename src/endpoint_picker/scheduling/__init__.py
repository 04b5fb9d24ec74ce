"""Scheduling: where a request goes. Profiles of filters -> weighted scorers -> one picker.

The director calls :meth:`Scheduler.schedule`, then the hooks :meth:`Scheduler.pre_request`,
:meth:`Scheduler.response_complete` and :meth:`Scheduler.remove_endpoint`. Schedulers are
built from an ``EndpointPickerConfig`` by ``endpoint_picker.config.build_scheduler``.
"""

from endpoint_picker.scheduling.framework import (
    ProfileRunResult,
    SchedulingError,
    SchedulingResult,
    WeightedScorer,
)
from endpoint_picker.scheduling.profile import SchedulerProfile
from endpoint_picker.scheduling.scheduler import Scheduler

__all__ = [
    "ProfileRunResult",
    "Scheduler",
    "SchedulerProfile",
    "SchedulingError",
    "SchedulingResult",
    "WeightedScorer",
]
