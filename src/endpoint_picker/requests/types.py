"""The request as every part of the EPP sees it, whatever front it came through.

Parsers (``openai-parser``, ``passthrough-parser``) fill it from headers and body bytes; the
director adds the objective's priority; flow control and scheduling only read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Header names (upstream's pkg/epp/metadata/consts.go).
OBJECTIVE_HEADER = "x-gateway-inference-objective"
FAIRNESS_ID_HEADER = "x-gateway-inference-fairness-id"
MODEL_REWRITE_HEADER = "x-gateway-model-name-rewrite"
REQUEST_ID_HEADER = "x-request-id"
SLO_TTFT_HEADER = "x-slo-ttft-ms"
DESTINATION_HEADER = "x-gateway-destination-endpoint"
DESTINATION_SERVED_HEADER = "x-gateway-destination-endpoint-served"
SUBSET_NAMESPACE = "envoy.lb.subset_hint"
SUBSET_KEY = "x-gateway-destination-endpoint-subset"
DESTINATION_NAMESPACE = "envoy.lb"
DEFAULT_FAIRNESS_ID = "default-flow"

# Characters per token when only text is known (upstream's averageCharactersPerToken): prefix
# blocks are sized with it, and in-flight load and the fast front's usage are estimated with it.
CHARS_PER_TOKEN = 4


@dataclass(slots=True)
class InferenceRequest:
    request_id: str
    headers: dict[str, str]  # lower-case names
    raw_body: bytes = b""
    body: dict[str, Any] | None = None  # parsed JSON body (None for passthrough)
    api: str = ""  # "completions", "chat/completions", "responses", "embeddings", ... or ""
    incoming_model: str = ""
    target_model: str = ""
    # Text used for prefix-cache hashing: the prompt, or the chat messages rendered in order.
    prompt_text: str = ""
    cache_salt: str = ""
    stream: bool = False
    max_tokens: int | None = None
    objective: str | None = None
    priority: int = 0
    fairness_id: str = DEFAULT_FAIRNESS_ID
    # Scratch space for plugins (e.g. prefix hashes computed once per request).
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def size_bytes(self) -> int:
        return len(self.raw_body)


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int | None = None
    estimated: bool = False  # True where the front could not see the body and guessed
