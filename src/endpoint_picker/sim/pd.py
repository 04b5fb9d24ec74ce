"""Prefill/decode disaggregation in the simulator: llm-d's decode sidecar, modelled in-process.

In llm-d a decode pod runs a routing sidecar in front of vLLM. When the EPP chose a prefiller it
sets ``x-prefiller-host-port``; the sidecar then (NIXL v2 connector,
``pkg/sidecar/proxy/connector_nixlv2.go``):

1. removes the header and sends the request to the prefiller with
   ``kv_transfer_params: {do_remote_decode: true, do_remote_prefill: false, remote_*: null}``,
   ``stream: false``, no ``stream_options`` and the token limit (``max_tokens``, and
   ``max_completion_tokens`` when the client gave it) set to 1;
2. on an HTTP error from the prefiller, answers the client with that status and body (no local
   fallback; llm-d retries 502/503/504 only when ``--prefill-max-retries`` is set, default 0);
3. otherwise sends the original request (stream and limits restored) to its local vLLM with the
   prefiller's ``kv_transfer_params`` (``do_remote_prefill: true`` and where the KV is), which
   pulls the prompt's KV and decodes; the usage's cached tokens are the prefiller's.

Here the sidecar and the decoder are one process, so step 3 is a call to
:meth:`SimServer.serve`, and the pull is a modelled duration (``sim.engine``), not a transfer.
A prefiller that cannot be reached is answered 502, as llm-d's reverse proxy does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from endpoint_picker.pd_headers import PREFILLER_HEADER
from endpoint_picker.sim.openai import ApiError

if TYPE_CHECKING:
    from endpoint_picker.sim.engine import SimRequest
    from endpoint_picker.sim.server import SimServer

PREFILLER_SERVED_HEADER = "x-sim-prefiller"  # which prefiller did it (the simulator's own)
_NIXL_PREFILL = {
    "do_remote_decode": True,
    "do_remote_prefill": False,
    "remote_engine_id": None,
    "remote_block_ids": None,
    "remote_host": None,
    "remote_port": None,
}


def prefiller_of(request: web.Request) -> str:
    """The prefiller the EPP chose: the first of a comma-separated header (llm-d without
    prefiller sampling takes the first), or ''."""
    values = request.headers.getall(PREFILLER_HEADER, [])
    if not values:
        return ""
    return values[0].split(",", 1)[0].strip()


def kv_transfer_mode(body: dict[str, Any]) -> str:
    """``remote_decode`` (prefill for a remote decoder), ``remote_prefill`` (decode with KV
    from a prefiller) or '' from a body's ``kv_transfer_params``."""
    params = body.get("kv_transfer_params")
    if not isinstance(params, dict):
        return ""
    if params.get("do_remote_prefill") is True:
        return "remote_prefill"
    if params.get("do_remote_decode") is True:
        return "remote_decode"
    return ""


def prefill_body(body: dict[str, Any]) -> dict[str, Any]:
    """The request the sidecar sends to the prefiller (step 1 above)."""
    out = dict(body)
    out["kv_transfer_params"] = dict(_NIXL_PREFILL)
    out["stream"] = False
    out.pop("stream_options", None)
    out["max_tokens"] = 1
    if "max_completion_tokens" in out:
        out["max_completion_tokens"] = 1
    return out


def kv_params(endpoint: str, host: str, port: int, req: SimRequest) -> dict[str, Any]:
    """What vLLM's NIXL connector answers a ``do_remote_decode`` prefill with: where the
    decoder reads the prompt's KV (the block hashes stand in for block ids)."""
    return {
        "do_remote_prefill": True,
        "do_remote_decode": False,
        "remote_block_ids": req.hashes,
        "remote_engine_id": f"sim-{endpoint}",
        "remote_host": host,
        "remote_port": port,
        "tp_size": 1,
    }


@dataclass(slots=True, frozen=True)
class RemotePrefill:
    """What the prefill leg returned, for the decode leg's answer."""

    prefiller: str
    ttft: float  # the prefiller's own TTFT (queue + prefill), seconds of model time
    cached_tokens: int  # the prefiller's prefix-cache hit, reported in usage

    def headers(self) -> dict[str, str]:
        return {
            PREFILLER_SERVED_HEADER: self.prefiller,
            "x-sim-remote-prefill-ms": f"{self.ttft * 1000:.6f}",
        }


class Sidecar:
    """llm-d's routing sidecar in front of one decode simulator."""

    def __init__(self, server: SimServer) -> None:
        self.server = server
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            # No pool limit: every request the decoder admits may be prefilling at once.
            connector = aiohttp.TCPConnector(limit=0)
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=5.0)
            self._session = aiohttp.ClientSession(connector=connector, timeout=timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def disaggregate(
        self, request: web.Request, api: str, body: dict[str, Any], prefiller: str
    ) -> web.StreamResponse:
        """Prefill on ``prefiller``, then decode here; the prefiller's errors go to the client."""
        stats = self.server.engine.stats
        headers = {"content-type": "application/json"}
        rid = request.headers.get("x-request-id")
        if rid:
            headers["x-request-id"] = rid
        url = f"http://{prefiller}{request.path}"
        try:
            async with self._client().post(
                url, data=json.dumps(prefill_body(body)), headers=headers
            ) as resp:
                status, raw = resp.status, await resp.read()
                ttft_ms = resp.headers.get("x-sim-ttft-ms", "0")
        except (aiohttp.ClientError, OSError) as err:
            stats.remote_prefill_failures += 1
            raise ApiError(502, f"prefill request to {prefiller} failed: {err}") from None
        if status >= 400:
            stats.remote_prefill_failures += 1
            return web.Response(
                status=status,
                body=raw,
                content_type="application/json",
                headers={PREFILLER_SERVED_HEADER: prefiller},
            )
        try:
            answer = json.loads(raw)
            ttft = float(ttft_ms) / 1000.0
        except ValueError as err:
            stats.remote_prefill_failures += 1
            raise ApiError(502, f"prefiller {prefiller} answered unreadable JSON: {err}") from None
        decode = dict(body)
        decode["kv_transfer_params"] = answer.get("kv_transfer_params")
        details = (answer.get("usage") or {}).get("prompt_tokens_details") or {}
        cached = details.get("cached_tokens") or 0
        remote = RemotePrefill(prefiller, ttft, int(cached))
        return await self.server.serve(request, api, decode, remote)
