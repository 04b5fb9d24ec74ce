"""The priority benchmark's figures as quoted in BENCHMARKS.md and README.md.

``benchmarks/render_figures.py`` calls these with the results files ``benchmarks/priority.py``
writes (``priority.json``: the sweep; ``priority-slow.json``: the slow-server scenarios), so the
documents never quote numbers no results file holds. Cells this machine could not drive are
counted apart (machine-bound), never as passes or fails of the EPP.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

SWEEP_COMMAND = ".venv/bin/python benchmarks/priority.py"
SLOW_COMMAND = (
    ".venv/bin/python benchmarks/priority.py --servers 4 --seqs 4 --outputs short --stream on "
    "--overloads 2 --fronts fast,extproc --slow half,midrun --window 12 --max-window 12 "
    "--name priority-slow"
)
GOALS = ("critical_p90", "critical_p99", "slots_busy", "accounting", "all_answered", "ordering")


def _bound(n: dict[str, Any]) -> bool:
    return bool((n.get("machine") or {}).get("machine_bound"))


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:,.0f}"


def _x(v: float | None, idle: float) -> str:
    return "-" if v is None or not idle else f"{v / idle:.1f}x"


def _when(r: dict[str, Any]) -> str:
    cells = r.get("cells", [])
    loads = sorted(
        m["loadavg_1m"] for c in cells if "loadavg_1m" in (m := c["numbers"].get("machine") or {})
    )
    text = f"{len(cells)} cells in {r.get('wall_s', 0) / 60:.0f} min"
    if "measured_at" in r:
        text += f", {r['measured_at']}, {r['cpus']} CPUs"
    if loads:
        text += (
            f", load average {loads[0]:.0f}-{loads[-1]:.0f} (median {loads[len(loads) // 2]:.0f})"
        )
    return text


def verdicts(r: dict[str, Any]) -> dict[str, Any]:
    """Counts over the sweep: met / missed / machine-bound, and per goal over driven cells."""
    driven = [c["numbers"] for c in r["cells"] if not _bound(c["numbers"])]
    bound = [c["numbers"] for c in r["cells"] if _bound(c["numbers"])]
    ran = [n for n in bound if not n.get("skipped")]
    return {
        "cells": len(r["cells"]),
        "driven": len(driven),
        "met": sum(all(n["goal"].values()) for n in driven),
        "machine_bound": len(bound),
        "skipped": len(bound) - len(ran),
        "per_goal": {g: sum(bool(n["goal"].get(g)) for n in driven) for g in GOALS},
        # Not a verdict (the machine, not the EPP, set these numbers): for information only,
        # over the machine-bound cells that ran.
        "bound_ran": len(ran),
        "bound_per_goal": {g: sum(bool(n["goal"].get(g)) for n in ran) for g in GOALS},
    }


def _pool_key(pool: str) -> list[int]:
    return [int(x) for x in pool.split("x")]


def _row(c: dict[str, Any]) -> str:
    k, n = c["cell"], c["numbers"]
    crit, idle = n["critical"], n["idle_p90"]
    missed = [g for g, v in n["goal"].items() if not v]
    goal = "met" if not missed else "missed: " + ", ".join(missed)
    if _bound(n):
        goal = "machine-bound: " + ", ".join(sorted(_kinds(n["machine"]["reasons"])))
    return (
        f"| {k['front']} | {k['servers']}x{k['seqs']} | {k['output']} | "
        f"{'on' if k['stream'] else 'off'} | {k['overload']:g}x | {_ms(idle)} | "
        f"{_ms(crit['p90'])} ({_x(crit['p90'], idle)}) | {_ms(crit['p99'])} "
        f"({_x(crit['p99'], idle)}) | {_ms(n['standard']['p90'])} | {_held(n)} | "
        f"{n['slots_busy']:.0%} | {'exact' if n['accounting_ok'] else 'off'} | {goal} |"
    )


def _held(n: dict[str, Any]) -> str:
    """Priority 0's p90 and sheddable's p50 time held in the EPP (histogram bucket bounds):
    the ordering goal's two sides; ``-`` in results written before they were recorded."""
    std, shed = n["standard"].get("epp_wait_p90"), n["sheddable"].get("epp_wait_p50")
    if std is None and shed is None:
        return "-"
    return f"<= {_bound_ms(std)} / <= {_bound_ms(shed)}"


def _bound_ms(v: float | None) -> str:
    if v is None:
        return "none"
    return "inf" if v == float("inf") else f"{v * 1000:g}"


def _kinds(reasons: list[str]) -> set[str]:
    """The signals that tripped, without their values ("simulators starved 0.44 s/s" ->
    "simulators starved")."""
    out = set()
    for x in reasons:
        if x.startswith("arrivals"):
            out.add("short of rate")
        elif x.startswith("client stopped"):
            out.add("client stopped")
        elif x.startswith("skipped"):
            out.add("skipped (lower load machine-bound)")
        else:
            out.add(" ".join(x.split(" ")[:2]))
    return out


def sweep_block(r: dict[str, Any] | None) -> str:
    """BENCHMARKS.md's sweep figures: the verdict counts, the heatmap, every cell (a machine-bound
    one with the signals that tripped), and the machine-bound cells counted by pool size."""
    if r is None:
        return f"Not measured into `benchmarks/results/` yet: run `{SWEEP_COMMAND}`.\n"
    v = verdicts(r)
    per = ", ".join(f"{g} {v['per_goal'][g]}/{v['driven']}" for g in GOALS)
    lines = [
        f"`{SWEEP_COMMAND}` ({_when(r)}): **{v['met']} of {v['driven']} cells this machine "
        f"could drive met every goal; {v['machine_bound']} of {v['cells']} were machine-bound"
        + (
            f" ({v['skipped']} of them not run: the same cell at a lower load was already "
            "machine-bound by a signal that grows with load)"
            if v["skipped"]
            else ""
        )
        + f".** Per goal, over the driven cells: {per}.",
        "",
        "For information only (not a verdict: the machine set these numbers), the same counts "
        "over the machine-bound cells that ran: "
        + ", ".join(f"{g} {v['bound_per_goal'][g]}/{v['bound_ran']}" for g in GOALS)
        + ".",
        "",
        "![priority sweep heatmap](benchmarks/results/priority_heatmap.png)",
        "",
        "| front | servers x seqs | output | stream | load | idle p90 ms | critical p90 ms | "
        "critical p99 ms | priority-0 p90 ms | held in EPP ms: priority-0 p90 / sheddable p50 | "
        "slots busy | accounting | goal |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [_row(c) for c in r["cells"]]
    bound: dict[str, Counter[str]] = {}
    for c in r["cells"]:
        n = c["numbers"]
        if _bound(n):
            pool = f"{c['cell']['servers']}x{c['cell']['seqs']}"
            reasons = n["machine"]["reasons"]
            bound.setdefault(pool, Counter()).update(_kinds(reasons))
            bound[pool]["cells"] += 1
    if bound:
        lines += ["", "Machine-bound cells (neither pass nor fail), by servers x max-num-seqs:", ""]
        for pool, counts in sorted(
            bound.items(), key=lambda kv: [int(x) for x in kv[0].split("x")]
        ):
            n_cells = counts.pop("cells")
            top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:3]  # ties: by name
            common = ", ".join(f"{k} ({n})" for k, n in top)
            lines.append(f"- {pool}: {n_cells} cells; signals: {common}")
    return "\n".join(lines) + "\n"


def slow_block(r: dict[str, Any] | None) -> str:
    """BENCHMARKS.md's slow-server figures: per scenario and front, the slow server's learned
    capacity and time to learn, its queue, and critical's latency."""
    if r is None:
        return f"Not measured into `benchmarks/results/` yet: run `{SLOW_COMMAND}`.\n"
    lines = [
        f"`{SLOW_COMMAND}` ({_when(r)}):",
        "",
        "| front | slow server | learned capacity (min-max) | time to learn | its queue (mean) | "
        "critical p90 ms (x idle) | critical p99 ms | slots busy | accounting | goal |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in r["cells"]:
        k, n = c["cell"], c["numbers"]
        s = n.get("slow_server") or {}
        cap = s.get("capacity_min_max")
        crit, idle = n["critical"], n["idle_p90"]
        missed = [g for g, v in n["goal"].items() if not v]
        goal = "met" if not missed else "missed: " + ", ".join(missed)
        if _bound(n):
            goal = "machine-bound (" + "; ".join(n["machine"]["reasons"]) + ")"
        lines.append(
            f"| {k['front']} | {k['slow']} | {'-' if not cap else f'{cap[0]:g}-{cap[1]:g}'} | "
            f"{s.get('learned_s', 0):.1f} s | {s.get('waiting', 0):.1f} | {_ms(crit['p90'])} "
            f"({_x(crit['p90'], idle)}) | {_ms(crit['p99'])} | {n['slots_busy']:.0%} | "
            f"{'exact' if n['accounting_ok'] else 'off'} | {goal} |"
        )
    return "\n".join(lines) + "\n"


def readme_summary(sweep: dict[str, Any] | None, slow: dict[str, Any] | None) -> str:
    """One table cell for README's benchmark table."""
    if sweep is None:
        return f"not measured into `benchmarks/results/` yet: run `{SWEEP_COMMAND}`"
    v = verdicts(sweep)
    text = (
        f"{v['met']} of {v['driven']} driven cells met every goal ({v['machine_bound']} of "
        f"{v['cells']} machine-bound); critical p90 goal {v['per_goal']['critical_p90']}/"
        f"{v['driven']}, slots >= 90% busy {v['per_goal']['slots_busy']}/{v['driven']}, "
        f"accounting exact {v['per_goal']['accounting']}/{v['driven']} ({_when(sweep)})"
    )
    if slow is not None:
        learned = [
            (c["numbers"].get("slow_server") or {}).get("learned_s", 0.0) for c in slow["cells"]
        ]
        text += f"; slow server learned within {max(learned):.1f} s"
    return text


REGRESS_COMMAND = (
    ".venv/bin/python benchmarks/routing.py --workloads shared_prefix,uniform "
    "--arms round-robin,shipped --out /tmp/p2_routing_full"
)


def regress_block(r: dict[str, Any] | None) -> str:
    """BENCHMARKS.md's must-not-regress figures: the shipped defaults (no config file, so the
    learned-capacity detector) against round robin, per offered rate: shared-prefix p90 TTFT
    (goal: >= 20x lower) and prefix hits; uniform output throughput (goal: >= 0.95x)."""
    if r is None:
        return f"Not measured into `benchmarks/results/` yet: run `{REGRESS_COMMAND}`.\n"
    from routing_numbers import ratio, stages

    wl = r["workloads"]
    command = f".venv/bin/python {r['command']}" if r.get("command") else REGRESS_COMMAND
    lines = [f"`{command}` (copied to `benchmarks/results/priority-regress.json`):", ""]
    sp = wl.get("shared_prefix", {}).get("arms", {})
    if "round-robin" in sp and "shipped" in sp:
        rows = zip(
            stages(sp["round-robin"]["tenants"][0]),
            stages(sp["shipped"]["tenants"][0]),
            strict=False,
        )
        cells = [
            f"{rate:g} req/s: p90 TTFT {b['ttft_p90']:,.0f} vs {a['ttft_p90']:,.0f} ms "
            f"({ratio(a['ttft_p90'], b['ttft_p90']) or 0:.1f}x lower)"
            for (rate, a), (_, b) in rows
            if a["ttft_p90"] and b["ttft_p90"]
        ]
        hits = (
            sp["shipped"]["pool"]["prefix_hit_rate"],
            sp["round-robin"]["pool"]["prefix_hit_rate"],
        )
        lines.append(
            f"- shared prefix, shipped vs round robin: {'; '.join(cells)}; prefix hits "
            f"{hits[0]:.0%} vs {hits[1]:.0%}"
        )
    un = wl.get("uniform", {}).get("arms", {})
    if "round-robin" in un and "shipped" in un:
        rows = zip(
            stages(un["round-robin"]["tenants"][0]),
            stages(un["shipped"]["tenants"][0]),
            strict=False,
        )
        cells = [
            f"{rate:g} req/s: {b['out_tps']:,.0f} vs {a['out_tps']:,.0f} tok/s "
            f"({ratio(b['out_tps'], a['out_tps']) or 0:.2f}x)"
            for (rate, a), (_, b) in rows
        ]
        lines.append(f"- uniform, shipped vs round robin: {'; '.join(cells)}")
    return "\n".join(lines) + "\n"


AB_COMMAND = (
    ".venv/bin/python benchmarks/priority.py --servers 4 --seqs 4 --outputs short --stream on "
    "--overloads 2 --fronts fast,extproc --window 8 --max-window 8 --name priority-4x4"
)


def ab_block(view: dict[str, Any] | None, noview: dict[str, Any] | None) -> str:
    """BENCHMARKS.md's server-view A/B: the same cell with the shipped defaults and with
    ``serverView: false``, run back to back."""
    if view is None or noview is None:
        return (
            f"Not measured into `benchmarks/results/` yet: run `{AB_COMMAND}`, and the same "
            'with `--detector-params "{serverView: false}" --name priority-4x4-noview`.\n'
        )
    lines = [
        f'`{AB_COMMAND}` ({_when(view)}), then the same with `--detector-params "{{serverView: '
        f'false}}" --name priority-4x4-noview` ({_when(noview)}):',
        "",
        "| front | server view | idle p90 ms | critical p90 ms | critical p99 ms | "
        "priority-0 p90 ms | slots busy | EPP in flight / servers' running + waiting | "
        "accounting | goal |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for arm, r in (("on (shipped)", view), ("off", noview)):
        for c in r["cells"]:
            n = c["numbers"]
            w, crit, idle = n["window_means"], n["critical"], n["idle_p90"]
            missed = [g for g, v in n["goal"].items() if not v]
            goal = "met" if not missed else "missed: " + ", ".join(missed)
            if _bound(n):
                goal += " (machine-bound: " + ", ".join(sorted(_kinds(n["machine"]["reasons"])))
                goal += ")"
            lines.append(
                f"| {c['cell']['front']} | {arm} | {_ms(idle)} | {_ms(crit['p90'])} "
                f"({_x(crit['p90'], idle)}) | {_ms(crit['p99'])} ({_x(crit['p99'], idle)}) | "
                f"{_ms(n['standard']['p90'])} | {n['slots_busy']:.0%} | "
                f"{w.get('epp_inflight', 0):.1f} / {w['running'] + w['waiting']:.1f} | "
                f"{'exact' if n['accounting_ok'] else 'off'} | {goal} |"
            )
    return "\n".join(lines) + "\n"


IDEAL_COMMAND = ".venv/bin/python benchmarks/priority_ideal.py"


def _reach(f: dict[str, Any] | None) -> str:
    if f is None:
        return "-"
    if f["best_reserve"] is None:
        return "none"
    text = f"{f['best_reserve']} ({f['best_busy']:.0%} busy)"
    return text + ("; shipped meets it" if f["shipped_meets"] else "; shipped does not")


def _measured(f: dict[str, Any] | None) -> str:
    if f is None:
        return "-"
    if f["measured_verdict"] != "missed":
        return str(f["measured_verdict"])
    return "missed " + ", ".join(g.replace("critical_", "") for g in f["measured_missed"])


def ideal_tally(r: dict[str, Any]) -> Counter[str]:
    """Cells (row x front) by what the model says of them: ``none`` (no reserve meets the goal),
    ``shipped`` (the shipped reserve does), ``other`` (only another reserve does)."""
    tally: Counter[str] = Counter()
    for row in r["rows"]:
        for f in row["fronts"].values():
            if f["best_reserve"] is None:
                tally["none"] += 1
            elif f["shipped_meets"]:
                tally["shipped"] += 1
            else:
                tally["other"] += 1
    return tally


def ideal_block(r: dict[str, Any] | None) -> str:
    """BENCHMARKS.md's model of an ideal non-preemptive EPP against the sweep's small streaming
    cells (``benchmarks/priority_ideal.py``)."""
    if r is None:
        return f"Not computed into `benchmarks/results/` yet: run `{IDEAL_COMMAND}`.\n"
    t = ideal_tally(r)
    total = sum(t.values())
    lines = [
        f"`{r['command']}` ({r['measured_at']}; {r['criticals']:,} critical arrivals a run; the "
        f"sweep of {r['sweep']['measured_at']}). Model wait p90 / p99 in ms at the shipped "
        "reserve; the goal's bounds are 2x / 3x the sweep's idle p90 + 50 ms. Cells (pool x "
        f"front) no reserve reaches: **{t['none']} of {total}**; reached at the shipped reserve: "
        f"{t['shipped']}; only with another: {t['other']}.",
        "",
        "| pool | output | overload | shipped reserve | model at it: wait p90 / p99 ms, busy | "
        "smallest reserve meeting the goal (fast / extproc) | sweep measured (fast / extproc) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in r["rows"]:
        k, at = row["shipped_reserve"], row["at_shipped"]
        fast, ext = row["fronts"].get("fast"), row["fronts"].get("extproc")
        lines.append(
            f"| {row['servers']} x {row['seqs']} | {row['output']} | {row['overload']:g}x | {k} | "
            f"{_ms(at['wait_p90'])} / {_ms(at['wait_p99'])}, {at['busy']:.0%} | "
            f"{_reach(fast)} / {_reach(ext)} | {_measured(fast)} / {_measured(ext)} |"
        )
    return "\n".join(lines) + "\n"
