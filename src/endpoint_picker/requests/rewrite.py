"""Rewriting the model name in response bytes back to the name the client asked for.

When the gateway rewrote ``model`` on the way in (``x-gateway-model-name-rewrite`` or an
InferenceModelRewrite), the server answers with the target name; clients expect their own.
Upstream's rule (``rewriteModelName``): a byte replace of ``"model":"<target>"``, and only if
that changed nothing, of ``"model": "<target>"`` (one space). A byte replace, not a JSON
round trip, so stream chunks pass at memcpy cost.
"""

from __future__ import annotations


def rewrite_model_name(body_chunk: bytes, target: str, incoming: str) -> bytes:
    """Replace the target model name with the incoming one in a response body chunk."""
    if not target or not incoming or target == incoming:
        return body_chunk
    t, i = target.encode(), incoming.encode()
    compact = b'"model":"' + t + b'"'
    if compact in body_chunk:
        return body_chunk.replace(compact, b'"model":"' + i + b'"')
    spaced = b'"model": "' + t + b'"'
    if spaced in body_chunk:
        return body_chunk.replace(spaced, b'"model": "' + i + b'"')
    return body_chunk
