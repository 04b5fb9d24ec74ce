"""Fill the datastore from manifest files plus a static endpoint list, and follow edits.

For runs without Kubernetes: the same InferencePool / InferenceObjective YAML a user would
``kubectl apply`` is read from disk, and endpoints come from a list (``name=host:port`` or just
``host:port``, optionally followed by ``;key=value`` labels) and from any Pods the manifests
hold (selected by the pool's selector, as in a cluster). :meth:`FileSource.run` polls the
files' modification stamps and reloads on change. An invalid edit is reported (logged and kept
in :attr:`FileSource.errors`) and the last good state stays in force, so a typo never empties a
running pool. A file with no documents left (emptied, or cut short by a truncated write) and a
reload that would drop the pool are reported the same way: they once cleared the pool silently,
and ``critical`` requests fell to priority 0. Each applied reload logs one INFO line saying
what changed.

Parsing happens off the event loop (``asyncio.to_thread``); writes to the datastore happen on it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from endpoint_picker.api.manifests import ManifestError, ManifestSet, load_manifests
from endpoint_picker.api.objective import InferenceObjective
from endpoint_picker.api.pod import ManifestPod
from endpoint_picker.api.pool import POOL_GROUP, InferencePool
from endpoint_picker.api.rewrite import InferenceModelRewrite
from endpoint_picker.datastore import Datastore, Pod
from endpoint_picker.errors import ConfigError

log = logging.getLogger(__name__)

Stamp = tuple[int, int, int] | None  # (mtime_ns, size, inode), None when the file is missing


def parse_endpoint(text: str) -> tuple[str, tuple[str, int]]:
    """``"[name=]host:port[;key=value...]"`` -> ``(name, (host, port))``; IPv6 hosts go in
    brackets; labels after ``;`` are read by :func:`parse_endpoint_labels`.

    Without a name the endpoint is named by its ``host:port``.
    """
    text = text.split(";", 1)[0]
    name, sep, hostport = text.strip().rpartition("=")
    if not sep:
        name, hostport = "", text.strip()
    host, colon, port_text = hostport.rpartition(":")
    if not colon or not host:
        raise ConfigError(f"endpoint {text!r} must be [name=]host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ConfigError(f"endpoint {text!r}: write an IPv6 address in brackets, [::1]:8000")
    try:
        port = int(port_text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise ConfigError(f"endpoint {text!r}: port must be an integer in 1-65535")
    return name or hostport, (host, port)


def parse_endpoints(texts: Iterable[str]) -> dict[str, tuple[str, int]]:
    """Several endpoint strings (each may hold a comma-separated list); names must be unique."""
    out: dict[str, tuple[str, int]] = {}
    for text in texts:
        for item in filter(None, (part.strip() for part in text.split(","))):
            name, target = parse_endpoint(item)
            if name in out:
                raise ConfigError(f"endpoint name {name!r} is given twice")
            out[name] = target
    return out


def parse_endpoint_labels(texts: Iterable[str]) -> dict[str, dict[str, str]]:
    """The labels of endpoint strings that carry any: ``p0=10.0.0.1:8000;llm-d.ai/role=prefill``
    (several labels separated by ``;``), keyed by endpoint name, so a run without pods can
    give endpoints the roles the P/D filters select by."""
    out: dict[str, dict[str, str]] = {}
    for text in texts:
        for item in filter(None, (part.strip() for part in text.split(","))):
            head, _, rest = item.partition(";")
            if not rest:
                continue
            labels: dict[str, str] = {}
            for pair in filter(None, (p.strip() for p in rest.split(";"))):
                key, eq, value = pair.partition("=")
                if not eq or not key.strip():
                    raise ConfigError(f"endpoint {item!r}: label {pair!r} must be key=value")
                labels[key.strip()] = value.strip()
            out[parse_endpoint(head)[0]] = labels
    return out


def _stamp(path: Path) -> Stamp:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


class FileSource:
    """Keeps a :class:`Datastore` in step with manifest files and a static endpoint list."""

    def __init__(
        self,
        datastore: Datastore,
        manifests: Sequence[str | os.PathLike[str]],
        endpoints: Mapping[str, tuple[str, int]] | Iterable[str] = (),
        *,
        pool_name: str | None = None,
        poll_interval: float = 1.0,
    ) -> None:
        self.datastore = datastore
        self.paths = [Path(p) for p in manifests]
        self.labels: dict[str, dict[str, str]] = {}
        if isinstance(endpoints, Mapping):
            self.endpoints = dict(endpoints)
        else:
            texts = list(endpoints)
            self.endpoints = parse_endpoints(texts)
            self.labels = parse_endpoint_labels(texts)
        self.pool_name = pool_name
        self.poll_interval = poll_interval
        self.errors: list[ManifestError | ConfigError] = []
        """Problems of the latest load attempt (empty after a good one)."""
        self.loads = 0
        """How many loads were applied (good ones only)."""
        self._stamps: list[Stamp] = []
        self._stopped = asyncio.Event()

    # -- one load ----------------------------------------------------------------------------------
    def load(self) -> bool:
        """Read the files now and apply them; False (state untouched) when they are invalid."""
        stamps = [_stamp(p) for p in self.paths]
        return self._apply(*_read(self.paths), stamps)

    def load_or_raise(self) -> None:
        """Start-up load: invalid files raise one :class:`ConfigError` listing every problem."""
        if not self.load():
            raise ConfigError("\n".join(str(e) for e in self.errors))

    async def check(self) -> bool:
        """Reload if any file changed since the last attempt; True when a reload was applied."""
        stamps = [_stamp(p) for p in self.paths]
        if stamps == self._stamps:
            return False
        result, empty = await asyncio.to_thread(_read, self.paths)
        return self._apply(result, empty, stamps)

    # -- following edits ---------------------------------------------------------------------------
    async def run(self) -> None:
        """Poll the files every ``poll_interval`` seconds until :meth:`stop`."""
        self._stopped.clear()
        while not self._stopped.is_set():
            try:
                await asyncio.wait_for(self._stopped.wait(), self.poll_interval)
            except TimeoutError:
                pass
            if not self._stopped.is_set():
                await self.check()

    def stop(self) -> None:
        self._stopped.set()

    # -- applying ----------------------------------------------------------------------------------
    def _apply(self, result: ManifestSet, empty: list[Path], stamps: list[Stamp]) -> bool:
        self._stamps = stamps  # an invalid version is reported once, not on every poll
        errors: list[ManifestError | ConfigError] = list(result.errors)
        for warning in result.warnings:
            log.warning("manifest: %s", warning)
        errors += [
            ConfigError(f"{p}: the file has no documents (emptied, or a truncated write?)")
            for p in empty
        ]
        pool: InferencePool | None = None
        if not errors:
            try:
                pool = self._pick_pool(result.pools)
            except ConfigError as err:
                errors.append(err)
        if not errors and pool is None and self.datastore.pool is not None:
            errors.append(
                ConfigError("no InferencePool in the manifests any more (a truncated write?)")
            )
        if errors:
            self.errors = errors
            for problem in errors:
                log.error("manifest error, keeping the last good state: %s", problem)
            return False
        self.errors = []
        changes = self._write(pool, result.objectives)
        self._write_pods(result.pods)
        self._write_rewrites(pool, result.rewrites)
        self.loads += 1
        log.info("manifests %s: %s", "reloaded" if self.loads > 1 else "loaded", changes)
        return True

    def _pick_pool(self, pools: list[InferencePool]) -> InferencePool | None:
        if self.pool_name is not None:
            named = [p for p in pools if p.metadata.name == self.pool_name]
            if not named:
                raise ConfigError(f"no InferencePool named {self.pool_name!r} in the manifests")
            if len(named) > 1:
                raise ConfigError(
                    f"InferencePool {self.pool_name!r} is defined in several namespaces"
                )
            return named[0]
        if len(pools) > 1:
            names = ", ".join(p.metadata.name for p in pools)
            raise ConfigError(f"several InferencePools ({names}); choose one with pool_name")
        return pools[0] if pools else None

    def _write(self, pool: InferencePool | None, objectives: list[InferenceObjective]) -> str:
        """Apply; returns what changed, in words, for the log."""
        ds = self.datastore
        said: list[str] = []
        if pool is None:
            if ds.pool is not None:
                ds.clear()
                said.append("pool removed")
        elif ds.pool != pool:
            said.append(f"pool {pool.metadata.name} {'set' if ds.pool is None else 'changed'}")
            ds.set_pool(pool)
        # Only objectives that point at our pool, as upstream's reconciler filters them.
        wanted = {o.metadata.name: o for o in objectives if pool is None or _refers_to(o, pool)}
        removed: list[str] = []
        added: list[str] = []
        changed: list[str] = []
        for obj in ds.objectives():
            if obj.metadata.name not in wanted:
                ds.delete_objective(obj.metadata.name)
                removed.append(obj.metadata.name)
        for name, obj in wanted.items():
            old = ds.objective(name)
            if old != obj:
                (added if old is None else changed).append(name)
                ds.set_objective(obj)
        for verb, names in (("added", added), ("changed", changed), ("removed", removed)):
            if names:
                said.append(f"objectives {verb}: {', '.join(sorted(names))}")
        ds.set_static_endpoints(self.endpoints, self.labels)
        return "; ".join(said) or "no change"

    def _write_pods(self, pods: list[ManifestPod]) -> None:
        """Pods given in the manifests: the pool's selector and target ports make them
        endpoints, with their labels, as a cluster's pods would be."""
        self.datastore.replace_pods(
            Pod(
                name=p.metadata.name,
                ip=p.status.pod_ip,
                namespace=p.metadata.namespace,
                labels=dict(p.metadata.labels),
                annotations=dict(p.metadata.annotations),
                ready=p.ready,
            )
            for p in pods
        )

    def _write_rewrites(
        self, pool: InferencePool | None, rewrites: list[InferenceModelRewrite]
    ) -> None:
        """InferenceModelRewrites whose poolRef is our pool, as upstream's reconciler keeps."""
        ds = self.datastore
        wanted = {r.metadata.name: r for r in rewrites if pool is None or _refers_to(r, pool)}
        for old in ds.rewrites.all():
            if old.metadata.name not in wanted:
                ds.delete_rewrite(old.metadata.name)
        for name, rw in wanted.items():
            if ds.rewrites.get(name) != rw:
                ds.set_rewrite(rw)


def _refers_to(objective: InferenceObjective | InferenceModelRewrite, pool: InferencePool) -> bool:
    ref = objective.spec.pool_ref
    return (
        ref.name == pool.metadata.name
        and ref.group == POOL_GROUP
        and ref.kind == InferencePool.KIND
        and objective.metadata.namespace == pool.metadata.namespace
    )


def _read(paths: Sequence[Path]) -> tuple[ManifestSet, list[Path]]:
    """The manifests, and the files among them that hold no YAML document at all."""
    return load_manifests(paths), [p for p in paths if _has_no_documents(p)]


def _has_no_documents(path: Path) -> bool:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False  # load_manifests reports it
    lines = (line.strip() for line in text.splitlines())
    return all(not line or line.startswith("#") or line in ("---", "...") for line in lines)
