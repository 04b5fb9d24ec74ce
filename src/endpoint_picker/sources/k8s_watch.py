"""List-then-watch of one resource kind that never misses a delete.

The loop is client-go's reflector, cut to what the EPP needs:

* **list** the objects and hand the *whole* set to ``on_replace``: the consumer reconciles it
  against what it holds, so an object deleted while we were not watching disappears too (the
  failure of field notes #24: a watch restarted "from now" never hears of deletes in the gap);
* **watch** from the list's resourceVersion with bookmarks on; when the server ends the stream
  cleanly (its ``timeoutSeconds``), lightkube re-opens it from the last resourceVersion seen
  (an event's or a bookmark's), so nothing is replayed and nothing is skipped;
* on ``410 Gone`` (the version fell out of the server's window) re-list at once; on any other
  error or dropped connection re-list after an exponential back-off. A re-list is one cheap
  request for the few objects of one pool, and it is the only state that is certainly right.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping
from typing import Any

import httpx2
from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError

log = logging.getLogger(__name__)

OnReplace = Callable[[list[Any]], None]
OnEvent = Callable[[str, Any], None]


def status_code(err: BaseException) -> int | None:
    """The HTTP status carried by a lightkube/httpx error, if any."""
    if isinstance(err, ApiError) and err.status is not None and err.status.code:
        return int(err.status.code)
    if isinstance(err, httpx2.HTTPStatusError) and err.response is not None:
        return err.response.status_code
    return None


class Backoff:
    """Exponential back-off with jitter: ``initial`` doubling up to ``maximum`` seconds."""

    def __init__(self, initial: float = 0.5, maximum: float = 30.0) -> None:
        self.initial, self.maximum = initial, maximum
        self._next = initial

    def reset(self) -> None:
        self._next = self.initial

    def next(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.maximum)
        return delay * random.uniform(0.8, 1.0)


class Reflector:
    """Keeps a consumer in step with one resource kind in one namespace (see module doc)."""

    def __init__(
        self,
        client: AsyncClient,
        resource: type[Any],
        *,
        namespace: str,
        on_replace: OnReplace,
        on_event: OnEvent,
        labels: Mapping[str, str] | None = None,
        fields: Mapping[str, str] | None = None,
        server_timeout: int = 300,
        backoff: Backoff | None = None,
        name: str = "",
    ) -> None:
        self._client = client
        self._resource = resource
        self._namespace = namespace
        self._on_replace, self._on_event = on_replace, on_event
        self._labels: dict[str, Any] = dict(labels or {})
        self._fields: dict[str, Any] = dict(fields or {})
        self._server_timeout = server_timeout
        self._backoff = backoff or Backoff()
        self.name = name or resource.__name__
        self.synced = asyncio.Event()  # set after the first successful list
        self.lists = 0  # how many (re-)lists ran: observable for tests and debugging
        self.resource_version: str | None = None
        self._warned: int | None = None

    async def run(self) -> None:
        """List and watch until cancelled."""
        while True:
            try:
                await self._list()
                await self._watch()
            except asyncio.CancelledError:
                raise
            except Exception as err:
                code = status_code(err)
                if code == 410:
                    log.info("%s: resourceVersion too old (410 Gone); re-listing", self.name)
                    continue
                if code != self._warned:  # one warning per kind of failure, not one per retry
                    log.warning("%s: watch failed (%s); re-listing after back-off", self.name, err)
                    self._warned = code
                await asyncio.sleep(self._backoff.next())

    async def _list(self) -> None:
        items = self._client.list(
            self._resource,
            namespace=self._namespace,
            labels=self._labels or None,
            fields=self._fields or None,
        )
        objs = [obj async for obj in items]
        self.resource_version = items.resourceVersion
        self.lists += 1
        self._on_replace(objs)
        self._backoff.reset()
        self._warned = None
        self.synced.set()

    async def _watch(self) -> None:
        # lightkube's public ``watch`` cannot ask for bookmarks, so build the request with the
        # same client's request builder and add ``allowWatchBookmarks``.
        generic = self._client._client
        params: dict[str, Any] = {
            "timeoutSeconds": self._server_timeout,
            "resourceVersion": self.resource_version,
            "allowWatchBookmarks": "true",
            "labelSelector": _selector(self._labels),
            "fieldSelector": _selector(self._fields),
        }
        request = generic.prepare_request(
            "list", res=self._resource, namespace=self._namespace, watch=True, params=params
        )
        async for kind, obj in generic.watch(request):
            meta = obj.metadata
            if meta is not None and meta.resourceVersion:
                self.resource_version = meta.resourceVersion
            if kind == "BOOKMARK":
                continue
            self._on_event(kind, obj)


def _selector(pairs: Mapping[str, str]) -> str | None:
    return ",".join(f"{k}={v}" for k, v in pairs.items()) if pairs else None
