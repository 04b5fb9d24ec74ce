"""The pool's alpha objects from the API: InferenceObjectives and InferenceModelRewrites.

Both kinds work alike, as upstream's two reconcilers do: every object of the namespace is
remembered; those whose poolRef is exactly our pool go to the datastore; those naming our pool
get an ``Accepted`` condition (:mod:`.k8s_status`), written by the source's leader-only writer.
:class:`AlphaKind` is that logic once, for one kind, so the source holds two of them.

Which API group is watched comes from discovery, as llm-d-router does it: ``llm-d.ai/v1alpha2``
when the API server serves the kind there, else ``inference.networking.x-k8s.io/v1alpha2`` (GIE),
else the kind is not watched at all (its CRD is not installed).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from lightkube import AsyncClient
from lightkube.generic_resource import GenericNamespacedResource, create_namespaced_resource
from lightkube.types import PatchType
from pydantic import BaseModel, ValidationError

from endpoint_picker.sources import k8s_status as st
from endpoint_picker.sources.k8s_resources import as_dict, is_deleting, trimmed
from endpoint_picker.sources.k8s_watch import status_code

log = logging.getLogger(__name__)

ALPHA_GROUPS = ("llm-d.ai", "inference.networking.x-k8s.io")  # discovery's order of preference
ALPHA_VERSION = "v1alpha2"
PLURALS = {
    "InferenceObjective": "inferenceobjectives",
    "InferenceModelRewrite": "inferencemodelrewrites",
}


def alpha_resource(group: str, kind: str) -> type[GenericNamespacedResource]:
    return create_namespaced_resource(group, ALPHA_VERSION, kind, PLURALS[kind])


async def discover_group(client: AsyncClient, kind: str, namespace: str) -> str | None:
    """The first group of :data:`ALPHA_GROUPS` whose API serves ``kind`` (a one-item list
    answers it: 404 means not served), or None when neither does."""
    for group in ALPHA_GROUPS:
        try:
            async for _ in client.list(
                alpha_resource(group, kind), namespace=namespace, chunk_size=1
            ):
                break
        except Exception as err:
            if status_code(err) == 404:
                continue
            raise
        return group
    return None


class AlphaKind:
    """One kind's objects of the namespace, what went to the datastore, what needs status."""

    def __init__(
        self,
        kind: str,
        group: str,
        model: type[BaseModel],
        *,
        put: Callable[[Any], None],
        drop: Callable[[str], None],
        ours: Callable[[dict[str, Any]], tuple[bool, bool]],
        pool_present: Callable[[], bool],
        wake: Callable[[], None],
    ) -> None:
        self.kind, self.group, self.model = kind, group, model
        self.resource = alpha_resource(group, kind)
        self._put, self._drop, self._ours = put, drop, ours
        self._pool_present, self._wake = pool_present, wake
        self.objects: dict[str, dict[str, Any]] = {}  # every object of the namespace
        self.served: set[str] = set()  # names we put in the datastore
        self.dirty: set[str] = set()  # names whose status may need a write

    def replace(self, items: list[Any]) -> None:
        fresh = {d["metadata"]["name"]: d for d in map(as_dict, items)}
        for name in [n for n in self.objects if n not in fresh]:
            self.removed(name)
        for data in fresh.values():
            self.seen(data)

    def event(self, kind: str, obj: Any) -> None:
        data = as_dict(obj)
        if kind == "DELETED" or is_deleting(data):
            self.removed(data["metadata"]["name"])
        else:
            self.seen(data)

    def seen(self, data: dict[str, Any]) -> None:
        name = data["metadata"]["name"]
        self.objects[name] = data
        serves, concerns = self._ours(data)
        if serves:
            self.push(data)
        elif name in self.served:
            self.served.discard(name)
            self._drop(name)
        if concerns:
            self.dirty.add(name)
            self._wake()

    def push(self, data: dict[str, Any]) -> None:
        name = data["metadata"]["name"]
        try:
            obj = self.model.model_validate(trimmed(data))
        except ValidationError as err:
            log.error("%s %s is invalid, ignored: %s", self.kind, name, err)
            return
        self.served.add(name)
        if self._pool_present():
            self._put(obj)

    def repush(self) -> None:
        """The pool is back: ``Datastore.clear`` dropped what we had put there."""
        for name in sorted(self.served):
            self.push(self.objects[name])

    def removed(self, name: str) -> None:
        self.objects.pop(name, None)
        self.dirty.discard(name)
        if name in self.served:
            self.served.discard(name)
            self._drop(name)

    def mark_all_dirty(self) -> None:
        self.dirty.update(n for n, d in self.objects.items() if self._ours(d)[1])

    async def write_status(
        self, client: AsyncClient, data: dict[str, Any], want: st.Desired, namespace: str
    ) -> bool:
        """Patch the Accepted condition; False (and dirty again) on a failure worth a retry."""
        name = data["metadata"]["name"]
        try:
            updated = await client.patch(
                self.resource.Status,
                name,
                st.patch_body(data, want),
                namespace=namespace,
                patch_type=PatchType.MERGE,
            )
        except Exception as err:
            if status_code(err) in (404, 409):
                return True  # gone or changed meanwhile: its next watch event decides again
            log.warning("writing status of %s %s/%s failed: %s", self.kind, namespace, name, err)
            self.dirty.add(name)
            return False
        if name in self.objects:
            self.objects[name] = as_dict(updated)  # so a re-check before the event is a no-op
        log.info("%s %s/%s: Accepted=%s (%s)", self.kind, namespace, name, want.status, want.reason)
        return True
