"""The dispatch-time room check is request-aware: with the shipped defaults (no config file),
a full endpoint stays a candidate only for a request whose prefix or LoRA adapter is there,
and only within the learned-capacity detector's ``affinityBudget``. Everything else goes to an
endpoint with room, so it never queues in a server behind requests of any priority."""

from __future__ import annotations

import itertools

from endpoint_picker.clock import FakeClock
from endpoint_picker.config.build import build
from endpoint_picker.config.loader import load_config_text
from endpoint_picker.datastore import Endpoint, Metrics
from endpoint_picker.flowcontrol import LearnedCapacityDetector
from endpoint_picker.requests.types import InferenceRequest
from endpoint_picker.runner.app import wire_detector
from endpoint_picker.scheduling import Scheduler
from endpoint_picker.scheduling.framework import PrefixMatch
from endpoint_picker.scheduling.scheduler import AFFINITY_MIN_MATCH, affine_endpoints

_ids = itertools.count()
SYSTEM = "You are the support assistant of a large retailer; answer briefly. " * 40  # ~2,700 chars


def req(prompt: str, model: str = "m") -> InferenceRequest:
    return InferenceRequest(f"a{next(_ids)}", {}, target_model=model, prompt_text=prompt)


class Pool:
    """A config's scheduler and detector (the default config's without one), wired as
    ``epp run`` wires them, over two endpoints whose scraped metrics a test sets."""

    def __init__(self, config_text: str | None = None) -> None:
        self.clock = FakeClock()
        built = build(load_config_text(config_text), clock=self.clock)
        self.scheduler: Scheduler = built.scheduler
        assert isinstance(built.detector, LearnedCapacityDetector)  # flow control's default
        self.detector = built.detector
        wire_detector(self.scheduler, self.detector, self.clock)
        self.a = Endpoint(name="a", pod_name="a", address="10.0.0.1", port=8000)
        self.b = Endpoint(name="b", pod_name="b", address="10.0.0.2", port=8000)
        self.scrape(0, 0)

    def scrape(self, running_a: int, running_b: int) -> None:
        self.clock.advance(1.0)  # well after any dispatch: the scrape has seen them all
        now = self.clock.now()
        for ep, running in ((self.a, running_a), (self.b, running_b)):
            ep.metrics = Metrics(
                running_requests_size=running,
                waiting_queue_size=1 if running >= 4 else 0,  # full: it queues at 4 (learned)
                update_time=now,
                active_models=ep.metrics.active_models,
            )
            ep.inflight_requests = running  # the director's count: all of them are the EPP's
            self.detector.capacity(ep, now)  # learned from scrapes, as the admission loop does

    def route(self, request: InferenceRequest) -> Endpoint:
        result = self.scheduler.schedule(request, [self.a, self.b])
        self.scheduler.pre_request(request, result)  # the prefix index records where it went
        return result.endpoints[0]


def test_a_request_waits_at_its_full_prefix_server_within_the_budget() -> None:
    pool = Pool()
    home = pool.route(req(SYSTEM + "Where is my order 1?"))
    other = pool.b if home is pool.a else pool.a
    # The home server is full (4 of its 4 slots run); the other has room.
    pool.scrape(4 if home is pool.a else 1, 1 if home is pool.a else 4)
    assert not pool.detector.has_room(home, pool.clock.now())
    # The same system prompt: its cache is at home, so it may wait there (a strict check
    # would send it to the other server and prefill the whole prompt again).
    assert pool.route(req(SYSTEM + "Can I return a gift?")) is home
    # An unrelated prompt has nothing to wait for: it goes where a slot is free.
    assert pool.route(req("Translate to French: " + "good morning, " * 60)) is other
    # The budget (2 beyond capacity) is spent once home holds 6: affinity goes elsewhere too.
    home.inflight_requests = 6
    assert pool.route(req(SYSTEM + "Do you ship abroad?")) is other


def test_a_short_shared_prefix_is_not_affinity() -> None:
    pool = Pool()
    home = pool.route(req(SYSTEM + "Where is my order 1?"))
    other = pool.b if home is pool.a else pool.a
    pool.scrape(4 if home is pool.a else 1, 1 if home is pool.a else 4)
    # The shared system prompt is under half of this prompt: not worth a wait in a full server.
    question = "Summarise this review in one line: " + "the parcel came late and torn. " * 140
    request = req(SYSTEM + question)
    assert pool.route(request) is other
    match = next(v for v in request.state.values() if isinstance(v, PrefixMatch))
    assert 0 < match.matches[home.name] < AFFINITY_MIN_MATCH * match.total  # matched, too little


LORA_CONFIG = """\
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: queue-scorer
- type: lora-affinity-scorer
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: queue-scorer
  - pluginRef: lora-affinity-scorer
    weight: 2
flowControl: {maxRequests: 100}
"""


def test_a_running_lora_adapter_is_affinity() -> None:
    pool = Pool(LORA_CONFIG)  # flow control on, no detector named: the learned-capacity one
    pool.a.metrics = Metrics(active_models=frozenset({"sql-lora"}))
    pool.scrape(4, 1)  # a is full and runs the adapter; b has room
    assert affine_endpoints(req("SELECT", model="sql-lora"), [pool.a, pool.b]) == {"a"}
    assert pool.route(req("list the tables", model="sql-lora")) is pool.a
    assert pool.route(req("list the tables", model="m")) is pool.b  # the base model: no affinity
    # The default config scores no LoRA affinity: a stays a candidate, the queue decides.
    default = Pool()
    default.a.metrics = Metrics(active_models=frozenset({"sql-lora"}))
    default.scrape(4, 1)
    assert default.route(req("list the tables", model="sql-lora")) is default.b


def test_no_room_anywhere_keeps_every_candidate() -> None:
    pool = Pool()
    pool.scrape(4, 4)
    pool.a.inflight_requests = pool.b.inflight_requests = 9
    chosen = {pool.route(req(f"question {i} " * 30)).name for i in range(30)}
    assert chosen == {"a", "b"}  # flow control admitted it: the scorers choose among all
