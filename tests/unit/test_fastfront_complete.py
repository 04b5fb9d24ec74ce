"""The fast front's response path without Envoy: tickets, access-log entries, the sweeper."""

from __future__ import annotations

from envoy.data.accesslog.v3 import accesslog_pb2
from tests.fakes.director import FakeContext, FakeDirector

from endpoint_picker.clock import FakeClock
from endpoint_picker.envoy.fast import TICKET_HEADER
from endpoint_picker.fastfront.als import entry_of
from endpoint_picker.fastfront.complete import (
    Completions,
    Entry,
    NeverLogged,
    NoResponse,
    estimate_usage,
)
from endpoint_picker.requests.types import DESTINATION_SERVED_HEADER, InferenceRequest


def _ctx(prompt: str = "x" * 40, max_tokens: int | None = 5) -> FakeContext:
    req = InferenceRequest(request_id="r", headers={}, prompt_text=prompt, max_tokens=max_tokens)
    return FakeContext(request=req, destination="10.0.0.1:8000", body=b"{}")


def _entry(ticket: str, status: int = 200, nbytes: int = 100) -> Entry:
    return Entry(ticket, status, "10.0.0.2:8000", nbytes, 0.25)


def test_an_entry_finishes_its_request_once_with_what_envoy_saw() -> None:
    director, clock = FakeDirector(), FakeClock()
    reg = Completions(director, clock=clock)
    ctx = _ctx()
    ticket = reg.add(ctx)
    assert len(reg) == 1
    assert reg.complete(_entry(ticket, nbytes=1000))
    assert director.calls == [
        ("response_headers", {":status": "200", DESTINATION_SERVED_HEADER: "10.0.0.2:8000"})
    ]
    assert director.finished == [(ctx, None)]
    [(recorded, nbytes, duration, usage)] = director.recorded
    assert (recorded, nbytes, duration) == (ctx, 1000, 0.25)  # Envoy's duration, not ours
    assert usage is not None and usage.estimated
    assert (usage.prompt_tokens, usage.completion_tokens) == (10, 5)  # 40 chars / 4; capped
    assert not reg.complete(_entry(ticket))  # a second entry for the same ticket is unknown
    assert len(director.finished) == 1
    assert (reg.completed, reg.unknown, len(reg)) == (1, 1, 0)


def test_tickets_are_unique_and_unknown_ones_are_ignored() -> None:
    director = FakeDirector()
    reg = Completions(director)
    tickets = {reg.add(_ctx()) for _ in range(100)}
    assert len(tickets) == 100
    assert not reg.complete(_entry("someone-else"))
    assert director.finished == [] and reg.unknown == 1 and len(reg) == 100


def test_no_response_is_finished_as_an_error() -> None:
    director = FakeDirector()
    reg = Completions(director)
    ctx = _ctx()
    reg.complete(Entry(reg.add(ctx), 0, None, 0, 0.1, "DC"))
    assert director.calls == []
    [(finished, error)] = director.finished
    assert finished is ctx and isinstance(error, NoResponse) and "DC" in str(error)


def test_the_sweeper_finishes_only_overdue_requests() -> None:
    director, clock = FakeDirector(), FakeClock()
    reg = Completions(director, clock=clock, sweep_after_s=10)
    old = _ctx()
    reg.add(old)
    clock.advance(6)
    young = _ctx()
    kept = reg.add(young)
    assert reg.sweep() == 0
    clock.advance(5)  # old: 11 s, young: 5 s
    assert reg.sweep() == 1
    [(finished, error)] = director.finished
    assert finished is old and isinstance(error, NeverLogged)
    assert reg.complete(_entry(kept))  # the young one still completes normally
    assert reg.swept == 1 and len(reg) == 0


def test_finish_all_and_discard_close_every_book() -> None:
    director = FakeDirector()
    reg = Completions(director)
    a, b = _ctx(), _ctx()
    ta = reg.add(a)
    reg.add(b)
    reg.discard(ta, ConnectionError("gone"))
    reg.discard(ta, ConnectionError("twice"))  # no-op
    reg.finish_all(RuntimeError("stop"))
    assert [c for c, _ in director.finished] == [a, b] and len(reg) == 0


def test_estimate_without_max_tokens_uses_response_bytes() -> None:
    usage = estimate_usage(_ctx(prompt="abcde", max_tokens=None), 400)
    assert (usage.prompt_tokens, usage.completion_tokens, usage.estimated) == (2, 100, True)


def test_entry_of_reads_a_real_access_log_entry() -> None:
    e = accesslog_pb2.HTTPAccessLogEntry()
    e.request.request_headers[TICKET_HEADER] = "abc-1"
    e.common_properties.upstream_remote_address.socket_address.address = "10.1.2.3"
    e.common_properties.upstream_remote_address.socket_address.port_value = 8000
    e.common_properties.duration.FromMilliseconds(1500)
    e.common_properties.response_flags.downstream_connection_termination = True
    e.response.response_code.value = 429
    e.response.response_body_bytes = 77
    entry = entry_of(accesslog_pb2.HTTPAccessLogEntry.FromString(e.SerializeToString()))
    assert entry == Entry(
        "abc-1", 429, "10.1.2.3:8000", 77, 1.5, "downstream_connection_termination"
    )
    assert entry_of(accesslog_pb2.HTTPAccessLogEntry()) is None  # no ticket, no id: not ours


def test_an_entry_without_ticket_is_matched_by_request_id() -> None:
    """The client left while the pick's answer was on its way: Envoy dropped the answer, so the
    entry has no ticket, only Envoy's x-request-id; the request's load is still released."""
    director = FakeDirector()
    reg = Completions(director)
    mine, other = _ctx(), _ctx()
    other.request.request_id = "r-other"
    reg.add(mine)
    reg.add(other)
    assert not reg.complete(Entry("", 0, None, 0, 0.1, "DC", request_id="nobody"))
    assert reg.complete(Entry("", 0, None, 0, 0.1, "DC", request_id="r"))
    [(finished, error)] = director.finished
    assert finished is mine and isinstance(error, NoResponse)
    assert len(reg) == 1 and reg.unknown == 1
    assert not reg.complete(Entry("", 0, None, 0, 0.1, "DC", request_id="r"))  # only once


def test_entry_of_keeps_the_request_id_of_an_entry_without_ticket() -> None:
    e = accesslog_pb2.HTTPAccessLogEntry()
    e.request.request_id = "rid-7"
    e.common_properties.response_flags.downstream_connection_termination = True
    entry = entry_of(accesslog_pb2.HTTPAccessLogEntry.FromString(e.SerializeToString()))
    assert entry is not None
    assert (entry.ticket, entry.request_id, entry.status) == ("", "rid-7", 0)
