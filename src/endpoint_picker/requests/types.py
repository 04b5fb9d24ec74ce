"""The request as every part of the EPP sees it, whatever front it came through.

Parsers (``openai-parser``, ``passthrough-parser``) fill it from headers and body bytes; the
director adds the objective's priority; flow control and scheduling only read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Header names (llm-d-router's pkg/epp/metadata/consts.go): llm-d's names, read first, and
# GIE's older ones as aliases (see header_value).
OBJECTIVE_HEADER = "x-llm-d-inference-objective"
FAIRNESS_ID_HEADER = "x-llm-d-inference-fairness-id"
MODEL_REWRITE_HEADER = "x-llm-d-model-name-rewrite"
SLO_TTFT_HEADER = "x-llm-d-slo-ttft-ms"
SLO_TPOT_HEADER = "x-llm-d-slo-tpot-ms"
HEADER_ALIASES: dict[str, tuple[str, ...]] = {
    OBJECTIVE_HEADER: (OBJECTIVE_HEADER, "x-gateway-inference-objective"),
    FAIRNESS_ID_HEADER: (FAIRNESS_ID_HEADER, "x-gateway-inference-fairness-id"),
    MODEL_REWRITE_HEADER: (MODEL_REWRITE_HEADER, "x-gateway-model-name-rewrite"),
    SLO_TTFT_HEADER: (SLO_TTFT_HEADER, "x-slo-ttft-ms"),
    SLO_TPOT_HEADER: (SLO_TPOT_HEADER, "x-slo-tpot-ms"),
}
REQUEST_ID_HEADER = "x-request-id"
DESTINATION_HEADER = "x-gateway-destination-endpoint"
DESTINATION_SERVED_HEADER = "x-gateway-destination-endpoint-served"
SUBSET_NAMESPACE = "envoy.lb.subset_hint"
SUBSET_KEY = "x-gateway-destination-endpoint-subset"
DESTINATION_NAMESPACE = "envoy.lb"
DEFAULT_FAIRNESS_ID = "default-flow"
# request.state: flow control dispatched the request from its highest band, the one holdback
# keeps slots free for. The dispatch-time room check then sends it only to a slot the server is
# known to run (never into a capacity probe), while one is free.
TOP_BAND_KEY = "_flow_control_top_band"

# Characters per token when only text is known (upstream's averageCharactersPerToken): prefix
# blocks are sized with it, and in-flight load and the fast front's usage are estimated with it.
CHARS_PER_TOKEN = 4


def header_value(headers: dict[str, str], name: str) -> str | None:
    """A request header by its current name, then its deprecated aliases (lower-case keys),
    as upstream's ``GetLowerCaseHeaderValue``: ``x-llm-d-*`` wins over ``x-gateway-*``."""
    for alias in HEADER_ALIASES.get(name, (name,)):
        value = headers.get(alias)
        if value is not None:
            return value
    return None


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
