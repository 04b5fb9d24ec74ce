"""What every parser fills the same way: id, headers, routing headers, raw body."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from endpoint_picker.requests.types import (
    DEFAULT_FAIRNESS_ID,
    FAIRNESS_ID_HEADER,
    OBJECTIVE_HEADER,
    REQUEST_ID_HEADER,
    InferenceRequest,
    header_value,
)


def lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Header names lower-cased (HTTP/2 already sends them so; HTTP/1 fronts may not)."""
    return {k if k.islower() else k.lower(): v for k, v in headers.items()}


def base_request(headers: Mapping[str, str], body: bytes) -> InferenceRequest:
    """An InferenceRequest with the header-derived fields set and ``raw_body`` kept as is.

    A missing ``x-request-id`` gets a fresh uuid4 (as upstream); it is not added to
    ``headers``, which stay exactly what the client sent.
    """
    h = lower_headers(headers)
    return InferenceRequest(
        request_id=h.get(REQUEST_ID_HEADER) or str(uuid.uuid4()),
        headers=h,
        raw_body=bytes(body),
        objective=header_value(h, OBJECTIVE_HEADER) or None,
        fairness_id=header_value(h, FAIRNESS_ID_HEADER) or DEFAULT_FAIRNESS_ID,
    )
