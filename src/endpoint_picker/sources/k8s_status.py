"""The ``Accepted`` condition the EPP writes on the InferenceObjectives that reference its pool.

Upstream's EPP never writes objective status, so a user cannot tell from ``kubectl get`` whether
an objective is in force. Here the EPP serving the pool says so: True/``Accepted`` while the pool
exists; False with a reason when the poolRef names something that is not an InferencePool
(``InvalidPoolRef``) or the pool is absent (``PoolNotFound``). The CRD's placeholder condition
(``Ready``/``Unknown``/``Pending``, "Waiting for controller") is replaced, since this is the
controller it waits for; any other condition is left as it is.

This module is pure: it says *what* the status should be and whether a write is due. The
writer in :mod:`endpoint_picker.sources.kubernetes` decides *when* (leader only).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from endpoint_picker.sources.k8s_resources import POOL_GROUP, POOL_GROUPS, POOL_KIND

ACCEPTED = "Accepted"
REASON_ACCEPTED = "Accepted"
REASON_INVALID_POOL_REF = "InvalidPoolRef"
REASON_POOL_NOT_FOUND = "PoolNotFound"
_PLACEHOLDER = ("Ready", "Pending")  # the CRD's default status condition (type, reason)


@dataclass(frozen=True, slots=True)
class Desired:
    status: str
    reason: str
    message: str
    observed_generation: int | None


def pool_ref(data: dict[str, Any]) -> tuple[str, str, str]:
    """(group, kind, name) of an objective's poolRef, with the CRD defaults applied."""
    ref = (data.get("spec") or {}).get("poolRef") or {}
    return (ref.get("group") or POOL_GROUP, ref.get("kind") or POOL_KIND, ref.get("name") or "")


def concerns_us(data: dict[str, Any], pool_name: str, pool_group: str) -> bool:
    """Whether the EPP of ``pool_group/pool_name`` owns this objective's status.

    Objectives naming our pool with our group, or naming it with something that is no
    InferencePool at all. One naming an InferencePool of the *other* API group belongs to
    whichever EPP serves that pool, so we leave it alone rather than fight over it.
    """
    group, kind, name = pool_ref(data)
    if name != pool_name:
        return False
    return group == pool_group or kind != POOL_KIND or group not in POOL_GROUPS


def serves(data: dict[str, Any], pool_name: str, pool_group: str) -> bool:
    """Whether this objective belongs in the datastore: its poolRef is exactly our pool."""
    return pool_ref(data) == (pool_group, POOL_KIND, pool_name)


def desired(
    data: dict[str, Any], *, pool_name: str, pool_group: str, pool_exists: bool, namespace: str
) -> Desired:
    group, kind, name = pool_ref(data)
    generation = (data.get("metadata") or {}).get("generation")
    if kind != POOL_KIND or group != pool_group:
        return Desired(
            "False",
            REASON_INVALID_POOL_REF,
            f"poolRef {group}/{kind} {name!r} is not an InferencePool: expected group "
            f"{pool_group!r} and kind {POOL_KIND!r}",
            generation,
        )
    if not pool_exists:
        return Desired(
            "False",
            REASON_POOL_NOT_FOUND,
            f"InferencePool {name!r} not found in namespace {namespace!r}",
            generation,
        )
    return Desired(
        "True",
        REASON_ACCEPTED,
        f"Accepted by the endpoint picker of InferencePool {namespace}/{name}",
        generation,
    )


def current(data: dict[str, Any]) -> dict[str, Any] | None:
    for cond in (data.get("status") or {}).get("conditions") or ():
        if cond.get("type") == ACCEPTED:
            return dict(cond)
    return None


def needs_write(data: dict[str, Any], want: Desired) -> bool:
    """True when the stored Accepted condition differs from ``want`` in anything but time."""
    have = current(data)
    if have is None:
        return True
    return (
        have.get("status"),
        have.get("reason"),
        have.get("message"),
        have.get("observedGeneration"),
    ) != (want.status, want.reason, want.message, want.observed_generation)


def patch_body(data: dict[str, Any], want: Desired, now: datetime | None = None) -> dict[str, Any]:
    """A merge patch for the status subresource, guarded by the object's resourceVersion.

    ``lastTransitionTime`` moves only when the status value changes, as the condition
    convention asks. The resourceVersion makes a concurrent writer's change a 409 instead of
    a silent overwrite; the next watch event brings the new object and a fresh decision.
    """
    have = current(data)
    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    if have is not None and have.get("status") == want.status and have.get("lastTransitionTime"):
        stamp = have["lastTransitionTime"]
    cond: dict[str, Any] = {
        "type": ACCEPTED,
        "status": want.status,
        "reason": want.reason,
        "message": want.message,
        "lastTransitionTime": stamp,
    }
    if want.observed_generation is not None:
        cond["observedGeneration"] = want.observed_generation
    others = [
        c
        for c in (data.get("status") or {}).get("conditions") or ()
        if c.get("type") != ACCEPTED and (c.get("type"), c.get("reason")) != _PLACEHOLDER
    ]
    meta = data.get("metadata") or {}
    return {
        "metadata": {"resourceVersion": meta.get("resourceVersion")},
        "status": {"conditions": [*others, cond]},
    }
