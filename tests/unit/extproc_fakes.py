"""Helpers for driving ``extproc.stream.handle_stream`` without gRPC: message builders, a
scripted reader, and a FAKE director that keeps the accounting the real one must keep."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import grpc
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb

from endpoint_picker.extproc.stream import DUPLEX, handle_stream
from endpoint_picker.requests.types import InferenceRequest, Usage


@dataclass(eq=False)
class Ctx:
    request: InferenceRequest
    destination: str
    body: bytes
    headers_to_set: dict[str, str] = field(default_factory=dict)


class FakeDirector:
    """A FAKE director: routes to one address, counts contexts handed out and finished."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error
        self.requests = 0
        self.handed_out = 0
        self.finished: list[BaseException | None] = []

    async def handle_request(
        self,
        headers: dict[str, str],
        body: bytes,
        *,
        has_body: bool = True,
        subset_hint: list[str] | None = None,
    ) -> Ctx:
        self.requests += 1
        if self.error is not None:
            raise self.error
        self.handed_out += 1
        return Ctx(InferenceRequest(request_id="r", headers=headers), "10.0.0.1:8000", body)

    def handle_response_headers(self, ctx: Ctx, headers: dict[str, str]) -> dict[str, str]:
        return {}

    def handle_response_body(self, ctx: Ctx, chunk: bytes, end_of_stream: bool) -> bytes:
        return chunk

    def record_response(
        self,
        ctx: Ctx,
        *,
        response_bytes: int,
        duration_s: float | None = None,
        usage: Usage | None = None,
    ) -> None:
        pass  # the ext_proc front sees the response itself

    def finish(self, ctx: Ctx, *, error: BaseException | None = None) -> None:
        self.finished.append(error)


def headers_msg(
    eos: bool = False, mode: int | None = DUPLEX, resp_mode: int = DUPLEX, **extra: str
) -> pb.ProcessingRequest:
    msg = pb.ProcessingRequest()
    msg.request_headers.end_of_stream = eos
    for k, v in {":path": "/v1/completions", ":method": "POST", **extra}.items():
        msg.request_headers.headers.headers.add(key=k, raw_value=v.encode())
    if mode is not None:
        msg.protocol_config.request_body_mode = mode
        msg.protocol_config.response_body_mode = resp_mode
    return msg


def body_msg(body: bytes, eos: bool, response: bool = False) -> pb.ProcessingRequest:
    msg = pb.ProcessingRequest()
    part = msg.response_body if response else msg.request_body
    part.body, part.end_of_stream = body, eos
    return msg


async def run(
    director: Any, msgs: list[Any], **kwargs: Any
) -> tuple[list[pb.ProcessingResponse], int]:
    """Drive one stream; returns the answers and how many messages were left unread."""
    queue = list(msgs)
    out: list[bytes] = []

    async def read() -> Any:
        return queue.pop(0) if queue else grpc.aio.EOF

    async def write(data: bytes) -> None:
        out.append(data)

    await handle_stream(director, read, write, **kwargs)
    return [pb.ProcessingResponse.FromString(b) for b in out], len(queue)
