"""Issue 18 items 6 and 14 on the ext_proc stream: request bodies are bounded (413), and a
stream that starts with Envoy's own reply passes it through instead of failing."""

from __future__ import annotations

import argparse
import asyncio
import gc
from typing import Any

import grpc
import pytest
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from tests.fakes.director import FakeDirector
from tests.unit.extproc_fakes import body_msg, headers_msg, run

from endpoint_picker.extproc.server import shielded, shielded_read, until_closed
from endpoint_picker.extproc.stream import DEFAULT_MAX_BODY_BYTES, DUPLEX
from endpoint_picker.metrics import REGISTRY
from endpoint_picker.runner.commands import options_from_args, register


def _rejected() -> float:
    labels = {"front": "extproc", "reason": "body_too_large"}
    return REGISTRY.get_sample_value("endpoint_picker_front_rejected_total", labels) or 0.0


async def test_a_body_over_the_limit_is_413_and_the_rest_is_not_read() -> None:
    director = FakeDirector()
    before = _rejected()
    chunks = [body_msg(b"x" * 400, False) for _ in range(10)] + [body_msg(b"", True)]
    out, unread = await run(director, [headers_msg(), *chunks], max_body_bytes=1000)
    assert [o.WhichOneof("response") for o in out] == ["immediate_response"]
    assert out[0].immediate_response.status.code == 413
    assert len(director.requests) == 0 and unread == 8  # stopped at the third chunk
    assert _rejected() - before == 1


async def test_the_default_limit_is_16_mib() -> None:
    assert DEFAULT_MAX_BODY_BYTES == 16 * 1024 * 1024
    director = FakeDirector()
    mib = b"x" * (1024 * 1024)
    chunks = [body_msg(mib, False) for _ in range(16)] + [body_msg(b"y", True)]
    out, _ = await run(director, [headers_msg(), *chunks])
    assert out[0].immediate_response.status.code == 413
    out, _ = await run(director, [headers_msg(), *chunks[:15], body_msg(mib, True)])
    assert len(director.requests) == 1 and out[0].WhichOneof("response") == "request_headers"


def test_the_limit_is_a_flag() -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["run", "--max-request-body-size", "2Mi"])
    assert options_from_args(args).epp.max_request_body_bytes == 2 * 1024 * 1024
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "--max-request-body-size", "0"])


def _response_headers(status: str = "431") -> pb.ProcessingRequest:
    msg = pb.ProcessingRequest()
    msg.response_headers.headers.headers.add(key=":status", raw_value=status.encode())
    msg.protocol_config.response_body_mode = DUPLEX
    return msg


async def test_envoys_own_reply_on_a_stream_without_request_passes_through() -> None:
    director = FakeDirector()
    msgs = [_response_headers(), body_msg(b"Request Header Fields Too Large", True, response=True)]
    out, unread = await run(director, msgs)
    kinds = [o.WhichOneof("response") for o in out]
    assert kinds == ["response_headers", "response_body"] and unread == 0
    assert out[1].response_body.response.body_mutation.streamed_response.body == (
        b"Request Header Fields Too Large"
    )
    # Nothing is routed; the response-only context (usage counting) is finished exactly once.
    assert len(director.requests) == 0 and director.calls[0] == ("response_only",)
    assert [error for _, error in director.finished] == [None]


class _PendingReadContext:
    """A fake grpc.aio servicer context (no gRPC call here): ``read`` waits on ``gate``."""

    def __init__(self) -> None:
        self.gate: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.read_cancelled = False

    async def read(self) -> Any:
        try:
            return await self.gate
        except asyncio.CancelledError:
            self.read_cancelled = True
            raise


async def test_a_cancelled_stream_leaves_its_pending_read_to_complete() -> None:
    """Envoy's reset cancels the handler while it awaits a read; the read itself must not be
    cancelled (grpc-python would drop its batch unfreed: the soak's RSS growth)."""
    context = _PendingReadContext()
    handler = asyncio.create_task(shielded_read(context))
    await asyncio.sleep(0)
    handler.cancel()
    with pytest.raises(asyncio.CancelledError):
        await handler
    unhandled: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: unhandled.append(ctx))
    context.gate.set_exception(RuntimeError("call cancelled"))  # how the orphaned read ends
    for _ in range(3):
        await asyncio.sleep(0)
    gc.collect()
    assert not context.read_cancelled
    assert unhandled == []  # the orphan's error is retrieved, not logged as never retrieved


async def test_a_shielded_read_returns_what_the_stream_sent() -> None:
    context = _PendingReadContext()
    context.gate.set_result(b"message")
    assert await shielded_read(context) == b"message"


async def test_a_cancelled_stream_leaves_its_pending_write_to_complete() -> None:
    loop = asyncio.get_running_loop()
    gate: asyncio.Future[None] = loop.create_future()
    state = {"cancelled": False, "done": False}

    async def write() -> None:
        try:
            await gate
            state["done"] = True
        except asyncio.CancelledError:
            state["cancelled"] = True
            raise

    handler = asyncio.create_task(shielded(write()))
    await asyncio.sleep(0)
    handler.cancel()
    with pytest.raises(asyncio.CancelledError):
        await handler
    gate.set_result(None)
    await asyncio.sleep(0)
    assert state == {"cancelled": False, "done": True}


class _ScriptedContext:
    """A fake servicer context (no gRPC call) whose reads return ``messages``, then wait."""

    def __init__(self, messages: list[Any]) -> None:
        self.messages = messages
        self.reads = 0

    async def read(self) -> Any:
        self.reads += 1
        if self.messages:
            return self.messages.pop(0)
        await asyncio.Event().wait()  # the stream stays open until the peer ends it


async def test_the_handler_waits_for_envoy_to_end_the_stream() -> None:
    """After the exchange, the handler stays until Envoy half-closes (EOF) or resets (the
    cancel), instead of sending its status onto a call Envoy may be resetting."""
    context = _ScriptedContext([b"late", grpc.aio.EOF])
    await asyncio.wait_for(until_closed(context), 1.0)
    assert context.reads == 2
    open_stream = _ScriptedContext([])
    waiting = asyncio.create_task(until_closed(open_stream))
    await asyncio.sleep(0.05)
    assert not waiting.done()  # still open: the handler has not ended the call itself
    waiting.cancel()  # Envoy's reset
    with pytest.raises(asyncio.CancelledError):
        await waiting
