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
    idle: list[float],
    outcomes: dict[str, dict[str, int]],
    busy: float,
    waiting: float,
    slots: int,
) -> dict[str, Any]:
    """What the issue asks per cell, plus the goal's verdict for each target."""
    out: dict[str, Any] = {"slots": slots, "slots_busy": busy / slots if slots else 0.0}
    out["server_waiting_mean"] = waiting
    idle_p90 = pct(idle, 0.9) or 0.0
    out["idle_p90"] = idle_p90
    for name, (prio, _) in MIX.items():
        mine = [s for s in shots if s.objective == name]
        ok = [s.ttfb for s in mine if s.status == 200 and s.ttfb is not None]
        out[name] = {
            "priority": prio,
            "sent": len(mine),
            "ok": len(ok),
            "p50": pct(ok, 0.5),
            "p90": pct(ok, 0.9),
            "p99": pct(ok, 0.99),
            "statuses": _statuses(mine),
        }
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
        "all_answered": crit["ok"] == crit["sent"]
        and out["standard"]["ok"] == out["standard"]["sent"],
    }
    out["critical_over_idle"] = (crit["p90"] / idle_p90) if crit["p90"] and idle_p90 else None
    return out


def _statuses(shots: list[Shot]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for s in shots:
        key = "cancelled" if s.status is None else str(s.status)
        counts[key] = counts.get(key, 0) + 1
    return counts


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.0f}"


def table(cells: list[dict[str, Any]]) -> str:
    """A Markdown table, one row per cell."""
    head = (
        "| front | detector | servers | seqs | output | stream | load | idle p90 ms | "
        "critical p90 ms (x idle) | critical p99 ms | priority-0 p90 ms | sheddable p90 ms | "
        "sheddable 200/cancelled | slots busy | server queue | accounting | goal |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    rows = []
    for c in cells:
        k, n = c["cell"], c["numbers"]
        crit, std, shed = n["critical"], n["standard"], n["sheddable"]
        ratio = n["critical_over_idle"]
        goal = n["goal"]
        met = (
            "met"
            if all(goal.values())
            else "missed: " + ", ".join(g for g, v in goal.items() if not v)
        )
        rows.append(
            f"| {k['front']} | {k['detector']} | {k['servers']} | {k['seqs']} | {k['output']} | "
            f"{'on' if k['stream'] else 'off'} | {k['overload']}x | {_ms(n['idle_p90'])} | "
            f"{_ms(crit['p90'])} ({ratio:.1f}x) | {_ms(crit['p99'])} | {_ms(std['p90'])} | "
            f"{_ms(shed['p90'])} | {shed['statuses'].get('200', 0)}/"
            f"{shed['statuses'].get('cancelled', 0)} | {n['slots_busy']:.0%} | "
            f"{n['server_waiting_mean']:.1f} | {'ok' if n['accounting_ok'] else 'MISMATCH'} | "
            f"{met} |"
            if ratio is not None
            else f"| {k['front']} | {k['detector']} | ... | no critical answered | |"
        )
    return head + "\n".join(rows) + "\n"


def heatmap(cells: list[dict[str, Any]], path: Path) -> Path:
    """Critical p90 over idle p90, one panel per front: rows (servers, seqs), columns (output,
    streaming, overload). Green at or under the goal, red over it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fronts = sorted({c["cell"]["front"] for c in cells})
    fig, axes = plt.subplots(1, len(fronts), figsize=(6 * len(fronts), 4), squeeze=False)
    for ax, front in zip(axes[0], fronts, strict=True):
        mine = [c for c in cells if c["cell"]["front"] == front]
        rows = sorted({(c["cell"]["servers"], c["cell"]["seqs"]) for c in mine})
        cols = sorted(
            {(c["cell"]["output"], c["cell"]["stream"], c["cell"]["overload"]) for c in mine}
        )
        grid = [[float("nan")] * len(cols) for _ in rows]
        for c in mine:
            k = c["cell"]
            r = rows.index((k["servers"], k["seqs"]))
            col = cols.index((k["output"], k["stream"], k["overload"]))
            grid[r][col] = c["numbers"]["critical_over_idle"] or float("nan")
        im = ax.imshow(grid, cmap="RdYlGn_r", vmin=1.0, vmax=4.0, aspect="auto")
        for r, row in enumerate(grid):
            for col, v in enumerate(row):
                if v == v:
                    ax.text(col, r, f"{v:.1f}", ha="center", va="center", fontsize=8)
        ax.set_yticks(range(len(rows)), [f"{s}x{q}" for s, q in rows])
        ax.set_xticks(
            range(len(cols)),
            [f"{o[0]}{'S' if st else ''} {ov}x" for o, st, ov in cols],
            rotation=90,
            fontsize=7,
        )
        ax.set_title(f"critical p90 / idle p90 ({front} front)")
        ax.set_ylabel("servers x max-num-seqs")
        fig.colorbar(im, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
