"""Numbers out of inference-perf's JSON reports, in the units the report uses (ms, tokens/s)."""

from __future__ import annotations

from typing import Any


def _pct(dist: dict[str, Any] | None, key: str) -> float | None:
    if not dist:
        return None
    value = dist.get(key)
    return float(value) * 1000.0 if value is not None else None


def lifecycle(report: dict[str, Any]) -> dict[str, Any]:
    """One inference-perf lifecycle report (summary or stage) -> flat numbers."""
    ok = report.get("successes") or {}
    lat = ok.get("latency") or {}
    ttft = lat.get("time_to_first_token")
    itl = lat.get("inter_token_latency")
    tput = ok.get("throughput") or {}
    fail = report.get("failures") or {}
    prompt = ok.get("prompt_tokens") or {}
    total_prompt = float(prompt.get("total") or 0.0)
    errors = {
        label.split(" ")[0]: int(entry.get("count", 0)) if isinstance(entry, dict) else int(entry)
        for label, entry in (fail.get("by_label") or {}).items()
    }
    return {
        "sent": int((report.get("load_summary") or {}).get("count", 0)),
        "ok": int(ok.get("count", 0)),
        "failed": int(fail.get("count", 0)),
        "errors": errors,
        "ttft_p50": _pct(ttft, "median"),
        "ttft_p90": _pct(ttft, "p90"),
        "ttft_p99": _pct(ttft, "p99"),
        "itl_mean": _pct(itl, "mean"),
        "itl_p90": _pct(itl, "p90"),
        "out_tps": float(tput.get("output_tokens_per_sec") or 0.0),
        "rps": float(tput.get("requests_per_sec") or 0.0),
        "cached_frac": float(prompt.get("cached") or 0.0) / total_prompt if total_prompt else 0.0,
    }


def stages(tenant: dict[str, Any]) -> list[tuple[float, dict[str, Any]]]:
    """(offered requests/s, numbers) per stage of one tenant's run."""
    offered = [float(s[0]) for s in tenant["stages_offered"]]
    return [(rate, lifecycle(st)) for rate, st in zip(offered, tenant["stages"], strict=False)]


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def fmt_errors(errors: dict[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(errors.items())) or "0"


_KEEP_PCT = ("mean", "min", "max", "median", "p90", "p99")
_LATENCIES = ("time_to_first_token", "inter_token_latency", "request_latency")


def _dist(d: dict[str, Any] | None) -> dict[str, Any] | None:
    return {k: d[k] for k in _KEEP_PCT if k in d} if d else None


def compact(report: dict[str, Any]) -> dict[str, Any]:
    """The parts of an inference-perf lifecycle report this benchmark reads (results.json is
    committed, and the full reports are ~30x larger)."""
    ok = report.get("successes") or {}
    fail = report.get("failures") or {}
    prompt = ok.get("prompt_tokens") or {}
    return {
        "load_summary": {"count": (report.get("load_summary") or {}).get("count", 0)},
        "successes": {
            "count": ok.get("count", 0),
            "latency": {k: _dist((ok.get("latency") or {}).get(k)) for k in _LATENCIES},
            "throughput": ok.get("throughput") or {},
            "prompt_tokens": {k: prompt.get(k) for k in ("total", "cached", "uncached")},
        },
        "failures": {
            "count": fail.get("count", 0),
            "by_label": {
                label: {"count": e.get("count", 0) if isinstance(e, dict) else e}
                for label, e in (fail.get("by_label") or {}).items()
            },
        },
    }
