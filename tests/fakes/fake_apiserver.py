"""A FAKE Kubernetes API server for tests: aiohttp on 127.0.0.1, no real cluster behind it.

CI has no API server, so the Kubernetes source is tested against this stand-in. It speaks the
parts of the API server's HTTP protocol the EPP uses, the way the real one does:

* ``list`` with label/field selectors and a list ``resourceVersion``; ``get``, ``create``
  (POST), ``update`` (PUT, 409 on a stale resourceVersion), merge ``patch`` of an object or
  its ``status`` subresource (the status subresource changes only status, the main resource
  never does; ``metadata.generation`` moves on spec changes) and ``delete``;
* ``watch`` from a resourceVersion: replays the events after it, then streams new ones; an
  object that starts/stops matching a label selector arrives as ADDED/DELETED; ``410 Gone``
  (an ERROR event with a Status, as the real server sends it) when the version was compacted;
  bookmarks when asked for; ``timeoutSeconds`` ends the stream cleanly.

Test controls the real server does not have: :meth:`compact` (forget history, so old versions
get 410), :meth:`drop_watches` (cut watch connections mid-stream), :meth:`end_watches` (end
them cleanly), :meth:`bookmark`, :meth:`put_direct` (change an object behind the watchers'
backs: it is still recorded, but not streamed until the next watch) and :attr:`requests`
(every call as ``(verb, group, resource)``, for the RBAC test).
"""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

Key = tuple[str, str, str, str]  # (group, plural, namespace, name)
_CORE_KINDS = {"pods": "Pod"}
_WATCH_TICK = 0.05


@dataclass
class _Event:
    rv: int
    group: str
    plural: str
    namespace: str
    type: str
    obj: dict[str, Any]
    old: dict[str, Any] | None


@dataclass
class _Watcher:
    group: str
    plural: str
    namespace: str
    match: Callable[[dict[str, Any]], bool]
    bookmarks: bool
    queue: asyncio.Queue[_Event | str] = field(default_factory=asyncio.Queue)


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def _error(code: int, reason: str, message: str) -> web.Response:
    return web.json_response(_status(code, reason, message), status=code)


def _merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merge(out.get(key), value)
    return out


def _selector(text: str | None) -> dict[str, str]:
    return dict(p.split("=", 1) for p in text.split(",")) if text else {}


class FakeApiServer:
    """See module doc. ``async with FakeApiServer() as api: api.url ...``."""

    def __init__(self) -> None:
        self.objects: dict[Key, dict[str, Any]] = {}
        self.events: list[_Event] = []
        self.rv = 1000
        self.compacted_below = 0
        self.requests: list[tuple[str, str, str, str]] = []  # (token, verb, group, resource)
        self.watch_requests: list[dict[str, str]] = []
        self.refuse: Callable[[str, str, str, dict[str, Any] | None], int | None] | None = None
        self._watchers: list[_Watcher] = []
        self._streams: set[web.StreamResponse] = set()
        self._runner: web.AppRunner | None = None
        self.url = ""

    # -- lifecycle --
    async def __aenter__(self) -> FakeApiServer:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        for w in self._watchers:
            w.queue.put_nowait("end")
        if self._runner is not None:
            await self._runner.cleanup()

    def kubeconfig(self, namespace: str = "default", token: str = "admin") -> dict[str, Any]:
        """A kubeconfig dict pointing at this fake (for ``KubeConfig.from_dict``); the bearer
        token names the caller in :attr:`requests`."""
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": token}}],
            "contexts": [
                {
                    "name": "fake",
                    "context": {"cluster": "fake", "user": "fake", "namespace": namespace},
                }
            ],
        }

    # -- test controls --
    def compact(self) -> None:
        """Forget history: a watch from any version older than the current one gets 410 Gone."""
        self.compacted_below = self.rv
        self.events.clear()

    def drop_watches(self) -> None:
        """Cut every open watch connection mid-stream (the client sees a broken body)."""
        for w in self._watchers:
            w.queue.put_nowait("drop")

    def end_watches(self) -> None:
        """End every open watch cleanly, as the server's timeoutSeconds would."""
        for w in self._watchers:
            w.queue.put_nowait("end")

    def bookmark(self) -> None:
        for w in self._watchers:
            if w.bookmarks:
                w.queue.put_nowait("bookmark")

    def put_direct(self, obj: dict[str, Any], *, deleted: bool = False) -> None:
        """Store (or delete) an object without telling open watches: as if their events were
        lost with a dropped connection. Later watches from an older version still replay it."""
        group, plural = self._kind_of(obj)
        meta = obj["metadata"]
        key = (group, plural, meta.get("namespace", "default"), meta["name"])
        self._commit(key, None if deleted else obj, notify=False)

    @property
    def open_watches(self) -> int:
        """Watches currently streaming (registered for live events)."""
        return len(self._watchers)

    def count(self, verb: str, resource: str, token: str = "epp") -> int:
        return sum(1 for t, v, _, r in self.requests if (t, v, r) == (token, verb, resource))

    def used(self, token: str = "epp") -> set[tuple[str, str, str]]:
        """(verb, group, resource) of every request made with ``token``."""
        return {(v, g, r) for t, v, g, r in self.requests if t == token}

    def get(self, plural: str, name: str, namespace: str = "default") -> dict[str, Any] | None:
        for (_, p, ns, n), obj in self.objects.items():
            if (p, ns, n) == (plural, namespace, name):
                return obj
        return None

    # -- storage --
    @staticmethod
    def _kind_of(obj: dict[str, Any]) -> tuple[str, str]:
        api_version: str = obj["apiVersion"]
        group = api_version.rpartition("/")[0]
        kind: str = obj["kind"]
        plural = {v: k for k, v in _CORE_KINDS.items()}.get(kind, kind.lower() + "s")
        return group, plural

    def _commit(self, key: Key, obj: dict[str, Any] | None, *, notify: bool = True) -> None:
        old = self.objects.get(key)
        self.rv += 1
        if obj is None:
            if old is None:
                return
            del self.objects[key]
            gone = copy.deepcopy(old)
            gone["metadata"]["resourceVersion"] = str(self.rv)
            event = _Event(self.rv, key[0], key[1], key[2], "DELETED", gone, old)
        else:
            obj = copy.deepcopy(obj)
            meta = obj.setdefault("metadata", {})
            meta["resourceVersion"] = str(self.rv)
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("namespace", key[2])
            meta.setdefault("creationTimestamp", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
            if key[1] != "pods" and key[0] != "coordination.k8s.io":
                gen = (old or {}).get("metadata", {}).get("generation", 0)
                changed = old is None or old.get("spec") != obj.get("spec")
                meta["generation"] = gen + 1 if changed else gen
            self.objects[key] = obj
            event = _Event(
                self.rv, key[0], key[1], key[2], "MODIFIED" if old else "ADDED", obj, old
            )
        self.events.append(event)
        if notify:
            for w in self._watchers:
                if (w.group, w.plural, w.namespace) == key[:3]:
                    w.queue.put_nowait(event)

    # -- HTTP --
    def _route(self, path: str) -> tuple[str, str, str, str | None, str | None] | None:
        """(group, version, namespace, plural, name/subresource...) from a request path."""
        parts = [p for p in path.split("/") if p]
        if parts[:2] == ["api", "v1"]:
            group, rest = "", parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            group, rest = parts[1], parts[3:]
        else:
            return None
        if len(rest) < 3 or rest[0] != "namespaces":
            return None
        namespace, plural = rest[1], rest[2]
        name = rest[3] if len(rest) > 3 else None
        sub = rest[4] if len(rest) > 4 else None
        return group, namespace, plural, name, sub

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        route = self._route(request.path)
        if route is None:
            return _error(404, "NotFound", f"the server could not find {request.path}")
        group, namespace, plural, name, sub = route
        resource = f"{plural}/{sub}" if sub else plural
        q = request.query
        verb = {
            "GET": "watch" if q.get("watch") == "true" else ("get" if name else "list"),
            "POST": "create",
            "PUT": "update",
            "PATCH": "patch",
            "DELETE": "delete",
        }[request.method]
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        self.requests.append((token, verb, group, resource))
        body = await request.json() if request.can_read_body else None
        if self.refuse is not None and (code := self.refuse(verb, resource, name or "", body)):
            return _error(code, "Refused", f"refused by the test ({verb} {resource})")
        key: Key = (group, plural, namespace, name or "")
        if verb == "list":
            return self._list(group, plural, namespace, q)
        if verb == "watch":
            return await self._watch(request, group, plural, namespace, q)
        if verb == "create":
            assert body is not None
            key = (group, plural, namespace, body["metadata"]["name"])
            if key in self.objects:
                return _error(409, "AlreadyExists", f'{plural} "{key[3]}" already exists')
            if plural != "leases":
                body.pop("status", None)  # status is the controllers' part, set via /status
            self._commit(key, body)
            return web.json_response(self.objects[key], status=201)
        obj = self.objects.get(key)
        if obj is None:
            return _error(404, "NotFound", f'{plural} "{name}" not found')
        if verb == "get":
            return web.json_response(obj)
        if verb == "delete":
            self._commit(key, None)
            return web.json_response(_status(200, "", "") | {"status": "Success"})
        assert body is not None
        want_rv = (body.get("metadata") or {}).get("resourceVersion")
        if want_rv and want_rv != obj["metadata"]["resourceVersion"]:
            return _error(
                409,
                "Conflict",
                "the object has been modified; please apply your "
                "changes to the latest version and try again",
            )
        new = body if verb == "update" else _merge(obj, body)
        new["metadata"] = obj["metadata"] | {
            k: v for k, v in (new.get("metadata") or {}).items() if k in ("labels", "annotations")
        }
        if sub == "status":  # the status subresource changes status only
            new = obj | {"status": new.get("status")}
        elif plural != "leases":
            new["status"] = obj.get("status")  # ...and the main resource never does
        self._commit(key, {k: v for k, v in new.items() if v is not None})
        return web.json_response(self.objects[key])

    def _matcher(self, q: Any) -> Callable[[dict[str, Any]], bool]:
        labels, fields = _selector(q.get("labelSelector")), _selector(q.get("fieldSelector"))

        def match(obj: dict[str, Any]) -> bool:
            meta = obj.get("metadata") or {}
            have = meta.get("labels") or {}
            if any(have.get(k) != v for k, v in labels.items()):
                return False
            return all(k != "metadata.name" or meta.get("name") == v for k, v in fields.items())

        return match

    def _list(self, group: str, plural: str, namespace: str, q: Any) -> web.Response:
        match = self._matcher(q)
        items = [
            o
            for (g, p, ns, _), o in sorted(self.objects.items())
            if (g, p, ns) == (group, plural, namespace) and match(o)
        ]
        kind = _CORE_KINDS.get(plural, plural[:-1].capitalize())
        return web.json_response(
            {
                "kind": f"{kind}List",
                "apiVersion": f"{group}/v1" if group else "v1",
                "metadata": {"resourceVersion": str(self.rv)},
                "items": items,
            }
        )

    async def _watch(
        self, request: web.Request, group: str, plural: str, namespace: str, q: Any
    ) -> web.StreamResponse:
        self.watch_requests.append(dict(q))
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        watcher = _Watcher(
            group, plural, namespace, self._matcher(q), q.get("allowWatchBookmarks") == "true"
        )
        since = q.get("resourceVersion")
        if since and int(since) < self.compacted_below:
            gone = _status(
                410, "Expired", f"too old resource version: {since} ({self.compacted_below})"
            )
            await resp.write(json.dumps({"type": "ERROR", "object": gone}).encode() + b"\n")
            await resp.write_eof()
            return resp
        if since:
            backlog = [
                e
                for e in self.events
                if e.rv > int(since)
                and (e.group, e.plural, e.namespace) == (group, plural, namespace)
            ]
        else:  # "from now": synthetic ADDED for what exists, as the real server does
            backlog = [
                _Event(self.rv, group, plural, namespace, "ADDED", o, None)
                for (g, p, ns, _), o in self.objects.items()
                if (g, p, ns) == (group, plural, namespace)
            ]
        for event in backlog:
            watcher.queue.put_nowait(event)
        self._watchers.append(watcher)
        deadline = asyncio.get_running_loop().time() + float(q.get("timeoutSeconds") or 1800)
        try:
            while asyncio.get_running_loop().time() < deadline:
                try:
                    item = await asyncio.wait_for(watcher.queue.get(), _WATCH_TICK * 20)
                except TimeoutError:
                    continue
                if item == "end":
                    break
                if item == "drop":
                    assert request.transport is not None
                    request.transport.abort()
                    return resp
                line: dict[str, Any] | None
                if item == "bookmark":
                    line = {
                        "type": "BOOKMARK",
                        "object": {
                            "kind": _CORE_KINDS.get(plural, plural[:-1].capitalize()),
                            "apiVersion": "v1",
                            "metadata": {"resourceVersion": str(self.rv)},
                        },
                    }
                else:
                    assert isinstance(item, _Event)
                    line = self._event_line(item, watcher)
                    if line is None:
                        continue
                await resp.write(json.dumps(line).encode() + b"\n")
            await resp.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._watchers.remove(watcher)
        return resp

    @staticmethod
    def _event_line(event: _Event, watcher: _Watcher) -> dict[str, Any] | None:
        now = watcher.match(event.obj) if event.type != "DELETED" else False
        before = event.old is not None and watcher.match(event.old)
        if event.type == "DELETED":
            kind = "DELETED" if before else None
        elif now:
            kind = "MODIFIED" if before else "ADDED"
        else:
            kind = "DELETED" if before else None  # stopped matching the selector
        return {"type": kind, "object": event.obj} if kind else None
