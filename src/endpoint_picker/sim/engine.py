"""The engine: a FIFO waiting queue, at most ``max_num_seqs`` running, and one step loop.

Time model (llm-d-inference-sim's "per-token" calculator): a request admitted at ``t`` first
waits for its LoRA adapter, then prefills for ``prefill_overhead + (prompt - cached) x
prefill_time_per_token``; its first token appears when the prefill ends. Decoding is continuous
batching: every engine step, each request in the batch gets one token, and a step lasts
``inter_token_latency``. Both durations are scaled by the load factor (1.0 with one running
request, rising linearly to ``time_factor_under_load`` at ``max_num_seqs``) and jittered by a
seeded Gaussian.

The loop sets one timer per event (a step end or a prefill end), never one per token. Every
timestamp the engine records is the *scheduled* time of its event, not the moment the event loop
got round to it, so TTFT, ITL and queue time on the simulator's own metrics follow the model
exactly even on a busy machine; only the delivery of tokens to clients lags.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
from collections import deque
from dataclasses import dataclass, field

from endpoint_picker.clock import SYSTEM_CLOCK, Clock
from endpoint_picker.sim.config import SimConfig
from endpoint_picker.sim.kvcache import Allocation, KVCache, blocks_for
from endpoint_picker.sim.lora import LoraSlots
from endpoint_picker.sim.stats import EngineStats


class QueueFull(Exception):
    """The waiting queue is at ``max_waiting_queue_length``."""


class EngineStopped(Exception):
    """The engine stopped before the request finished."""


_ids = itertools.count(1)


@dataclass(slots=True, eq=False)
class SimRequest:
    """One request's life in the engine; all times on the engine's clock."""

    prompt_tokens: int
    output_len: int
    max_tokens: int
    hashes: list[int] = field(default_factory=list)
    token_ids: list[int] = field(default_factory=list)  # for KV events only
    lora: str | None = None
    stream: bool = False
    remote_prefill: bool = False  # P/D: the prompt's KV comes from a prefiller (pulled here)
    id: int = field(default_factory=lambda: next(_ids))
    arrival: float = 0.0
    admitted_at: float = 0.0
    prefill_done: float = 0.0
    first_token_at: float = 0.0
    finished_at: float = 0.0
    generated: int = 0
    cached_tokens: int = 0
    capacity: int = 0  # tokens the pinned blocks hold
    transfer_time: float = 0.0  # P/D: modelled KV pull from the prefiller
    remaining: int = 0  # chunked prefill: prompt tokens still to compute
    ready_at: float = 0.0  # chunked prefill: when it may join a step (LoRA loaded, KV pulled)
    last_token_at: float = 0.0
    max_itl: float = 0.0  # the longest gap between two of its tokens (a decode stall)
    alloc: Allocation | None = None
    finished: bool = False
    done: asyncio.Future[None] | None = None
    wake: asyncio.Future[None] | None = None  # streaming: set when tokens were added

    @property
    def ttft(self) -> float:
        return self.first_token_at - self.arrival

    @property
    def mean_itl(self) -> float:
        """Mean gap between its tokens (0 with fewer than two)."""
        if self.generated < 2:
            return 0.0
        return (self.last_token_at - self.first_token_at) / (self.generated - 1)

    @property
    def queue_time(self) -> float:
        return self.admitted_at - self.arrival

    @property
    def finish_reason(self) -> str:
        return "length" if self.generated >= self.max_tokens else "stop"


class Engine:
    """One simulated vLLM engine: queue, batch, KV cache, LoRA slots, statistics."""

    def __init__(self, config: SimConfig, clock: Clock = SYSTEM_CLOCK) -> None:
        self.config = config
        self.clock = clock
        self.kv = KVCache(config.num_gpu_blocks, config.block_size, config.enable_prefix_caching)
        self.lora = LoraSlots(config.max_loras, config.lora_load_time)
        self.stats = EngineStats(config.max_model_len)
        self.rng = random.Random(config.seed)
        self.waiting: deque[SimRequest] = deque()
        self.prefilling: list[SimRequest] = []
        self.decoding: list[SimRequest] = []
        self._batch: list[SimRequest] = []
        self._chunks: list[tuple[SimRequest, int]] = []  # chunked prefill: this step's share
        self._stepping = False
        self._step_start = 0.0
        self._step_end = 0.0
        self._last_arrival = 0.0
        self._waker: asyncio.Future[bool] | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def num_running(self) -> int:
        return len(self.prefilling) + len(self.decoding)

    # -- client side -------------------------------------------------------------------------

    def fits_at_all(self, total_tokens: int) -> bool:
        """Whether a request of this size could ever fit the KV cache."""
        return blocks_for(total_tokens, self.config.block_size) <= self.config.num_gpu_blocks

    def submit(self, req: SimRequest) -> None:
        """Queue ``req``; raises QueueFull. Await ``req.done`` for the end."""
        if len(self.waiting) >= self.config.max_waiting_queue_length:
            raise QueueFull(f"waiting queue is full ({self.config.max_waiting_queue_length})")
        if self._task is None:
            raise EngineStopped("engine is not running")
        req.arrival = self._last_arrival = self.clock.now()
        req.done = asyncio.get_running_loop().create_future()
        self.waiting.append(req)
        self._wake(True)

    def abort(self, req: SimRequest) -> None:
        """Drop ``req`` wherever it is (client went away); frees its blocks at once."""
        if req.finished:
            return
        if req in self.waiting:
            self.waiting.remove(req)
            req.finished = True
            return
        self._release(req)
        self.stats.success["abort"] = self.stats.success.get("abort", 0) + 1
        self.prefilling = [r for r in self.prefilling if r is not req]
        self.decoding = [r for r in self.decoding if r is not req]
        self._wake(True)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop the loop; every unfinished request fails with EngineStopped."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        for req in [*self.waiting, *self.prefilling, *self.decoding]:
            req.finished = True
            if req.done is not None and not req.done.done():
                req.done.set_exception(EngineStopped("simulator stopped"))
                req.done.exception()  # retrieved here, so an unawaited one logs nothing
            if req.wake is not None and not req.wake.done():
                req.wake.set_result(None)
        self.waiting.clear()
        self.prefilling.clear()
        self.decoding.clear()

    # -- the loop ----------------------------------------------------------------------------

    def _wake(self, arrival: bool) -> None:
        if self._waker is not None and not self._waker.done():
            self._waker.set_result(arrival)

    async def _sleep_until(self, when: float | None) -> bool:
        """Sleep until ``when`` (or forever); True if woken early by an arrival or abort."""
        loop = asyncio.get_running_loop()
        self._waker = fut = loop.create_future()
        handle = None
        if when is not None:
            handle = loop.call_later(max(0.0, when - self.clock.now()), self._wake, False)
        try:
            return bool(await fut)
        finally:
            self._waker = None
            if handle is not None:
                handle.cancel()

    async def _run(self) -> None:
        vt = self.clock.now()
        while True:
            event = vt  # the time of the event just applied
            vt = max(vt, self._last_arrival)
            self._admit(vt)
            if not self._stepping and self._has_step_work(vt):
                # Requests already decoding go on at the event's own time: an arrival the loop
                # saw late (a busy machine) must not open a gap between their steps.
                self._start_step(event if self.decoding else vt)
            when = self._next_event()
            if (when is None or when > self.clock.now()) and await self._sleep_until(when):
                continue  # an arrival: admit it at its arrival time
            assert when is not None
            vt = when
            self._advance(vt)

    @property
    def _chunked(self) -> bool:
        return self.config.max_num_batched_tokens > 0

    def _has_step_work(self, now: float) -> bool:
        if self.decoding:
            return True
        return self._chunked and any(r.ready_at <= now for r in self.prefilling)

    def _next_event(self) -> float | None:
        if self._chunked:
            times = [] if self._stepping else [r.ready_at for r in self.prefilling]
        else:
            times = [r.prefill_done for r in self.prefilling]
        if self._stepping:
            times.append(self._step_end)
        return min(times) if times else None

    def _factor(self, running: int) -> float:
        cfg = self.config
        if cfg.max_num_seqs <= 1 or running <= 1:
            return 1.0
        share = min(running - 1, cfg.max_num_seqs - 1) / (cfg.max_num_seqs - 1)
        return 1.0 + (cfg.time_factor_under_load - 1.0) * share

    def _jitter(self, mean: float) -> float:
        if self.config.jitter <= 0.0 or mean <= 0.0:
            return mean
        value = self.rng.gauss(mean, self.config.jitter * mean)
        return min(max(value, 0.3 * mean), 1.7 * mean)

    def _admit(self, now: float) -> None:
        """Move waiting requests into the batch, FIFO, while slots and KV blocks allow."""
        cfg = self.config
        blocked: list[SimRequest] = []
        while self.waiting and self.num_running < cfg.max_num_seqs:
            req = self.waiting.popleft()
            if req.lora is not None and not self.lora.can_run(req.lora):
                blocked.append(req)  # skipped, not lost: others may go ahead of it
                continue
            total = req.prompt_tokens + req.max_tokens
            lora_ref = None
            if req.lora is not None and req.lora in cfg.lora:
                lora_ref = (cfg.lora.index(req.lora) + 1, req.lora)
            alloc = self.kv.allocate(req.hashes, req.prompt_tokens, total, req.token_ids, lora_ref)
            if alloc is None:
                self.waiting.appendleft(req)  # head-of-line: wait for blocks to free
                break
            ready = now if req.lora is None else self.lora.acquire(req.lora, now)
            req.alloc = alloc
            req.cached_tokens = alloc.cached_tokens
            req.capacity = (len(alloc.hashes) + alloc.private) * cfg.block_size
            req.admitted_at = now
            if self._chunked:  # the prompt is computed by the steps (see _start_step)
                req.remaining = 0 if req.remote_prefill else req.prompt_tokens - req.cached_tokens
                ready = max(now, ready)
                req.ready_at = ready + (self._remote_prefill(req, 0.0) if req.remote_prefill else 0)
                req.prefill_done = math.inf
                self.prefilling.append(req)
                self.stats.queue.observe(req.queue_time)
                continue
            if req.remote_prefill:
                prefill = self._remote_prefill(req)
            else:
                mean = cfg.prefill_overhead + (req.prompt_tokens - req.cached_tokens) * (
                    cfg.prefill_time_per_token
                )
                prefill = self._jitter(mean) * self._factor(self.num_running + 1)
            req.prefill_done = max(now, ready) + prefill
            self.prefilling.append(req)
            self.stats.queue.observe(req.queue_time)
        self.waiting.extendleft(reversed(blocked))

    def _remote_prefill(self, req: SimRequest, first_step: float | None = None) -> float:
        """P/D decode side: pull the prompt's uncached blocks from the prefiller, then compute
        the first token in one decode step (vLLM's NIXL connector reads only the blocks this
        engine does not hold already)."""
        cfg = self.config
        pulled = req.prompt_tokens - req.cached_tokens
        req.transfer_time = (
            cfg.kv_transfer_latency + pulled * cfg.kv_bytes_per_token / cfg.kv_transfer_bandwidth
        )
        self.stats.remote_prefills += 1
        self.stats.kv_transfer_tokens += pulled
        self.stats.kv_transfer.observe(req.transfer_time)
        if first_step is None:
            first_step = self._jitter(cfg.inter_token_latency) * self._factor(self.num_running + 1)
        return req.transfer_time + first_step

    def _start_step(self, now: float) -> None:
        cfg = self.config
        self._batch = list(self.decoding)
        mean = cfg.inter_token_latency
        self._chunks = []
        if self._chunked:
            mean += self._plan_chunks(now)
        self._step_end = now + self._jitter(mean) * self._factor(self.num_running)
        self._step_start = now
        self._stepping = True

    def _plan_chunks(self, now: float) -> float:
        """vLLM's chunked prefill: a step computes the batch's decode tokens plus prompt chunks
        (oldest first) up to ``max_num_batched_tokens``, and lasts longer by their compute time,
        so long prompts stall every decode on the engine. Returns the added seconds."""
        cfg = self.config
        budget = cfg.max_num_batched_tokens - len(self._batch)
        extra = 0.0
        for req in self.prefilling:
            if req.ready_at > now or budget <= 0:
                continue
            take = min(req.remaining, budget)
            budget -= max(take, 1)  # a pulled prompt's first token is one decode token
            if take and req.remaining == req.prompt_tokens - req.cached_tokens:
                extra += cfg.prefill_overhead  # a prompt's first chunk
            extra += take * cfg.prefill_time_per_token
            self._chunks.append((req, take))
        return extra

    def _advance(self, now: float) -> None:
        """Apply every event scheduled at or before ``now``."""
        if self.prefilling:
            still: list[SimRequest] = []
            for req in self.prefilling:
                if req.prefill_done > now:
                    still.append(req)
                    continue
                self._first_token(req)
            self.prefilling = still
        if self._stepping and self._step_end <= now:
            end = self._step_end
            batch, self._batch = self._batch, []
            chunks, self._chunks = self._chunks, []
            self._stepping = False
            live = [r for r in batch if not r.finished]
            self.stats.itl.observe(end - self._step_start, len(live))
            for req in live:
                self._emit(req, end)
            self.decoding = [r for r in self.decoding if not r.finished]
            for req, take in chunks:
                req.remaining -= take
                if req.remaining <= 0 and not req.finished:
                    req.prefill_done = end
                    self.prefilling.remove(req)
                    self._first_token(req)

    def _first_token(self, req: SimRequest) -> None:
        """The prompt is computed (or pulled): its first token, then it decodes."""
        req.first_token_at = req.prefill_done
        self.stats.ttft.observe(req.ttft)
        self.stats.prompt_tokens += req.prompt_tokens
        self._emit(req, req.prefill_done)
        if not req.finished:
            self.decoding.append(req)

    def _emit(self, req: SimRequest, at: float) -> None:
        """One more token for ``req`` at ``at``; finishes it at its output length."""
        if req.generated:
            req.max_itl = max(req.max_itl, at - req.last_token_at)
        req.last_token_at = at
        req.generated += 1
        self.stats.generation_tokens += 1
        if req.prompt_tokens + req.generated > req.capacity and req.alloc is not None:
            self.kv.grow(req.alloc)
            req.capacity += self.config.block_size
        if req.generated >= req.output_len:
            self._finish(req, at)
        elif req.wake is not None and not req.wake.done():
            req.wake.set_result(None)

    def _finish(self, req: SimRequest, at: float) -> None:
        req.finished_at = at
        self._release(req)
        st = self.stats
        st.success[req.finish_reason] = st.success.get(req.finish_reason, 0) + 1
        st.e2e.observe(at - req.arrival)
        st.prefill.observe(req.first_token_at - req.admitted_at)
        st.decode.observe(at - req.first_token_at)
        st.inference.observe(at - req.admitted_at)
        st.request_prompt_tokens.observe(req.prompt_tokens)
        st.request_generation_tokens.observe(req.generated)
        st.request_max_tokens.observe(req.max_tokens)
        if req.done is not None and not req.done.done():
            req.done.set_result(None)
        if req.wake is not None and not req.wake.done():
            req.wake.set_result(None)

    def _release(self, req: SimRequest) -> None:
        req.finished = True
        if req.alloc is not None:
            self.kv.release(req.alloc)
            req.alloc = None
            if req.lora is not None:
                self.lora.release(req.lora)
