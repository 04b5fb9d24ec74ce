"""Helpers for driving ``extproc.stream.handle_stream`` without gRPC: message builders and a
scripted reader (the FAKE director is the shared one, ``tests.fakes.director``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb

from endpoint_picker.extproc.stream import DUPLEX, handle_stream


def headers_msg(
    eos: bool = False,
    mode: int | None = DUPLEX,
    resp_mode: int = DUPLEX,
    headers: dict[str, str] | None = None,
    **extra: str,
) -> pb.ProcessingRequest:
    msg = pb.ProcessingRequest()
    msg.request_headers.end_of_stream = eos
    for k, v in {":path": "/v1/completions", ":method": "POST", **(headers or {}), **extra}.items():
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


def response_headers_msg(eos: bool = False) -> pb.ProcessingRequest:
    msg = pb.ProcessingRequest()
    msg.response_headers.end_of_stream = eos
    msg.response_headers.headers.headers.add(key=":status", raw_value=b"200")
    return msg


def scripted(
    msgs: list[Any],
) -> tuple[
    Callable[[], Awaitable[Any]], Callable[[bytes], Awaitable[None]], list[Any], list[bytes]
]:
    """(read, write, unread, written): ``read`` hands out ``msgs`` in order (an exception among
    them is raised, as a failed read), then gRPC's EOF; ``write`` collects the answers."""
    queue = list(msgs)
    out: list[bytes] = []

    async def read() -> Any:
        if not queue:
            return grpc.aio.EOF
        item = queue.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    async def write(data: bytes) -> None:
        out.append(data)

    return read, write, queue, out


async def run(
    director: Any, msgs: list[Any], **kwargs: Any
) -> tuple[list[pb.ProcessingResponse], int]:
    """Drive one stream; returns the answers and how many messages were left unread."""
    read, write, unread, out = scripted(msgs)
    await handle_stream(director, read, write, **kwargs)
    return [pb.ProcessingResponse.FromString(b) for b in out], len(unread)
