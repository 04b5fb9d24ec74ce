"""Rewrite the benchmark figures quoted in README.md and docs/ from ``benchmarks/results/``.

Every figure a document quotes sits in a marked block that only this script writes:

    <!-- BEGIN figures:NAME (benchmarks/render_figures.py; do not edit) -->
    ...
    <!-- END figures:NAME -->

so README.md and docs/ cannot quote different numbers for the same benchmark, nor numbers no
results file holds. A benchmark whose results file is missing is quoted as not measured, with
the command that measures it. The routing figures quote the shipped defaults first, then the
other arms by what they run.

    .venv/bin/python benchmarks/render_figures.py           # rewrite the blocks
    .venv/bin/python benchmarks/render_figures.py --check   # exit 1 if a block is stale
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "routing"))
sys.path.insert(0, str(HERE / "priority_bench"))

from priority_figures import (  # noqa: E402
    SWEEP_COMMAND,
    ab_block,
    ideal_block,
    readme_summary,
    regress_block,
    slow_block,
    sweep_block,
)
from routing_numbers import ratio, stages  # noqa: E402

from precise_figures import kv_pressure_block, precise_cost_block  # noqa: E402
from results_file import RESULTS, read_results  # noqa: E402

ROOT = HERE.parent
# The marked blocks benchmarks/routing/NOTES.md carries (BENCHMARKS.md has them too).
NOTES_BLOCKS = (
    "priority",
    "priority-4x4",
    "priority-slow",
    "priority-regress",
    "priority-ideal",
    "pd",
)
COMMANDS = {
    "routing": ".venv/bin/python benchmarks/routing.py",
    "overhead": ".venv/bin/python benchmarks/overhead.py",
    "flowcontrol": ".venv/bin/python benchmarks/flowcontrol.py",
    "scheduling": ".venv/bin/python benchmarks/scheduling.py",
    "sim_capacity": ".venv/bin/python benchmarks/sim_capacity.py",
    "soak": ".venv/bin/python benchmarks/soak.py --write",
    "pd-2p2d": ".venv/bin/python benchmarks/pd.py",
}
_BLOCK = re.compile(
    r"(<!-- BEGIN figures:(?P<name>[\w-]+) [^\n]*-->\n)"
    r"(?P<body>.*?)"
    r"(<!-- END figures:(?P=name) -->)",
    re.S,
)


def _when(r: dict[str, Any]) -> str:
    return f"{r['measured_at']}, {r['cpus']} CPUs, load {r['load_average_1m']:g}"


def _missing(name: str) -> str:
    return f"not measured into `benchmarks/results/` yet: run `{COMMANDS[name]}`"


def _x(value: float | None) -> str:
    return "?" if value is None else f"{value:.1f}x"


# -- routing (benchmarks/results/results.json, written by routing.py) ----------------------------
def routing_summary(res: dict[str, Any] | None) -> str:
    """The routing benchmark in one cell: the shipped arm first, then the others as named."""
    if res is None:
        return _missing("routing")
    wl = res["workloads"]
    sp = wl.get("shared_prefix", {}).get("arms", {})
    pr = wl.get("priority", {}).get("arms", {})
    parts = (
        [] if "shipped" in sp or "shipped" in pr else ["`shipped` (no config file): not run yet"]
    )
    if "round-robin" in sp:
        base = stages(sp["round-robin"]["tenants"][0])
        hit_rr = sp["round-robin"]["pool"]["prefix_hit_rate"]
        for arm in (a for a in ("shipped", "fc-off") if a in sp):
            rows = list(zip(base, stages(sp[arm]["tenants"][0]), strict=False))
            ratios = " / ".join(_x(ratio(a["ttft_p90"], b["ttft_p90"])) for (_, a), (_, b) in rows)
            rates = " / ".join(f"{rate:g}" for (rate, _), _ in rows)
            hit = sp[arm]["pool"]["prefix_hit_rate"]
            parts.append(
                f"`{arm}` shared prefix: p90 TTFT {ratios} lower than round robin at {rates} "
                f"req/s, {hit:.0%} vs {hit_rr:.0%} prefix hits"
            )
    for arm in (a for a in ("shipped", "fc-ttl20", "fc-concurrency", "fc-holdback") if a in pr):
        if "idle" not in pr[arm]:
            continue
        (_, idle), *_ = stages(pr[arm]["idle"])
        critical = next(t for t in pr[arm]["tenants"] if t["tenant"] == "critical")
        (_, busy), *_ = stages(critical)
        x = ratio(busy["ttft_p99"], idle["ttft_p99"])
        parts.append(f"`{arm}` priority overload: critical p99 TTFT {_x(x)} its idle value")
    when = f"{res['started']}, {res['pool']['count']} simulated servers"
    return f"[BENCHMARKS.md](BENCHMARKS.md) ({when}): " + "; ".join(parts)


# -- overhead ---------------------------------------------------------------------------------
def _points(r: dict[str, Any]) -> dict[tuple[int, str], dict[str, Any]]:
    return {(p["connections"], p["target"]): p for p in r["points"]}


def overhead_summary(r: dict[str, Any] | None) -> str:
    if r is None:
        return _missing("overhead")
    pts = _points(r)
    parts = []
    for target, label in (("fast", "fast front"), ("extproc", "ext_proc front")):
        one, alone1 = pts.get((1, target)), pts.get((1, "envoy-alone"))
        many, alone32 = pts.get((32, target)), pts.get((32, "envoy-alone"))
        if one and alone1 and many and alone32:
            parts.append(
                f"{label} +{one['p50_ms'] - alone1['p50_ms']:.2f} ms p50 at c=1, "
                f"{many['rps']:.0f} req/s ({many['rps'] / alone32['rps']:.2f}x Envoy alone) at c=32"
            )
    return "; ".join(parts) + f" ({_when(r)})"


def overhead_table(r: dict[str, Any] | None) -> str:
    if r is None:
        return _missing("overhead") + "\n"
    s = r["setup"]
    lines = [
        f"`{r['command']}` ({_when(r)}; {s['generator']}, {s['duration_s']:g} s per point after "
        f"{s['warmup_s']:g} s warm-up, ext_proc mode {s['extproc_mode']}, access-log flush "
        f"{s['als_flush_s']:g} s, flow control {'on' if s['flow_control'] else 'off'}):",
        "",
        "| c | target | req/s | ratio to Envoy alone | p50 | added p50 | p99 | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    pts = _points(r)
    for (c, target), p in pts.items():
        alone = pts[(c, "envoy-alone")]
        added = "" if target == "envoy-alone" else f"+{p['p50_ms'] - alone['p50_ms']:.2f} ms"
        lines.append(
            f"| {c} | {target} | {p['rps']:.0f} | {p['rps'] / alone['rps']:.2f} | "
            f"{p['p50_ms']:.2f} ms | {added} | {p['p99_ms']:.2f} ms | {p['errors']} |"
        )
    return "\n".join(lines) + "\n"


# -- flow control, scheduling, simulator ------------------------------------------------------
def flowcontrol_summary(r: dict[str, Any] | None) -> str:
    if r is None:
        return _missing("flowcontrol")
    core = [c["ops_per_s"] for c in r["core"]]
    mem = [c["bytes"] for c in r["core"]]
    return (
        f"{r['admit']['ops_per_s'] / 1000:.0f}k admit ops/s (asyncio), "
        f"{min(core) / 1000:.0f}-{max(core) / 1000:.0f}k ops/s for the queueing core; "
        f"{min(mem):.0f}-{max(mem):.0f} B per queued request ({_when(r)})"
    )


def flowcontrol_paragraph(r: dict[str, Any] | None) -> str:
    if r is None:
        return _missing("flowcontrol") + "\n"
    s = r["setup"]
    lines = [
        f"`{r['command']}` ({_when(r)}; {s['queued']:,} queued requests over {s['flows']:,} "
        f"flows in {s['bands']} bands):",
        "",
        "| path | fairness | ordering | ops/s | bytes per queued request |",
        "|---|---|---|---|---|",
    ]
    for c in r["core"]:
        lines.append(
            f"| core | `{c['fairness']}` | `{c['ordering']}` | {c['ops_per_s']:,.0f} | "
            f"{c['bytes']:.0f} |"
        )
    a = r["admit"]
    lines.append(
        f"| async `admit` | round robin | fcfs | {a['ops_per_s']:,.0f} | {a['bytes']:.0f} "
        f"({a['bytes_with_task']:.0f} with the caller's task) |"
    )
    return "\n".join(lines) + "\n"


def scheduling_summary(r: dict[str, Any] | None) -> str:
    if r is None:
        return _missing("scheduling")
    rows = r["rows"]
    p50 = " / ".join(f"{x['p50_ms']:.2f}" for x in rows)
    eps = " / ".join(str(x["endpoints"]) for x in rows)
    return f"p50 {p50} ms at {eps} endpoints ({_when(r)})"


def scheduling_block(r: dict[str, Any] | None) -> str:
    if r is None:
        return _missing("scheduling") + "\n"
    lines = [
        f"`{r['command']}` ({_when(r)}; {r['setup']['requests']} requests per pool size, 4 KB "
        "prompts sharing 16 system prompts):",
        "",
        "| endpoints | decisions/s | p50 ms | p99 ms |",
        "|---|---|---|---|",
    ]
    for x in r["rows"]:
        lines.append(
            f"| {x['endpoints']} | {x['decisions_per_s']:,.0f} | {x['p50_ms']:.3f} | "
            f"{x['p99_ms']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def sim_summary(r: dict[str, Any] | None) -> str:
    if r is None:
        return _missing("sim_capacity")
    s, phases = r["setup"], r["phases"]
    parts = [
        f"{name}: {p['tokens_per_s'] / 1000:.1f}k tokens/s, "
        f"{100 * p['sim_cpu_core_share']:.0f}% of one core"
        for name, p in phases.items()
    ]
    head = (
        f"{s['instances']} instances x {s['concurrency']} running at {s['itl_s'] * 1000:g} ms ITL"
    )
    return f"{head}: " + "; ".join(parts) + f" ({_when(r)})"


def readme_table(results: Callable[[str], dict[str, Any] | None]) -> str:
    rows = [
        ("routing quality vs round robin (inference-perf, ~30 min)", "routing", routing_summary),
        ("EPP overhead, both fronts vs Envoy alone", "overhead", overhead_summary),
        ("flow control", "flowcontrol", flowcontrol_summary),
        ("scheduling (default profile, 4 KB prompts)", "scheduling", scheduling_summary),
        ("simulator capacity", "sim_capacity", sim_summary),
    ]
    lines = ["| benchmark | command | latest figures |", "|---|---|---|"]
    prio = readme_summary(results("priority"), results("priority-slow"))
    lines.append(
        "| priority out of the box, the full sweep with no config file (shared machine) | "
        f"`{SWEEP_COMMAND}` | {prio} |"
    )
    for title, name, summary in rows:
        lines.append(f"| {title} | `{COMMANDS[name]}` | {summary(results(name))} |")
    return "\n".join(lines) + "\n"


def soak_table(r: dict[str, Any] | None) -> str:
    """The soak's figures per front, against the issue's four requirements."""
    if r is None:
        return _missing("soak") + "\n"
    minutes = r["duration_s"] / 60
    lines = [
        f"{minutes:g} minutes per front, a fault every {r['fault_every_s']:g} s "
        f"(`{r['command']}`; {_when(r)}). Requirements "
        f"{'all met' if r['passed'] else 'NOT all met'}.",
        "",
        "| front | requests | 200 | other statuses | refused while Envoy was down | cut by a "
        "killed server | hung | faults | gauges when idle | `/metrics` | RSS growth after "
        "warm-up |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for front, f in sorted(r["fronts"].items()):
        answered = {str(k): v for k, v in f["answered"].items()}
        other = ", ".join(f"{k}: {v:,}" for k, v in sorted(answered.items()) if k != "200")
        faults = ", ".join(f"{k} {v}x" for k, v in sorted(f["faults"].items()))
        gauges = "0" if all(v == 0 for v in f["idle_gauges"].values()) else str(f["idle_gauges"])
        lines.append(
            f"| {front} | {f['requests']:,} | {answered.get('200', 0):,} | {other or '-'} | "
            f"{f['refused_while_envoy_down']:,} | {f['cut_by_a_killed_server']:,} | {f['hung']} | "
            f"{faults} | {gauges} | {f['metrics_bytes'] / 1024:.0f} KiB | "
            f"{f['rss_growth_mib']:.2f} MiB (from {f['rss_warm_mib']:g} MiB) |"
        )
    return "\n".join(lines) + "\n"


# -- P/D vs aggregated (benchmarks/results/pd-2p2d.json, written by pd.py) ----------------------
_PD_METRICS = (  # key, words, True when lower is better
    ("ttft_p90_ms", "p90 TTFT", True),
    ("itl_p90_ms", "p90 ITL", True),
    ("itl_max_p90_ms", "p90 longest decode gap", True),
    ("output_tokens_per_s", "throughput", False),
)


def _pd_verdict(pd: dict[str, Any], agg: dict[str, Any]) -> str:
    """Where P/D wins and where it loses, from the numbers (5% either way counts as even)."""
    wins, losses, even = [], [], []
    for key, words, lower in _PD_METRICS:
        a, b = pd[key], agg[key]
        r = ratio(b, a) if lower else ratio(a, b)
        if r is None or 0.95 <= r <= 1.05:
            even.append(words)
        elif r > 1:
            wins.append(f"{words} {a:g} vs {b:g}")
        else:
            losses.append(f"{words} {a:g} vs {b:g}")
    parts = [f"P/D wins on {', '.join(wins)}" if wins else "P/D wins on nothing"]
    parts.append(f"loses on {', '.join(losses)}" if losses else "loses on nothing")
    if even:
        parts.append(f"even on {', '.join(even)}")
    return "; ".join(parts)


def pd_block(r: dict[str, Any] | None) -> str:
    if r is None:
        return _missing("pd-2p2d") + "\n"
    setup = r["setup"]
    lines = [
        f"{setup['pd']} against {setup['servers']} aggregated servers (`{setup['profile']}`, "
        f"`max_num_batched_tokens` {setup['max_num_batched_tokens']}, {setup['front']} front, "
        f"{setup['duration_s']:g} s of Poisson arrivals per cell; {_when(r)}). TTFT and ITL are "
        "the servers' model times (P/D: both legs); end-to-end is the client's clock. Command: "
        f"`{r['command']}`.",
        "",
        "| workload | arm | offered req/s | TTFT p50 / p90 ms | ITL p50 / p90 ms | longest gap "
        "p90 ms | end-to-end p50 / p90 ms | output tok/s | disaggregated |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    verdicts = []
    for workload, arms in r["workloads"].items():
        for arm, c in arms.items():
            lines.append(
                f"| {workload} ({c['prompt_tokens']} -> {c['output_tokens']} tokens) | {arm} | "
                f"{c['offered_rps']:g} | {c['ttft_p50_ms']:g} / {c['ttft_p90_ms']:g} | "
                f"{c['itl_p50_ms']:g} / {c['itl_p90_ms']:g} | {c['itl_max_p90_ms']:g} | "
                f"{c['e2e_p50_ms']:g} / {c['e2e_p90_ms']:g} | {c['output_tokens_per_s']:g} | "
                f"{c['disaggregated']} of {c['requests']} |"
            )
        if "pd" in arms and "aggregated" in arms:
            verdicts.append(f"- **{workload}**: {_pd_verdict(arms['pd'], arms['aggregated'])}.")
    return "\n".join([*lines, "", *verdicts]) + "\n"


# -- the blocks and where they live -----------------------------------------------------------
def blocks(directory: Path = RESULTS) -> dict[str, dict[str, str]]:
    """File (relative to the repository) -> block name -> the block's text."""

    def results(name: str) -> dict[str, Any] | None:
        # routing.py predates this naming: its file is results.json (beside its plots).
        return read_results("results" if name == "routing" else name, directory)

    published = {
        "pd": pd_block(results("pd-2p2d")),
        "precise_cost": precise_cost_block(results("precise_cost")),
        "priority": sweep_block(results("priority")),
        "priority-slow": slow_block(results("priority-slow")),
        "priority-4x4": ab_block(results("priority-4x4"), results("priority-4x4-noview")),
        "priority-regress": regress_block(results("priority-regress")),
        "priority-ideal": ideal_block(results("priority_ideal")),
    }
    return {
        "README.md": {"benchmarks": readme_table(results)},
        "docs/fast-front.md": {"overhead": overhead_table(results("overhead"))},
        "docs/flow-control.md": {"flowcontrol": flowcontrol_paragraph(results("flowcontrol"))},
        "docs/reliability.md": {"soak": soak_table(results("soak"))},
        "docs/scheduling.md": {
            "scheduling": scheduling_block(results("scheduling")),
            "pd": pd_block(results("pd-2p2d")),
        },
        "docs/precise-prefix.md": {
            "precise_cost": precise_cost_block(results("precise_cost")),
            "kv_pressure": kv_pressure_block(results("routing")),
        },
        "BENCHMARKS.md": published,
        # BENCHMARKS.md's notes are copied from here by routing.py: keep the copy current too.
        "benchmarks/routing/NOTES.md": {k: v for k, v in published.items() if k in NOTES_BLOCKS},
    }


def rewrite(text: str, wanted: dict[str, str], where: str) -> str:
    """``text`` with each marked block's body replaced; every wanted block must be there."""
    found: set[str] = set()

    def body(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in wanted:
            return match[0]
        found.add(name)
        return match[1] + wanted[name] + match[4]

    out = _BLOCK.sub(body, text)
    missing = sorted(set(wanted) - found)
    if missing:
        raise SystemExit(f"{where}: no marked block for {', '.join(missing)}")
    return out


def stale(root: Path = ROOT, directory: Path = RESULTS, *, write: bool = False) -> list[str]:
    """Files whose blocks differ from what the results say; rewritten when ``write``."""
    changed = []
    for rel, wanted in blocks(directory).items():
        path = root / rel
        text = path.read_text()
        new = rewrite(text, wanted, rel)
        if new != text:
            changed.append(rel)
            if write:
                path.write_text(new)
    return changed


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="only report stale blocks (exit 1)")
    args = ap.parse_args(argv)
    changed = stale(write=not args.check)
    for rel in changed:
        print(f"{'stale' if args.check else 'rewrote'}: {rel}")
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
