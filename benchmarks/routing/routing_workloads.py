"""The arms compared and the workloads sent to each, as inference-perf configurations.

Every tenant of a workload is one inference-perf process with its own
``x-gateway-inference-objective`` header (inference-perf's ``api.headers``), so the three
priority tenants of the overload workload are three independent open-loop clients.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from routing_numbers import compact

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
MODEL = "sim-model"
PRECISE_EVENTS = "tcp://127.0.0.1:25557"  # benchmarks/configs/precise-prefix.yaml's zmqEndpoint


@dataclass(frozen=True)
class Arm:
    """One way of serving the pool, named after what it runs."""

    name: str
    title: str
    config: str | None  # EndpointPickerConfig under benchmarks/configs/, None = no file
    epp: bool = True  # False: Envoy alone (round robin), no EPP at all
    pool_overrides: tuple[tuple[str, Any], ...] = ()  # simulator knobs this arm needs


ARMS = {
    a.name: a
    for a in (
        Arm("round-robin", "no EPP (Envoy round robin)", None, epp=False),
        Arm("random", "EPP random-picker", "random-picker.yaml"),
        Arm("shipped", "EPP as shipped (no config file)", None),
        Arm("fc-off", "EPP scheduling, flow control off", "fc-off.yaml"),
        Arm("fc-ttl20", "EPP scheduling + flow control, TTL 20 s", "fc-ttl20.yaml"),
        Arm(
            "fc-concurrency",
            "EPP + flow control, concurrency-detector",
            "flow-control-concurrency.yaml",
        ),
        Arm(
            "fc-holdback",
            "EPP + flow control, concurrency-detector, holdback 0.75",
            "flow-control-holdback.yaml",
        ),
        Arm(
            "precise",
            "EPP precise prefix (servers' KV events)",
            "precise-prefix.yaml",
            # The simulators publish to the EPP's central subscriber (the config's zmqEndpoint).
            pool_overrides=(("kv_events_endpoint", PRECISE_EVENTS),),
        ),
    )
}


@dataclass(frozen=True)
class Tenant:
    name: str
    objective: str | None  # x-gateway-inference-objective, None = no header
    priority: int
    data: dict[str, Any]
    stages: tuple[tuple[float, int], ...]  # (requests/s, seconds)


@dataclass(frozen=True)
class Workload:
    name: str
    title: str
    tenants: tuple[Tenant, ...]
    arms: tuple[str, ...]
    idle_probe: Tenant | None = None  # run alone first, on an idle pool, for a reference
    in_quick: bool = True  # part of the --quick smoke run
    pool_overrides: tuple[tuple[str, Any], ...] = ()  # simulator knobs for every arm


def _shared_prefix_data(
    prompts_per_group: int, groups: int = 16, system_len: int = 6000
) -> dict[str, Any]:
    return {
        "type": "shared_prefix",
        "shared_prefix": {
            "num_groups": groups,
            "num_prompts_per_group": prompts_per_group,
            "system_prompt_len": system_len,
            "question_len": 60,
            "output_len": 32,
            "seed": 7,
        },
    }


KV_STAGES = ((6.0, 30), (10.0, 30), (14.0, 30))  # (requests/s, seconds)
KV_TOP_LOAD = KV_STAGES[-1][0]
KV_GROUPS = 24


def _kv_pressure_data() -> dict[str, Any]:
    data = _shared_prefix_data(16, groups=KV_GROUPS, system_len=3000)
    data["shared_prefix"]["output_len"] = 8
    return data


def _random_data(mean_in: int, mean_out: int) -> dict[str, Any]:
    return {
        "type": "random",
        "input_distribution": {
            "min": mean_in // 4,
            "max": mean_in * 2,
            "mean": mean_in,
            "std_dev": mean_in // 3,
            "total_count": 4000,
        },
        "output_distribution": {
            "min": mean_out // 2,
            "max": mean_out * 2,
            "mean": mean_out,
            "std_dev": mean_out // 4,
            "total_count": 4000,
        },
    }


def workloads(quick: bool) -> dict[str, Workload]:
    """The three workloads; ``quick`` shrinks them to one short stage each."""
    five = ("round-robin", "random", "shipped", "fc-off", "fc-ttl20")
    sp_stages = ((14.0, 10),) if quick else ((8.0, 20), (12.0, 20), (16.0, 20))
    shared = Workload(
        "shared_prefix",
        "Shared prefix: 16 groups, ~6000-token system prompts",
        (Tenant("all", None, 0, _shared_prefix_data(64), sp_stages),),
        ("round-robin", "shipped") if quick else five,
    )
    dur = 10 if quick else 30
    # The pool serves ~15 req/s of this mix (64 output tokens); the tenants offer 5 + 10 + 15 =
    # 30 req/s, ~2x that. High priority is the smaller share, as it usually is in practice.
    tenants = tuple(
        Tenant(name, name, prio, _random_data(200, 64), ((rate, dur),))
        for name, prio, rate in (
            ("critical", 10, 5.0),
            ("standard", 0, 10.0),
            ("sheddable", -10, 15.0),
        )
    )
    priority = Workload(
        "priority",
        "Priority overload: three tenants at priorities 10/0/-10, ~2x capacity",
        tenants,
        ("fc-concurrency",)
        if quick
        else ("round-robin", "shipped", "fc-off", "fc-ttl20", "fc-concurrency", "fc-holdback"),
        idle_probe=Tenant(
            "critical-idle", "critical", 10, _random_data(200, 64), ((1.0, 8 if quick else 20),)
        ),
    )
    un_stages = ((8.0, 10),) if quick else ((6.0, 20), (10.0, 20))
    uniform = Workload(
        "uniform",
        "Uniform random lengths (control)",
        (Tenant("all", None, 0, _random_data(250, 32), un_stages),),
        ("round-robin", "shipped") if quick else five,
        in_quick=False,
    )
    # KV pressure (issue 15): 24 system prompts of 3000 inference-perf tokens (~1,700 simulator
    # tokens, ~106 blocks of 16 each; ~2,550 blocks in all) on a pool of 4 x 500 blocks (2,000),
    # of which a running request pins ~110: the working set is 1.3x the pool's KV and ~1.6x
    # what is left for caching, so what each server holds keeps changing, and an index that only
    # remembers where it sent a prompt believes in blocks long evicted. Prefill decides the cost:
    # a miss prefills ~1,700 tokens (~0.37 s), a hit ~40 (8 output tokens decode in ~0.1 s); one
    # running request per server, so misses cost capacity. The highest load (14 req/s) lies
    # midway between what the pool serves at the approximate index's hit rate (~47% in a run
    # with 12 req/s on top: ~0.35 s a request, ~11 req/s for the pool) and at precise's (~77%:
    # ~0.24 s, ~16 req/s).
    kv_stages = ((KV_TOP_LOAD, 20),) if quick else KV_STAGES
    kv_pressure = Workload(
        "kv_pressure",
        "KV pressure: 24 groups of ~1,700-token system prompts; working set 1.3x the pool's KV",
        (Tenant("all", None, 0, _kv_pressure_data(), kv_stages),),
        ("round-robin", "fc-off", "precise"),
        in_quick=False,
        pool_overrides=(("num_gpu_blocks", 500), ("max_num_seqs", 1)),
    )
    return {w.name: w for w in (shared, priority, uniform, kv_pressure)}


def ip_config(tenant: Tenant, url: str, tokenizer: Path, out: Path) -> dict[str, Any]:
    """One inference-perf configuration (its YAML schema) for ``tenant`` against ``url``."""
    api: dict[str, Any] = {"type": "completion", "streaming": True}
    if tenant.objective:
        api["headers"] = {"x-gateway-inference-objective": tenant.objective}
    return {
        "api": api,
        "server": {"type": "vllm", "model_name": MODEL, "base_url": url, "ignore_eos": True},
        "tokenizer": {"pretrained_model_name_or_path": str(tokenizer)},
        "data": tenant.data,
        "load": {
            "type": "poisson",
            "num_workers": 1,
            "worker_max_concurrency": 2000,  # open loop: never let the client cap in-flight
            "request_timeout": 120,
            "interval": 1,
            "stages": [{"rate": r, "duration": d} for r, d in tenant.stages],
        },
        "report": {"request_lifecycle": {"summary": True, "per_stage": True, "per_request": False}},
        "storage": {"local_storage": {"path": str(out)}},
    }


def _prepare(tenant: Tenant, url: str, tokenizer: Path, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    cfg = out / "inference-perf.yaml"
    cfg.write_text(yaml.safe_dump(ip_config(tenant, url, tokenizer, out / "reports")))
    return cfg


def _collect(tenant: Tenant, out: Path, rc: int) -> dict[str, Any]:
    reports = out / "reports"
    summary = reports / "summary_lifecycle_metrics.json"
    if rc != 0 or not summary.exists():
        log = (out / "inference-perf.log").read_text(errors="replace")
        tail = "\n".join(log.splitlines()[-15:])
        raise RuntimeError(f"inference-perf failed for {tenant.name} (exit {rc}):\n{tail}")
    stage_files = [reports / f"stage_{i}_lifecycle_metrics.json" for i in range(len(tenant.stages))]
    return {
        "tenant": tenant.name,
        "priority": tenant.priority,
        "stages_offered": [list(s) for s in tenant.stages],
        "summary": compact(json.loads(summary.read_text())),
        "stages": [compact(json.loads(f.read_text())) for f in stage_files if f.exists()],
    }


async def run_tenant(
    binary: Path, tokenizer: Path, url: str, tenant: Tenant, out: Path
) -> dict[str, Any]:
    """Run inference-perf for one tenant; its summary and per-stage reports, parsed."""
    cfg = await asyncio.to_thread(_prepare, tenant, url, tokenizer, out)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    started = time.monotonic()
    with open(out / "inference-perf.log", "wb") as fh:  # noqa: ASYNC230 (open only, no I/O wait)
        proc = await asyncio.create_subprocess_exec(
            str(binary),
            "-c",
            str(cfg),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=fh,
            stderr=fh,
            env=env,
        )
        rc = await proc.wait()
    result = await asyncio.to_thread(_collect, tenant, out, rc)
    result["wall_s"] = time.monotonic() - started
    return result
