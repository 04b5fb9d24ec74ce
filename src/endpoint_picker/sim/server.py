"""One simulated vLLM instance over HTTP (aiohttp): OpenAI endpoints, /health, /metrics.

Every response, errors included, names the instance in ``x-sim-endpoint: host:port`` and echoes
``x-request-id``, so a test behind a gateway can tell which endpoint served it. Non-streaming
generation responses also carry the engine's own timings (``x-sim-ttft-ms``,
``x-sim-queue-ms``, mean and longest inter-token gap ``x-sim-itl-ms`` / ``x-sim-itl-max-ms``),
which tests and benchmarks use instead of wall-clock measurements.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import xxhash
from aiohttp import web

from endpoint_picker.clock import SYSTEM_CLOCK, Clock
from endpoint_picker.sim.config import SimConfig
from endpoint_picker.sim.dp import DataParallelSidecar
from endpoint_picker.sim.engine import Engine, EngineStopped, QueueFull, SimRequest
from endpoint_picker.sim.kvcache import block_hashes
from endpoint_picker.sim.metrics import make_registry, render
from endpoint_picker.sim.openai import (
    ApiError,
    ChunkWriter,
    Parsed,
    completion_body,
    parse_generation,
    parse_json,
    resolve_model,
)
from endpoint_picker.sim.pd import (
    RemotePrefill,
    Sidecar,
    kv_params,
    kv_transfer_mode,
    prefiller_of,
)
from endpoint_picker.sim.tokenizer import token_id, tokenize

ENDPOINT_HEADER = "x-sim-endpoint"
REQUEST_ID_HEADER = "x-request-id"

# The classic text format, which every scraper (and prometheus_client's parser) reads.
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class SimServer:
    """A simulated vLLM server: its own engine, KV cache, metrics registry and HTTP site."""

    def __init__(
        self,
        config: SimConfig,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.config = config
        self.host = host
        self.port = port
        self.engine = Engine(config, clock)
        self.registry = make_registry(self.engine)
        self._faults = random.Random(config.seed + 7919)  # apart from the engine's jitter
        self._lengths = random.Random(config.seed + 104729)
        self._metrics_cache: tuple[float, bytes] | None = None
        self._runner: web.AppRunner | None = None
        # The latency knobs as configured, for POST /sim/slowdown (a factor of these).
        self._base_latency = (
            config.prefill_overhead,
            config.prefill_time_per_token,
            config.inter_token_latency,
        )
        self.kv_events: Any = None  # a KVEventPublisher when KV events are on
        # The fleet this server belongs to (start_fleet sets it): the oracle hit count asks
        # every member what it holds when a request arrives.
        self.peers: list[SimServer] = [self]
        self.sidecar = Sidecar(self)  # llm-d's P/D routing sidecar (used when config.sidecar)
        self.dp: DataParallelSidecar | None = None  # on a data-parallel pod's primary port
        self.app = self._build_app()

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.endpoint}"

    async def start(self) -> int:
        """Bind and serve; returns the bound port (ephemeral when constructed with port 0)."""
        self._runner = web.AppRunner(
            self.app, access_log=None, handle_signals=False, shutdown_timeout=0.5
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except OSError:
            await self._runner.cleanup()
            self._runner = None
            raise
        self.port = int(self._runner.addresses[0][1])
        try:
            self._start_kv_events()
        except Exception:
            await self._runner.cleanup()
            self._runner = None
            raise
        self.engine.start()
        return self.port

    def _start_kv_events(self) -> None:
        cfg = self.config
        if not (cfg.kv_events_port or cfg.kv_events_endpoint):
            return
        import zmq

        from endpoint_picker.sim.kvevents import KVEventPublisher

        topic = cfg.kv_events_topic.format(endpoint=self.endpoint, model=cfg.model)
        host = self.host if self.host not in ("", "0.0.0.0") else "*"

        def port(p: int) -> str:
            return "*" if p < 0 else str(p)

        replay = None
        if cfg.kv_events_replay_port:
            replay = f"tcp://{host}:{port(cfg.kv_events_replay_port)}"
        pub = KVEventPublisher(
            topic,
            bind=f"tcp://{host}:{port(cfg.kv_events_port)}" if cfg.kv_events_port else None,
            connect=cfg.kv_events_endpoint or None,
            replay_bind=replay,
            engine=cfg.kv_events_engine,
        )
        try:
            pub.start()
        except zmq.ZMQError as err:
            raise OSError(f"KV events: {err}") from None
        self.kv_events = pub
        self.engine.kv.sink = pub.add

    async def stop(self) -> None:
        """Fail unfinished requests, close connections, unbind."""
        await self.engine.stop()
        await self.sidecar.close()
        if self.dp is not None:
            await self.dp.close()
        if self.kv_events is not None:
            self.engine.kv.sink = None
            await self.kv_events.stop()
            self.kv_events = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- app ---------------------------------------------------------------------------------

    def _build_app(self) -> web.Application:
        app = web.Application(
            client_max_size=self.config.max_body_bytes, middlewares=[self._errors]
        )
        app.on_response_prepare.append(self._stamp)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/health", self._health)
        app.router.add_get("/health/ready", self._health)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_post("/reset_prefix_cache", self._reset_prefix_cache)
        app.router.add_get("/debug/kv-blocks", self._kv_blocks)
        app.router.add_post("/sim/slowdown", self._slowdown)
        return app

    async def _stamp(self, request: web.Request, response: web.StreamResponse) -> None:
        # A data-parallel rank's answer forwarded from here keeps the rank's name.
        response.headers.setdefault(ENDPOINT_HEADER, self.endpoint)
        rid = request.headers.get(REQUEST_ID_HEADER)
        if rid is not None:
            response.headers[REQUEST_ID_HEADER] = rid

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Every failure becomes an OpenAI-style JSON error body."""
        try:
            return await handler(request)
        except ApiError as err:
            return _error(err)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return _error(ApiError(exc.status, exc.reason))

    # -- generation --------------------------------------------------------------------------

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, "completions")

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, "chat")

    def _inject_fault(self) -> None:
        if self.config.fail_rate and self._faults.random() < self.config.fail_rate:
            status = self._faults.choice(self.config.fail_statuses)
            raise ApiError(status, f"simulated failure (fail-rate {self.config.fail_rate})")

    async def _generate(self, request: web.Request, api: str) -> web.StreamResponse:
        raw = await request.read()
        if self.dp is not None:  # llm-d's data-parallel sidecar on the primary port
            rank = self.dp.target(request)
            if rank is not None:  # another rank serves it
                return await self.dp.forward(request, rank, raw)
        body = parse_json(raw)
        prefiller = prefiller_of(request) if self.config.sidecar else None
        if prefiller:  # llm-d's decode sidecar: the prefill runs there, the decode here
            return await self.sidecar.disaggregate(request, api, body, prefiller)
        return await self.serve(request, api, body)

    async def serve(
        self,
        request: web.Request,
        api: str,
        body: dict[str, Any],
        remote: RemotePrefill | None = None,
    ) -> web.StreamResponse:
        """vLLM's side of a generation request; ``remote`` when the sidecar had it prefilled.

        ``kv_transfer_params`` in the body is vLLM's NIXL convention: ``do_remote_decode``
        makes this a prefill for a remote decoder (the answer carries the KV's address),
        ``do_remote_prefill`` makes this the decoder that pulls the prompt's KV."""
        p = parse_generation(self.config, api, body)
        kv_mode = kv_transfer_mode(body)
        self._inject_fault()
        total = len(p.tokens) + p.max_tokens
        if not self.engine.fits_at_all(total):
            raise ApiError(
                413,
                f"the request needs more KV-cache blocks ({total} tokens) than "
                f"the simulated GPU holds",
            )
        out = p.max_tokens
        if not p.ignore_eos:
            out = self._lengths.randint(1, p.max_tokens)
        seed = self.config.hash_seed + (p.lora or p.model)
        req = SimRequest(
            prompt_tokens=len(p.tokens),
            output_len=out,
            max_tokens=p.max_tokens,
            hashes=block_hashes(p.tokens, self.config.block_size, seed),
            token_ids=[token_id(t) for t in p.tokens] if self.kv_events is not None else [],
            lora=p.lora,
            stream=p.stream,
            remote_prefill=kv_mode == "remote_prefill",
        )
        self.engine.kv.oracle_hits += max(
            peer.engine.kv.hit_tokens(req.hashes, req.prompt_tokens) for peer in self.peers
        )
        try:
            self.engine.submit(req)
        except QueueFull as err:
            raise ApiError(429, str(err)) from None
        except EngineStopped as err:
            raise ApiError(503, str(err)) from None
        rid = ("chatcmpl-" if api == "chat" else "cmpl-") + f"sim-{req.id}"
        headers = remote.headers() if remote is not None else {}
        if p.stream:
            cached_of = None if remote is None else remote.cached_tokens
            return await self._stream(request, p, req, rid, headers, cached_of)
        try:
            assert req.done is not None
            await req.done
        except EngineStopped as err:
            raise ApiError(503, str(err)) from None
        except asyncio.CancelledError:
            self.engine.abort(req)
            raise
        cached = req.cached_tokens if remote is None else remote.cached_tokens
        out_body = completion_body(p, rid, req.generated, req.finish_reason, cached)
        if kv_mode == "remote_decode":
            self.engine.stats.prefills_for_remote_decode += 1
            out_body["kv_transfer_params"] = kv_params(self.endpoint, self.host, self.port, req)
        ttft = req.ttft + (remote.ttft if remote is not None else 0.0)
        headers["x-sim-ttft-ms"] = f"{ttft * 1000:.6f}"
        headers["x-sim-queue-ms"] = f"{req.queue_time * 1000:.6f}"
        headers["x-sim-itl-ms"] = f"{req.mean_itl * 1000:.6f}"
        headers["x-sim-itl-max-ms"] = f"{req.max_itl * 1000:.6f}"
        if req.remote_prefill:
            headers["x-sim-kv-transfer-ms"] = f"{req.transfer_time * 1000:.6f}"
        return web.json_response(out_body, headers=headers)

    async def _stream(
        self,
        request: web.Request,
        p: Parsed,
        req: SimRequest,
        rid: str,
        headers: dict[str, str],
        cached: int | None = None,
    ) -> web.StreamResponse:
        """SSE chunks as tokens come; ``cached`` overrides the usage's cached tokens (P/D: the
        prefiller's, as llm-d's sidecar rewrites them)."""
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", **headers}
        )
        chunks = ChunkWriter(p, rid)
        loop = asyncio.get_running_loop()
        interval = self.config.stream_interval
        sent = 0
        try:
            await resp.prepare(request)
            if p.api == "chat":
                await resp.write(chunks.role())
            while True:
                req.wake = wake = loop.create_future()
                n, over = req.generated, req.done is not None and req.done.done()
                if n > sent and (over or n - sent >= interval):
                    reason = req.finish_reason if over else None
                    await resp.write(chunks.tokens(sent, n, reason))
                    sent = n
                if over:
                    break
                await wake
            assert req.done is not None
            if req.done.exception() is None and p.include_usage:
                hit = req.cached_tokens if cached is None else cached
                await resp.write(chunks.usage(req.generated, hit))
            await resp.write(chunks.done())
            await resp.write_eof()
        except (ConnectionError, asyncio.CancelledError):
            self.engine.abort(req)
            raise
        return resp

    # -- other endpoints ---------------------------------------------------------------------

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        body = parse_json(await request.read())
        resolve_model(self.config, body)
        inputs = body.get("input")
        if isinstance(inputs, str) or (
            isinstance(inputs, list) and inputs and all(type(t) is int for t in inputs)
        ):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs:
            raise ApiError(
                400, "'input' is required: a string, a list of strings or token ids", "input"
            )
        self._inject_fault()
        data, total = [], 0
        for i, item in enumerate(inputs):
            if isinstance(item, str):
                tokens = tokenize(item)
            elif isinstance(item, list) and all(type(t) is int for t in item):
                tokens = [str(t) for t in item]
            else:
                raise ApiError(400, f"input[{i}] must be a string or a list of token ids", "input")
            total += len(tokens)
            data.append({"object": "embedding", "index": i, "embedding": self._vector(tokens)})
        usage = {"prompt_tokens": total, "total_tokens": total}
        return web.json_response(
            {"object": "list", "data": data, "model": body["model"], "usage": usage}
        )

    def _vector(self, tokens: list[str]) -> list[float]:
        """A deterministic unit-ish vector for the text."""
        h = xxhash.xxh64_intdigest("\x1f".join(tokens).encode())
        rng = random.Random(h)
        return [round(rng.uniform(-1.0, 1.0), 6) for _ in range(self.config.embedding_dim)]

    async def _models(self, request: web.Request) -> web.StreamResponse:
        created = int(time.time())
        cfg = self.config

        def card(name: str, parent: str | None) -> dict[str, Any]:
            return {
                "id": name,
                "object": "model",
                "created": created,
                "owned_by": "vllm",
                "root": name,
                "parent": parent,
                "max_model_len": cfg.max_model_len,
            }

        data = [card(cfg.model, None)] + [card(name, cfg.model) for name in cfg.lora]
        return web.json_response({"object": "list", "data": data})

    async def _slowdown(self, request: web.Request) -> web.StreamResponse:
        """Fault knob ``POST /sim/slowdown?factor=F``: from now on every prefill and decode step
        takes F times its configured time (1 = back to normal), as a GPU that throttles or gets
        a noisy neighbour; requests keep their slots, so only their pace changes."""
        raw = request.query.get("factor", "1")
        try:
            factor = float(raw)
        except ValueError:
            factor = math.nan
        if not 0.01 <= factor <= 100:  # also rejects nan
            raise ApiError(400, f"factor must be a number in [0.01, 100], got {raw!r}", "factor")
        cfg = self.config
        overhead, per_token, itl = (v * factor for v in self._base_latency)
        cfg.prefill_overhead, cfg.prefill_time_per_token, cfg.inter_token_latency = (
            overhead,
            per_token,
            itl,
        )
        return web.json_response({"factor": factor})

    async def _reset_prefix_cache(self, request: web.Request) -> web.StreamResponse:
        """vLLM's ``POST /reset_prefix_cache``: drop cached blocks (``AllBlocksCleared``)."""
        if not self.engine.kv.reset():
            raise ApiError(409, "cannot reset the prefix cache while requests are running")
        return web.Response(status=200)

    async def _kv_blocks(self, request: web.Request) -> web.StreamResponse:
        """The oracle: every block hash cached now, and how to recompute them from a prompt
        (``sim.kvcache.block_hashes(tokens, block_size, hash_seed + model)``)."""
        kv = self.engine.kv
        return web.json_response(
            {
                "model": self.config.model,
                "block_size": kv.block_size,
                "hash_seed": self.config.hash_seed,
                "num_gpu_blocks": kv.num_blocks,
                "blocks": kv.cached_hashes(),
            }
        )

    async def _health(self, request: web.Request) -> web.StreamResponse:
        return web.Response(status=200)

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        cfg = self.config
        if cfg.slow_metrics > 0:
            await asyncio.sleep(cfg.slow_metrics)
        now = time.monotonic()
        cached = self._metrics_cache
        if cfg.stale_metrics > 0 and cached is not None and now - cached[0] < cfg.stale_metrics:
            text = cached[1]
        else:
            text = render(self.registry)
            self._metrics_cache = (now, text)
        return web.Response(body=text, headers={"Content-Type": METRICS_CONTENT_TYPE})


def _error(err: ApiError) -> web.Response:
    return web.Response(status=err.status, body=err.body(), content_type="application/json")
