"""Prometheus exposition text -> :class:`Metrics`, through one engine's metric map.

Parsing is prometheus_client's (a maintained parser, not ours). A vLLM page is tens of KB,
mostly histograms we never read, and the parser is pure Python; so lines whose metric name
the map does not mention are dropped with a cheap prefix test *before* parsing. That keeps a
50 ms scrape of many endpoints affordable on one event loop.

Selection follows upstream: among series matching a spec, the one with the largest
exposition timestamp (the first when none carry one); for LoRA, the one with the largest
value (vLLM's ``lora_requests_info`` value is a last-updated timestamp).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from endpoint_picker.datalayer.engines import EngineMap, MetricSpec
from endpoint_picker.datastore import Metrics

Sample = Any  # prometheus_client.samples.Sample (untyped package)


class ExtractError(Exception):
    """The page could not be parsed, or yielded none of the engine's metrics."""


def relevant_lines(text: str, names: Iterable[str]) -> str:
    """Keep only the lines (samples, HELP, TYPE) of metrics whose name starts with one of
    ``names``. A prefix test: it may keep a few extra families, never drops a wanted one."""
    prefixes = tuple(names)
    comment_prefixes = tuple(f"# {kind} {n}" for n in prefixes for kind in ("HELP", "TYPE"))
    kept = [
        line
        for line in text.splitlines()
        if line.startswith(prefixes)
        or (line.startswith("# ") and line.startswith(comment_prefixes))
    ]
    kept.append("")
    return "\n".join(kept)


def index_samples(text: str) -> dict[str, list[Sample]]:
    """Parse exposition text into ``sample name -> samples``. Raises ExtractError."""
    out: dict[str, list[Sample]] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                out.setdefault(sample.name, []).append(sample)
    except Exception as e:  # the parser raises ValueError, IndexError, ... on bad text
        raise ExtractError(f"invalid Prometheus text: {e}") from None
    return out


def _candidates(samples: dict[str, list[Sample]], spec: MetricSpec) -> list[Sample]:
    series = samples.get(spec.name) or samples.get(spec.name + "_total") or []
    return [s for s in series if spec.matches(s.labels)] if spec.labels else series


def _latest(samples: dict[str, list[Sample]], spec: MetricSpec) -> Sample | None:
    found = _candidates(samples, spec)
    if not found:
        return None
    best = found[0]
    for s in found[1:]:
        if s.timestamp is not None and (best.timestamp is None or s.timestamp > best.timestamp):
            best = s
    return best


def _int_label(sample: Sample, label: str) -> int | None:
    raw = sample.labels.get(label)
    if raw is None:
        return None
    try:
        return int(float(raw))
    except ValueError:
        return None


def _csv(raw: str | None) -> frozenset[str]:
    return frozenset(p.strip() for p in (raw or "").split(",") if p.strip())


def extract(
    text: str, engine: EngineMap, previous: Metrics, now: float
) -> tuple[Metrics | None, list[str]]:
    """Map a page onto a fresh Metrics (fields not found keep ``previous`` values).

    Returns ``(metrics, problems)``: ``metrics`` is None when no field was found at all;
    ``problems`` lists each spec that had no matching series (upstream logs these once).
    Raises ExtractError for unparsable text.
    """
    samples = index_samples(relevant_lines(text, engine.names) if engine.names else text)
    changes: dict[str, Any] = {}
    problems: list[str] = []

    def gauge(spec: MetricSpec | None, attr: str, kind: type) -> None:
        if spec is None:
            return
        s = _latest(samples, spec)
        if s is None:
            problems.append(f"metric {spec} not found")
        elif math.isfinite(s.value):
            changes[attr] = kind(s.value)
        else:
            problems.append(f"metric {spec} has non-finite value {s.value}")

    gauge(engine.queued, "waiting_queue_size", int)
    gauge(engine.running, "running_requests_size", int)
    gauge(engine.kv_usage, "kv_cache_usage_percent", float)

    if engine.lora is not None:
        # vLLM exports the LoRA gauge only when LoRA is enabled: its absence means "no
        # adapters", not a broken page, so it is not reported as a problem.
        found = _candidates(samples, engine.lora)
        if found:
            lora = max(found, key=lambda s: s.value if math.isfinite(s.value) else -math.inf)
            changes["active_models"] = _csv(lora.labels.get("running_lora_adapters"))
            changes["waiting_models"] = _csv(lora.labels.get("waiting_lora_adapters"))
            max_lora = _int_label(lora, "max_lora")
            if max_lora is not None:
                changes["max_active_models"] = max_lora

    if engine.cache_info is not None:
        info = _latest(samples, engine.cache_info)
        if info is None:
            problems.append(f"metric {engine.cache_info} not found")
        else:
            changes["cache_block_size"] = _int_label(info, engine.cache_block_size_label) or 0
            blocks = _int_label(info, engine.cache_num_blocks_label)
            if blocks is not None:
                changes["cache_num_blocks"] = blocks
    gauge(engine.cache_block_size, "cache_block_size", int)
    gauge(engine.cache_num_blocks, "cache_num_blocks", int)

    if not changes:
        return None, problems
    return dataclasses.replace(previous, update_time=now, **changes), problems
