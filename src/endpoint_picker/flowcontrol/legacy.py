"""Legacy admission, used when flow control is switched off (upstream's default).

No queueing: a sheddable request (priority < 0) is dropped with 429 while the pool is
saturated; everything else passes at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar, overload

from endpoint_picker.clock import SYSTEM_CLOCK, Clock
from endpoint_picker.datastore import Endpoint
from endpoint_picker.errors import ResourceExhausted
from endpoint_picker.requests.types import InferenceRequest

from .saturation import SaturationDetector

SHED_MESSAGE = "system saturated, sheddable request dropped"
T = TypeVar("T")


class LegacyAdmission:
    """Upstream's ``LegacyAdmissionController``. Same ``admit`` surface as the flow controller."""

    def __init__(
        self,
        detector: SaturationDetector,
        endpoints: Callable[[], Sequence[Endpoint]],
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.detector = detector
        self._endpoints = endpoints
        self.clock = clock

    @overload
    async def admit(self, request: InferenceRequest) -> None: ...

    @overload
    async def admit(self, request: InferenceRequest, dispatch: Callable[[], T]) -> T: ...

    async def admit(
        self, request: InferenceRequest, dispatch: Callable[[], T] | None = None
    ) -> T | None:
        """Return ``dispatch()`` at once, or raise 429 for a sheddable request in a saturated
        pool."""
        if request.priority < 0:
            saturation = self.detector.saturation(self._endpoints(), self.clock.now())
            if saturation >= 1.0:  # no endpoints counts as saturated
                raise ResourceExhausted(SHED_MESSAGE)
        return None if dispatch is None else dispatch()

    def notify(self) -> None:
        """Nothing waits here; present so the director can treat both admitters alike."""

    async def start(self) -> None:
        """Nothing to start."""

    async def stop(self) -> None:
        """Nothing to stop."""
