"""The ``passthrough-parser``: the body is opaque bytes, forwarded unchanged.

Only headers steer it (objective, fairness id, model rewrite); payload-based scorers such as
the prefix cache get no prompt text, and no usage is read from responses (as upstream).
"""

from __future__ import annotations

from collections.abc import Mapping

from endpoint_picker.requests.common import base_request
from endpoint_picker.requests.types import MODEL_REWRITE_HEADER, InferenceRequest, header_value
from endpoint_picker.requests.usage import UsageTracker


class PassthroughParser:
    """Upstream's ``passthrough-parser``."""

    type_name = "passthrough-parser"
    claims: tuple[str, ...] = ()  # none: the fallback for paths no other parser claims

    def parse(self, headers: Mapping[str, str], body: bytes, path: str = "") -> InferenceRequest:
        req = base_request(headers, body)
        req.target_model = header_value(req.headers, MODEL_REWRITE_HEADER) or ""
        return req

    def usage_tracker(self, content_type: str | None = None) -> UsageTracker | None:
        """None: the passthrough parser reads no usage (upstream's ParseResponse returns nil)."""
        return None
