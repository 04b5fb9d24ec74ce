"""Several parsers in one config (``requestHandler.parsers``): each request goes to the parser
its path names, by llm-d-router's rule (``pkg/epp/handlers/parsers.go``).

- Each parser claims path suffixes (``claims``); a parser that claims none is the *fallback*.
- A request goes to the parser with the longest claimed suffix its path ends with (query string
  and trailing ``/`` dropped; a plain string suffix, so ``/x/v1/chat/completions`` matches
  ``chat/completions``); on a tie, the one listed first. No match: the fallback, else 400
  ``no parser registered matching path suffix for: <path>``.
- The list is read up to the first fallback: parsers after it are skipped (logged), and a type
  listed twice counts once (the first).
- No path header at all reads as ``/v1/completions``, as upstream's ``GetRequestPath``.

With one parser (GIE v1.5.0's ``parser``, or a one-entry list) every request goes to it, as
before: this registry is built only for two or more.

The parser that parsed a request also reads its response's usage: its name is kept in the
request's ``state`` under :data:`PARSER_KEY`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from endpoint_picker.errors import BadRequest
from endpoint_picker.requests.openai import request_path
from endpoint_picker.requests.types import InferenceRequest
from endpoint_picker.requests.usage import UsageTracker

log = logging.getLogger(__name__)

PARSER_KEY = "_parser"  # request.state: the parser object that parsed the request


def _suffix(text: str) -> str:
    return text.strip().strip("/")


class ParserRegistry:
    """A parser (``parse``/``usage_tracker``) that delegates to one of several by path."""

    type_name = "parser-registry"

    def __init__(self, parsers: Sequence[tuple[str, Any]]) -> None:
        """``parsers``: (configured name, parser object) in the config's order."""
        self.entries: list[tuple[Any, list[str]]] = []
        self.fallback: Any = None
        self.active: list[str] = []  # configured names in use, for logs and tests
        seen: set[str] = set()
        for i, (name, parser) in enumerate(parsers):
            kind = parser.type_name
            if kind in seen:
                log.warning("parser %r: type %s is already registered, skipped", name, kind)
                continue
            seen.add(kind)
            self.active.append(name)
            claims = list(getattr(parser, "claims", ()))
            if not claims:
                self.fallback = parser
                for skipped, _ in parsers[i + 1 :]:
                    log.warning("parser %r is after the fallback parser %r: skipped", skipped, name)
                break
            self.entries.append((parser, [_suffix(c) for c in claims]))

    def resolve(self, path: str) -> Any:
        """The parser for ``path`` (longest claimed suffix, then the fallback)."""
        clean = path.split("?", 1)[0].strip().rstrip("/")
        best, best_len = None, 0
        for parser, suffixes in self.entries:
            for suffix in suffixes:
                if len(suffix) > best_len and clean.endswith(suffix):
                    best, best_len = parser, len(suffix)
        if best is not None:
            return best
        if self.fallback is not None:
            return self.fallback
        raise BadRequest(f"no parser registered matching path suffix for: {clean}")

    def parse(self, headers: Mapping[str, str], body: bytes, path: str = "") -> InferenceRequest:
        parser = self.resolve(request_path(headers, path))
        request: InferenceRequest = parser.parse(headers, body, path)
        request.state[PARSER_KEY] = parser
        return request

    def usage_tracker(self, content_type: str | None = None) -> UsageTracker | None:
        """For a response whose request this registry did not parse (a stream that began with
        the response): the first parser's reading."""
        first = self.entries[0][0] if self.entries else self.fallback
        tracker: UsageTracker | None = first.usage_tracker(content_type)
        return tracker
