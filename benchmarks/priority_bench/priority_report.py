"""Per-cell numbers of the priority benchmark, its Markdown table and its heatmap PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from priority_load import MIX, Shot


def pct(xs: list[float], q: float) -> float | None:
    """The ``q`` quantile (nearest rank) of ``xs``; None when empty."""
    if not xs:
        return None
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q * len(s) + 0.5) - 1))]


def cell_numbers(
    shots: list[Shot],
    scored: list[Shot],
    idle: list[float],
    outcomes: dict[str, dict[str, int]],
    means: dict[str, float],
    slots: int,
    waits: dict[str, dict[str, int]] | None = None,
) -> dict[str, Any]:
    """What the issue asks per cell, plus the goal's verdict for each target. Latencies are of
    ``scored`` (sent in the measurement window); accounting is of every shot of the cell;
    ``means`` are the sampler's window means (servers' running and waiting, the EPP's view);
    ``waits`` the EPP's queue-duration buckets of dispatched requests per priority (see
    :func:`bucket_quantile`)."""
    busy = means.get("running", 0.0)
    out: dict[str, Any] = {"slots": slots, "slots_busy": busy / slots if slots else 0.0}
    out["server_waiting_mean"] = means.get("waiting", 0.0)
    out["window_means"] = means
    idle_p90 = pct(idle, 0.9) or 0.0
    out["idle_p90"] = idle_p90
    for name, (prio, _) in MIX.items():
        every = [s for s in shots if s.objective == name]
        mine = [s for s in scored if s.objective == name]
        ok = [s.ttfb for s in mine if s.status == 200 and s.ttfb is not None]
        out[name] = {
            "priority": prio,
            "sent": len(every),
            "scored": len(mine),
            "ok": len(ok),
            "p50": pct(ok, 0.5),
            "p90": pct(ok, 0.9),
            "p99": pct(ok, 0.99),
            "statuses": _statuses(mine),
        }
    for name, (prio, _) in MIX.items():
        held = (waits or {}).get(str(prio), {})
        out[name]["epp_wait_p50"] = bucket_quantile(held, 0.5)
        out[name]["epp_wait_p90"] = bucket_quantile(held, 0.9)
    crit = out["critical"]
    sent = {str(MIX[n][0]): out[n]["sent"] for n in MIX}
    counted = {p: sum(outcomes.get(p, {}).values()) for p in sent}
    out["epp_outcomes"] = outcomes
    out["accounting_ok"] = counted == sent
    out["goal"] = {
        "critical_p90": crit["p90"] is not None and crit["p90"] <= 2 * idle_p90 + 0.05,
        "critical_p99": crit["p99"] is not None and crit["p99"] <= 3 * idle_p90 + 0.05,
        "slots_busy": out["slots_busy"] >= 0.9,
        "accounting": out["accounting_ok"],
        "all_answered": crit["ok"] == crit["scored"]
        and out["standard"]["ok"] == out["standard"]["scored"],
        # Priority 0 never waits behind negative: the time the EPP held priority 0's dispatched
        # requests, at its p90, is no longer than sheddable's median (bucket bounds; trivially
        # true when no sheddable request was dispatched). Held time, not time to first byte:
        # without streaming the first byte comes after the whole output, whose length varies.
        "ordering": _held_in_order(out["standard"], out["sheddable"]),
    }
    out["critical_over_idle"] = (crit["p90"] / idle_p90) if crit["p90"] and idle_p90 else None
    return out


def skipped_numbers(slots: int, why: str) -> dict[str, Any]:
    """A cell not run because the same cell at a lower load was machine-bound by a signal that
    only grows with load (``why``): machine-bound, with nothing measured."""
    band = {"sent": 0, "scored": 0, "ok": 0, "p50": None, "p90": None, "p99": None}
    out: dict[str, Any] = {
        name: {**band, "priority": prio, "statuses": {}} for name, (prio, _) in MIX.items()
    }
    out.update(
        slots=slots,
        slots_busy=0.0,
        server_waiting_mean=0.0,
        window_means={},
        idle_p90=None,
        epp_outcomes={},
        accounting_ok=False,
        goal={},
        critical_over_idle=None,
        learned_slots=None,
        skipped=why,
        machine={"machine_bound": True, "reasons": [f"skipped: machine-bound at {why}"]},
        verdict="machine-bound",
        cell_wall_s=0.0,
    )
    return out


def bucket_quantile(buckets: dict[str, int], q: float) -> float | None:
    """The upper bound of the histogram bucket holding the ``q`` quantile, from cumulative
    ``{le: count}`` buckets (``+Inf`` as infinity); None when the histogram is empty."""
    bounds = sorted((float(le), n) for le, n in buckets.items())
    if not bounds or bounds[-1][1] <= 0:
        return None
    need = q * bounds[-1][1]
    return next(le for le, n in bounds if n >= need)


def _held_in_order(standard: dict[str, Any], sheddable: dict[str, Any]) -> bool:
    shed, std = sheddable.get("epp_wait_p50"), standard.get("epp_wait_p90")
    return shed is None or (std is not None and std <= shed)


def _statuses(shots: list[Shot]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for s in shots:
        key = "cancelled" if s.status is None else str(s.status)
        counts[key] = counts.get(key, 0) + 1
    return counts


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.0f}"


def goal_text(n: dict[str, Any]) -> str:
    """``met``, ``missed: <targets>``, or ``machine-bound (<why>)``: a cell this machine could
    not drive says nothing about the EPP (see priority_machine)."""
    machine = n.get("machine") or {}
    if machine.get("machine_bound"):
        return "machine-bound (" + "; ".join(machine.get("reasons", [])) + ")"
    goal = n["goal"]
    return (
        "met" if all(goal.values()) else "missed: " + ", ".join(g for g, v in goal.items() if not v)
    )


def table(cells: list[dict[str, Any]]) -> str:
    """A Markdown table, one row per cell."""
    head = (
        "| front | servers | seqs | output | stream | slow | load | idle p90 ms | "
        "critical p90 ms (x idle) | critical p99 ms | priority-0 p90 ms | sheddable p90 ms | "
        "slots busy | server queue | accounting | goal |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    rows = []
    for c in cells:
        k, n = c["cell"], c["numbers"]
        crit, std, shed = n["critical"], n["standard"], n["sheddable"]
        ratio = n["critical_over_idle"]
        crit_txt = f"{_ms(crit['p90'])} ({ratio:.1f}x)" if ratio is not None else "none answered"
        rows.append(
            f"| {k['front']} | {k['servers']} | {k['seqs']} | {k['output']} | "
            f"{'on' if k['stream'] else 'off'} | {k.get('slow', 'none')} | {k['overload']}x | "
            f"{_ms(n['idle_p90'])} | {crit_txt} | {_ms(crit['p99'])} | {_ms(std['p90'])} | "
            f"{_ms(shed['p90'])} | {n['slots_busy']:.0%} | {n['server_waiting_mean']:.1f} | "
            f"{'ok' if n['accounting_ok'] else 'MISMATCH'} | {goal_text(n)} |"
        )
    return head + "\n".join(rows) + "\n"


def summary(cells: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts over cells: met, missed (by target), machine-bound; and the busy share's range
    over the cells the machine could drive."""
    out: dict[str, Any] = {"cells": len(cells), "met": 0, "missed": 0, "machine_bound": 0}
    missed: dict[str, int] = {}
    busy = []
    for c in cells:
        n = c["numbers"]
        if (n.get("machine") or {}).get("machine_bound"):
            out["machine_bound"] += 1
            continue
        busy.append(n["slots_busy"])
        if all(n["goal"].values()):
            out["met"] += 1
        else:
            out["missed"] += 1
            for g, v in n["goal"].items():
                if not v:
                    missed[g] = missed.get(g, 0) + 1
    out["missed_by_target"] = missed
    out["slots_busy_min_median"] = [min(busy), sorted(busy)[len(busy) // 2]] if busy else None
    return out


def heatmap(cells: list[dict[str, Any]], path: Path) -> Path:
    """Critical p90 over idle p90, one panel per front: rows (servers, seqs), columns (output,
    streaming, overload). Green at or under 2x, red over it; machine-bound cells hatched, "M"
    (their number is shown, but it measures the machine)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    fronts = sorted({c["cell"]["front"] for c in cells})
    mine_all = [c for c in cells if c["cell"].get("slow", "none") == "none"] or cells
    width = max(6.0, 0.45 * len({_col(c) for c in mine_all}) + 2)
    fig, axes = plt.subplots(1, len(fronts), figsize=(width * len(fronts), 4.5), squeeze=False)
    cmap = plt.get_cmap("RdYlGn_r").with_extremes(bad="#d0d0d0")
    for ax, front in zip(axes[0], fronts, strict=True):
        mine = [c for c in mine_all if c["cell"]["front"] == front]
        rows = sorted({(c["cell"]["servers"], c["cell"]["seqs"]) for c in mine})
        cols = sorted({_col(c) for c in mine})
        grid = [[float("nan")] * len(cols) for _ in rows]
        marks = [[""] * len(cols) for _ in rows]
        bound_cells = []
        for c in mine:
            k, n = c["cell"], c["numbers"]
            r, col = rows.index((k["servers"], k["seqs"])), cols.index(_col(c))
            grid[r][col] = n["critical_over_idle"] or float("nan")
            text = "-" if grid[r][col] != grid[r][col] else f"{grid[r][col]:.1f}"
            if (n.get("machine") or {}).get("machine_bound"):
                marks[r][col] = text + " M"
                bound_cells.append((r, col))
            else:
                marks[r][col] = text + ("" if n["slots_busy"] >= 0.9 else "*")
        im = ax.imshow(grid, cmap=cmap, vmin=1.0, vmax=4.0, aspect="auto")
        for r, col in bound_cells:  # hatched: the machine, not the EPP, set this number
            ax.add_patch(
                Rectangle((col - 0.5, r - 0.5), 1, 1, fill=False, hatch="///", lw=0, alpha=0.5)
            )
        for r, row in enumerate(marks):
            for col, text in enumerate(row):
                ax.text(col, r, text, ha="center", va="center", fontsize=7)
        ax.set_yticks(range(len(rows)), [f"{s}x{q}" for s, q in rows])
        ax.set_xticks(
            range(len(cols)),
            [f"{o}{' stream' if st else ''} {ov}x" for o, st, ov in cols],
            rotation=90,
            fontsize=7,
        )
        ax.set_title(
            f"critical p90 / idle p90 ({front} front)\nM (hatched) = machine-bound, * = <90% busy"
        )
        ax.set_ylabel("servers x max-num-seqs")
        fig.colorbar(im, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _col(c: dict[str, Any]) -> tuple[str, bool, float]:
    k = c["cell"]
    return (k["output"], k["stream"], k["overload"])
