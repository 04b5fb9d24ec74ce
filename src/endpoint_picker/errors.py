"""The one error hierarchy of the EPP, and its mapping to HTTP status.

Every failure a client can see is an :class:`InferenceError` with a code; fronts (ext_proc,
the fast HTTP front) turn it into a status and the body ``inference error: <Code> - <msg>``,
exactly as upstream does (its ``pkg/common/error``). Codes without an HTTP mapping make the
front fail the stream instead, so the gateway's failure mode applies.
"""

from __future__ import annotations

from enum import StrEnum


class Code(StrEnum):
    BAD_REQUEST = "BadRequest"
    UNAUTHORIZED = "Unauthorized"
    FORBIDDEN = "Forbidden"
    NOT_FOUND = "NotFound"
    RESOURCE_EXHAUSTED = "ResourceExhausted"
    INTERNAL = "Internal"
    SERVICE_UNAVAILABLE = "ServiceUnavailable"
    UNKNOWN = "Unknown"
    MODEL_SERVER_ERROR = "ModelServerError"


HTTP_STATUS: dict[Code, int] = {
    Code.BAD_REQUEST: 400,
    Code.UNAUTHORIZED: 401,
    Code.FORBIDDEN: 403,
    Code.NOT_FOUND: 404,
    Code.RESOURCE_EXHAUSTED: 429,
    Code.INTERNAL: 500,
    Code.SERVICE_UNAVAILABLE: 503,
}


class InferenceError(Exception):
    """An error with a client-facing code and message."""

    code: Code = Code.INTERNAL

    def __init__(self, msg: str, code: Code | None = None) -> None:
        super().__init__(msg)
        self.msg = msg
        if code is not None:
            self.code = code

    @property
    def http_status(self) -> int | None:
        """The HTTP status a front answers with, or None to fail the stream."""
        return HTTP_STATUS.get(self.code)

    @property
    def body(self) -> str:
        return f"inference error: {self.code.value} - {self.msg}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code.value}, {self.msg!r})"


class BadRequest(InferenceError):
    code = Code.BAD_REQUEST


class ResourceExhausted(InferenceError):
    code = Code.RESOURCE_EXHAUSTED


class ServiceUnavailable(InferenceError):
    code = Code.SERVICE_UNAVAILABLE


class Internal(InferenceError):
    code = Code.INTERNAL


class ConfigError(Exception):
    """Invalid configuration or manifest: carries where (file, path) and why, never a traceback."""

    def __init__(self, reason: str, *, file: str | None = None, path: str | None = None) -> None:
        self.reason = reason
        self.file = file
        self.path = path
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ": ".join(p for p in (self.file, self.path) if p)
        return f"{where}: {self.reason}" if where else self.reason
