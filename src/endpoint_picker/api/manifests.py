"""Loading the files a user would ``kubectl apply`` (multi-document YAML or JSON) into objects.

Every problem becomes a :class:`ManifestError` that names the file, the document (1-based), the
object (kind/name) and the field path with a reason, e.g.
``pool.yaml: document 2 (InferenceObjective/chat): spec.poolRef.group: must match ^$|...``.
Nothing here raises a traceback at a user: syntax errors, unknown kinds, wrong types, unknown
fields and duplicates are all reported the same way, and loading carries on to report them all.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from endpoint_picker.api.errors import describe
from endpoint_picker.api.objective import InferenceObjective, LlmdInferenceObjective
from endpoint_picker.api.pod import ManifestPod
from endpoint_picker.api.pool import InferencePool
from endpoint_picker.api.rewrite import InferenceModelRewrite, LlmdInferenceModelRewrite
from endpoint_picker.api.types import Resource
from endpoint_picker.errors import ConfigError
from endpoint_picker.validation import field_path

ApiObject = InferencePool | InferenceObjective | InferenceModelRewrite | ManifestPod
# kind -> the models that serve it, one per apiVersion (x-k8s.io and llm-d.ai for the alphas).
KINDS: dict[str, tuple[type[Resource], ...]] = {
    InferencePool.KIND: (InferencePool,),
    InferenceObjective.KIND: (InferenceObjective, LlmdInferenceObjective),
    InferenceModelRewrite.KIND: (InferenceModelRewrite, LlmdInferenceModelRewrite),
    ManifestPod.KIND: (ManifestPod,),  # pool members with their labels, for runs without pods
}


class ManifestError(ConfigError):
    """One problem in one document: where it is (file, document, object, field) and why."""

    def __init__(
        self,
        reason: str,
        *,
        file: str | None = None,
        path: str | None = None,
        index: int | None = None,
        kind: str | None = None,
        name: str | None = None,
    ) -> None:
        self.index, self.kind, self.name = index, kind, name
        super().__init__(reason, file=file, path=path)

    def __str__(self) -> str:
        parts = [self.file or "<input>"]
        if self.index is not None:
            doc = f"document {self.index}"
            if self.kind or self.name:
                doc += f" ({self.kind or '?'}/{self.name or '?'})"
            parts.append(doc)
        if self.path:
            parts.append(self.path)
        return ": ".join([*parts, self.reason])


class InvalidObject(ConfigError):
    """A document that is not a valid object; ``errors`` lists every field problem."""

    def __init__(self, errors: list[ManifestError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


@dataclass(frozen=True, slots=True)
class Document:
    """A valid object and where it came from."""

    file: str
    index: int
    obj: ApiObject


@dataclass(slots=True)
class ManifestSet:
    """The outcome of loading files: the valid objects and every error found."""

    documents: list[Document] = field(default_factory=list)
    errors: list[ManifestError] = field(default_factory=list)
    # Unknown fields that were pruned, as the API server does by default (not with --strict).
    warnings: list[ManifestError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def pools(self) -> list[InferencePool]:
        return [d.obj for d in self.documents if isinstance(d.obj, InferencePool)]

    @property
    def objectives(self) -> list[InferenceObjective]:
        return [d.obj for d in self.documents if isinstance(d.obj, InferenceObjective)]

    @property
    def rewrites(self) -> list[InferenceModelRewrite]:
        return [d.obj for d in self.documents if isinstance(d.obj, InferenceModelRewrite)]

    @property
    def pods(self) -> list[ManifestPod]:
        return [d.obj for d in self.documents if isinstance(d.obj, ManifestPod)]


def parse_object(
    data: Any,
    *,
    file: str = "<input>",
    index: int = 1,
    strict: bool = True,
    warnings: list[ManifestError] | None = None,
) -> ApiObject:
    """Validate one decoded document; raises :class:`InvalidObject` with every field error.

    ``strict=False`` is the API server's default field validation ("Warn"): unknown fields are
    pruned and reported in ``warnings`` instead of failing the object. ``strict=True`` is
    ``kubectl --validate=strict``."""

    def err(
        reason: str, path: str = "", kind: str | None = None, name: str | None = None
    ) -> InvalidObject:
        return InvalidObject(
            [ManifestError(reason, file=file, path=path, index=index, kind=kind, name=name)]
        )

    if not isinstance(data, Mapping):
        raise err(f"a document must be a mapping (an object), got {_type_name(data)}")
    kind, api_version = data.get("kind"), data.get("apiVersion")
    meta = data.get("metadata")
    name = meta.get("name") if isinstance(meta, Mapping) else None
    name = name if isinstance(name, str) else None
    if not isinstance(kind, str) or not kind:
        raise err(
            "required field is missing" if kind is None else "must be a non-empty string",
            "kind",
            None,
            name,
        )
    models = KINDS.get(kind)
    if models is None:
        known = ", ".join(f"{k} ({' or '.join(_versions(ms))})" for k, ms in KINDS.items())
        raise err(
            f"unknown kind {kind!r} (apiVersion {api_version!r}); known kinds: {known}",
            "kind",
            kind,
            name,
        )
    model = next((m for m in models if api_version == m.API_VERSION), None)
    if model is None:
        got = "it is missing" if api_version is None else f"got {api_version!r}"
        served = " or ".join(repr(v) for v in _versions(models))
        raise err(f"{kind} is served as {served}, {got}", "apiVersion", kind, name)
    try:
        return model.model_validate(dict(data))  # type: ignore[return-value]
    except ValidationError as exc:
        unknown = [e["loc"] for e in exc.errors() if e["type"] == "extra_forbidden"]
        if not strict and unknown and len(unknown) == exc.error_count():
            pruned = _pruned(data, unknown)
            if warnings is not None:
                warnings.extend(
                    ManifestError(
                        "unknown field, pruned (as the API server does)",
                        file=file,
                        path=field_path(loc),
                        index=index,
                        kind=kind,
                        name=name,
                    )
                    for loc in unknown
                )
            return parse_object(pruned, file=file, index=index, strict=True)
        raise InvalidObject(
            [
                ManifestError(reason, file=file, path=path, index=index, kind=kind, name=name)
                for path, reason in describe(exc)
            ]
        ) from None


def iter_documents(text: str, *, file: str) -> Iterator[tuple[int, Any]]:
    """Yield (1-based index, decoded document) pairs; ``List`` objects are expanded as kubectl does.

    Raises :class:`ManifestError` on a syntax error (documents before it are still yielded).
    """
    index = 0
    if file.endswith(".json"):
        try:
            docs: Iterable[Any] = [json.loads(text)]
        except json.JSONDecodeError as exc:
            raise ManifestError(
                f"JSON syntax error at line {exc.lineno}, column {exc.colno}: {exc.msg}",
                file=file,
                index=1,
            ) from None
    else:
        docs = yaml.safe_load_all(text)
    try:
        for doc in docs:
            index += 1
            if doc is None:
                continue  # empty documents (a stray ---) are skipped, as kubectl does
            if (
                isinstance(doc, Mapping)
                and doc.get("kind") == "List"
                and isinstance(doc.get("items"), list)
            ):
                for item in doc["items"]:
                    yield index, item
                continue
            yield index, doc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ManifestError(
            f"YAML syntax error{where}: {problem}", file=file, index=index + 1
        ) from None


def load_file(
    path: str | Path, into: ManifestSet | None = None, *, strict: bool = False
) -> ManifestSet:
    """Load every document of one file into ``into`` (a new set by default); unknown fields
    are pruned with a warning unless ``strict`` (see :func:`parse_object`)."""
    result = into if into is not None else ManifestSet()
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        result.errors.append(ManifestError(f"cannot read file: {reason}", file=file))
        return result
    seen = {d.obj.key: d for d in result.documents}
    try:
        for index, data in iter_documents(text, file=file):
            try:
                obj = parse_object(
                    data, file=file, index=index, strict=strict, warnings=result.warnings
                )
            except InvalidObject as exc:
                result.errors.extend(exc.errors)
                continue
            first = seen.get(obj.key)
            if first is not None:
                result.errors.append(
                    ManifestError(
                        f"duplicate object: {obj.kind} "
                        f"{obj.metadata.namespace}/{obj.metadata.name} "
                        f"is already defined in {first.file} document {first.index}",
                        file=file,
                        index=index,
                        kind=obj.kind,
                        name=obj.metadata.name,
                    )
                )
                continue
            seen[obj.key] = doc = Document(file, index, obj)
            result.documents.append(doc)
    except ManifestError as exc:
        result.errors.append(exc)
    return result


def load_manifests(paths: Iterable[str | Path], *, strict: bool = False) -> ManifestSet:
    """Load several files as one set (duplicates are detected across files)."""
    result = ManifestSet()
    for path in paths:
        load_file(path, into=result, strict=strict)
    return result


def _pruned(data: Any, locations: list[tuple[int | str, ...]]) -> Any:
    """A deep copy of ``data`` without the fields at ``locations``."""
    out = copy.deepcopy(dict(data))
    for loc in locations:
        node: Any = out
        for part in loc[:-1]:
            node = node[part]
        node.pop(loc[-1], None)
    return out


def _versions(models: tuple[type[Resource], ...]) -> list[str]:
    return [m.API_VERSION for m in models]


def _type_name(value: Any) -> str:
    return {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


__all__ = [
    "Document",
    "InvalidObject",
    "ManifestError",
    "ManifestSet",
    "Resource",
    "iter_documents",
    "load_file",
    "load_manifests",
    "parse_object",
]
