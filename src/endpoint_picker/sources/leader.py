"""Leader election on a coordination.k8s.io Lease, as client-go's ``leaderelection`` does it.

Every replica serves ext_proc, but only the leader reports ready and writes objective status.
The rules, in client-go's terms (controller-runtime defaults 15 s / 10 s / 2 s):

* a candidate takes the lease when it is free (no holder) or expired: its record has not
  changed for ``lease_duration`` seconds *of our own clock*. Expiry is judged by when we last
  saw the record change, never by the holder's ``renewTime``, so clock skew between nodes
  cannot make two leaders;
* every write is a PUT guarded by the lease's resourceVersion, so of two candidates racing
  for a free lease exactly one wins (the other gets 409 Conflict);
* the leader renews every ``retry_period``; if it cannot renew for ``renew_deadline`` it steps
  down *before* the lease can expire for others. It also steps down at once when it finds
  another holder in the record;
* on a clean stop the leader releases the lease (empty holder), so a successor need not wait
  for expiry (upstream's ``ReleaseOnCancel``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from lightkube import AsyncClient
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease

from endpoint_picker.clock import SYSTEM_CLOCK, Clock
from endpoint_picker.sources.k8s_watch import status_code

log = logging.getLogger(__name__)

LEASE_SUFFIX = "gateway-api-inference-extension.sigs.k8s.io"


def lease_name(namespace: str, name: str) -> str:
    """Upstream's lease name for the EPP of ``namespace/name``."""
    return f"epp-{namespace}-{name}.{LEASE_SUFFIX}"


class LeaderElector:
    """Campaigns for one Lease until stopped; ``is_leader`` says whether we hold it now."""

    def __init__(
        self,
        client: AsyncClient,
        *,
        name: str,
        namespace: str,
        identity: str,
        clock: Clock = SYSTEM_CLOCK,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        if not lease_duration > renew_deadline > retry_period > 0:
            raise ValueError("need lease_duration > renew_deadline > retry_period > 0")
        self._client = client
        self.name, self.namespace, self.identity = name, namespace, identity
        self._clock = clock
        self._duration, self._deadline, self._period = lease_duration, renew_deadline, retry_period
        self._on_change = on_change
        self._leading = False
        self._observed: tuple[str | None, object, object] | None = None  # holder, renew, rv
        self._observed_at = 0.0
        self._last_renew = 0.0

    @property
    def is_leader(self) -> bool:
        return self._leading

    async def run(self) -> None:
        """Try to acquire or renew every ``retry_period`` until cancelled."""
        while True:
            try:
                ok = await self._try_acquire_or_renew()
            except asyncio.CancelledError:
                raise
            except Exception as err:
                log.warning("lease %s/%s: %s", self.namespace, self.name, err)
                ok = False
            now = self._clock.now()
            if ok:
                self._last_renew = now
                self._set_leading(True)
            elif self._leading and (
                self._holder_is_other() or now - self._last_renew >= self._deadline
            ):
                self._set_leading(False)
            await asyncio.sleep(self._period)

    async def release(self) -> None:
        """Give the lease up if we hold it (a clean stop); errors are logged, not raised."""
        if not self._leading:
            return
        self._set_leading(False)
        try:
            lease = await self._client.get(Lease, self.name, namespace=self.namespace)
            if lease.spec is None or lease.spec.holderIdentity != self.identity:
                return
            now = datetime.now(UTC)
            lease.spec.holderIdentity = None
            lease.spec.leaseDurationSeconds = 1
            lease.spec.renewTime = lease.spec.acquireTime = now
            await self._client.replace(lease)
        except Exception as err:
            log.warning("lease %s/%s: release failed: %s", self.namespace, self.name, err)

    def _set_leading(self, leading: bool) -> None:
        if leading != self._leading:
            self._leading = leading
            log.info(
                "lease %s/%s: %s leadership (%s)",
                self.namespace,
                self.name,
                "acquired" if leading else "lost",
                self.identity,
            )
            if self._on_change is not None:
                self._on_change(leading)

    def _holder_is_other(self) -> bool:
        return self._observed is not None and self._observed[0] not in (None, "", self.identity)

    async def _try_acquire_or_renew(self) -> bool:
        now_wall = datetime.now(UTC)
        try:
            lease = await self._client.get(Lease, self.name, namespace=self.namespace)
        except Exception as err:
            if status_code(err) != 404:
                raise
            spec = LeaseSpec(
                holderIdentity=self.identity,
                leaseDurationSeconds=round(self._duration),
                acquireTime=now_wall,
                renewTime=now_wall,
                leaseTransitions=0,
            )
            meta = ObjectMeta(name=self.name, namespace=self.namespace)
            await self._client.create(Lease(metadata=meta, spec=spec))
            return True
        spec = lease.spec or LeaseSpec()
        record = (
            spec.holderIdentity,
            spec.renewTime,
            lease.metadata and lease.metadata.resourceVersion,
        )
        if record != self._observed:
            self._observed, self._observed_at = record, self._clock.now()
        holder = spec.holderIdentity
        expired = self._clock.now() >= self._observed_at + self._duration
        if holder and holder != self.identity and not expired:
            return False
        if holder != self.identity:
            spec.acquireTime = now_wall
            spec.leaseTransitions = (spec.leaseTransitions or 0) + 1
        spec.holderIdentity = self.identity
        spec.leaseDurationSeconds = round(self._duration)
        spec.renewTime = now_wall
        lease.spec = spec
        try:
            updated = await self._client.replace(lease)
        except Exception as err:
            if status_code(err) == 409:
                return False  # someone else wrote first; re-read next round
            raise
        rv = updated.metadata.resourceVersion if updated.metadata else None
        self._observed = (self.identity, spec.renewTime, rv)
        self._observed_at = self._clock.now()
        return True
