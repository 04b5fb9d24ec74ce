"""The request model and its parsers (``openai-parser``, ``passthrough-parser``), usage
extraction from responses, and the response-side model-name rewrite.

A parser is any object with ``parse(headers, body, path="") -> InferenceRequest`` (raising
``BadRequest``) and ``usage_tracker(content_type) -> UsageTracker | None``; ``PARSERS`` maps
upstream's type names to ready instances (they hold no state).
"""

from typing import Protocol

from endpoint_picker.requests.openai import OpenAIParser, api_for_path
from endpoint_picker.requests.passthrough import PassthroughParser
from endpoint_picker.requests.rewrite import rewrite_model_name
from endpoint_picker.requests.types import InferenceRequest, Usage
from endpoint_picker.requests.usage import UsageTracker, usage_from_object


class Parser(Protocol):
    type_name: str

    def parse(self, headers: dict[str, str], body: bytes, path: str = "") -> InferenceRequest: ...

    def usage_tracker(self, content_type: str | None = None) -> UsageTracker | None: ...


PARSERS: dict[str, Parser] = {
    OpenAIParser.type_name: OpenAIParser(),
    PassthroughParser.type_name: PassthroughParser(),
}

__all__ = [
    "PARSERS",
    "InferenceRequest",
    "OpenAIParser",
    "Parser",
    "PassthroughParser",
    "Usage",
    "UsageTracker",
    "api_for_path",
    "rewrite_model_name",
    "usage_from_object",
]
