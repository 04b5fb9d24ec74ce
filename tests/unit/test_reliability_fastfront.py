"""Issue 18 items 3 and 5: the fast front's side ports bind loopback by their own flags, tickets
are unguessable, and the requests an Envoy held are released when its access-log streams close."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
from envoy.service.accesslog.v3 import als_pb2
from tests.unit.reliability_support import wait_for

from endpoint_picker.director import RequestContext
from endpoint_picker.fastfront.als import SERVICE, AccessLogServer
from endpoint_picker.fastfront.complete import Completions
from endpoint_picker.metrics import REGISTRY
from endpoint_picker.requests.types import InferenceRequest
from endpoint_picker.runner.commands import options_from_args, register


class FakeDirector:
    """A FAKE director that records what ``finish`` was given."""

    def __init__(self) -> None:
        self.finished: list[tuple[Any, BaseException | None]] = []

    def finish(self, ctx: Any, *, error: BaseException | None = None) -> None:
        self.finished.append((ctx, error))


def _ctx(rid: str) -> RequestContext:
    req = InferenceRequest(request_id=rid, headers={})
    return RequestContext(request=req, destination="10.0.0.1:8000", body=b"{}")


def _run_args(*argv: str) -> Any:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    return options_from_args(parser.parse_args(["run", "--endpoint", "127.0.0.1:1", *argv]))


def test_the_side_ports_bind_loopback_whatever_host_says() -> None:
    opts = _run_args("--host", "0.0.0.0")
    assert opts.epp.host == "0.0.0.0"
    assert (opts.epp.pick_host, opts.epp.als_host) == ("127.0.0.1", "127.0.0.1")
    opts = _run_args("--pick-host", "10.1.2.3", "--als-host", "::1")
    assert (opts.epp.pick_host, opts.epp.als_host) == ("10.1.2.3", "::1")


def test_tickets_are_unguessable() -> None:
    reg = Completions(FakeDirector())  # type: ignore[arg-type]
    tickets = [reg.add(_ctx(f"r{i}")) for i in range(50)]
    assert len(set(tickets)) == 50
    assert all(len(t) >= 24 for t in tickets)  # 96 random bits
    # Nothing sequential to extrapolate from: consecutive tickets share no common prefix.
    assert len({t[:8] for t in tickets}) == 50


def _released() -> float:
    return REGISTRY.get_sample_value("endpoint_picker_fastfront_released_total") or 0.0


async def _messages(stop: asyncio.Event) -> AsyncIterator[als_pb2.StreamAccessLogsMessage]:
    yield als_pb2.StreamAccessLogsMessage()
    await stop.wait()


async def test_requests_are_released_when_every_access_log_stream_closes() -> None:
    director = FakeDirector()
    completions = Completions(director)  # type: ignore[arg-type]
    server = AccessLogServer(completions, host="127.0.0.1", port=0)
    await server.start()
    stop = asyncio.Event()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            call = channel.stream_unary(
                f"/{SERVICE}/StreamAccessLogs",
                request_serializer=als_pb2.StreamAccessLogsMessage.SerializeToString,
            )
            streams = [call(_messages(stop)) for _ in range(2)]  # two Envoy workers
            await wait_for(lambda: server.streams == 2)
            completions.add(_ctx("held-1"))
            completions.add(_ctx("held-2"))
            before = _released()
            streams[0].cancel()  # one worker's stream: the others still stand for Envoy
            await wait_for(lambda: server.streams == 1)
            assert len(completions) == 2 and not director.finished
            streams[1].cancel()  # Envoy is gone (killed): nothing it held will be logged
            await wait_for(lambda: server.streams == 0)
        assert len(completions) == 0
        assert [type(e).__name__ for _, e in director.finished] == ["EnvoyGone", "EnvoyGone"]
        assert _released() - before == 2
    finally:
        stop.set()
        await server.stop()
