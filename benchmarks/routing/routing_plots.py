"""PNG plots of a run (matplotlib, headless): latency and throughput vs load, per-priority TTFT."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from routing_numbers import stages

COLORS = {
    "round-robin": "#7f7f7f",
    "random": "#bcbd22",
    "shipped": "#9467bd",
    "fc-off": "#1f77b4",
    "fc-ttl20": "#2ca02c",
    "fc-concurrency": "#d62728",
    "fc-holdback": "#ff7f0e",
    "precise": "#e377c2",
}


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def load_plot(workload: str, entry: dict[str, Any], path: Path) -> Path:
    """p50/p90 TTFT and output tokens/s against offered load, one line per arm."""
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for arm, res in entry["arms"].items():
        rows = stages(res["tenants"][0])
        rates = [r for r, _ in rows]
        color = COLORS.get(arm)
        p90 = [n["ttft_p90"] for _, n in rows]
        p50 = [n["ttft_p50"] for _, n in rows]
        ax1.plot(rates, p90, "o-", color=color, label=f"{res['title']} p90")
        ax1.plot(rates, p50, "x--", color=color, alpha=0.6, label=f"{res['title']} p50")
        ax2.plot(rates, [n["out_tps"] for _, n in rows], "o-", color=color, label=res["title"])
    ax1.set_yscale("log")
    ax1.set_xlabel("offered load (requests/s)")
    ax1.set_ylabel("TTFT (ms, log)")
    ax1.set_title(f"{workload}: time to first token")
    ax1.legend(fontsize=7)
    ax1.grid(True, which="both", alpha=0.3)
    ax2.set_xlabel("offered load (requests/s)")
    ax2.set_ylabel("output tokens/s")
    ax2.set_title(f"{workload}: output throughput")
    ax2.legend(fontsize=7)
    ax2.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def kv_pressure_plot(entry: dict[str, Any], path: Path) -> Path:
    """Issue 15's three measures against offered load, one line per arm: p90 TTFT, prefix hit
    rate (the share of prompt tokens served from cache, per stage; dotted: the simulators'
    oracle over the whole run) and output throughput."""
    plt = _plt()
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(13, 4))
    for arm, res in entry["arms"].items():
        rows = stages(res["tenants"][0])
        rates = [r for r, _ in rows]
        color = COLORS.get(arm)
        ax1.plot(rates, [n["ttft_p90"] for _, n in rows], "o-", color=color, label=res["title"])
        hits = [100 * n["cached_frac"] for _, n in rows]
        ax2.plot(rates, hits, "o-", color=color, label=res["title"])
        oracle = res.get("pool", {}).get("oracle_hit_rate")
        if oracle is not None:
            ax2.axhline(100 * oracle, color=color, ls=":", lw=1)
        ax3.plot(rates, [n["out_tps"] for _, n in rows], "o-", color=color, label=res["title"])
    ax1.set_yscale("log")
    ax1.set_ylabel("p90 TTFT (ms, log)")
    ax1.set_title("kv_pressure: p90 time to first token")
    ax2.set_ylim(0, 100)
    ax2.set_ylabel("prompt tokens from cache (%)")
    ax2.set_title("hit rate (dotted: oracle, whole run)")
    ax3.set_ylabel("output tokens/s")
    ax3.set_title("output throughput")
    for ax in (ax1, ax2, ax3):
        ax.set_xlabel("offered load (requests/s)")
        ax.legend(fontsize=7)
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def priority_plot(entry: dict[str, Any], path: Path) -> Path:
    """p50 and p99 TTFT per tenant (priority), grouped by arm; the idle reference dashed."""
    plt = _plt()
    arms = list(entry["arms"])
    tenants = [t["tenant"] for t in entry["arms"][arms[0]]["tenants"]]
    fig, ax = plt.subplots(figsize=(10, 5.6))
    width = 0.8 / max(len(arms), 1)
    for i, arm in enumerate(arms):
        res = entry["arms"][arm]
        p99 = []
        p50 = []
        for t in res["tenants"]:
            (_, n), *_ = stages(t)
            p99.append(n["ttft_p99"] or 0.0)
            p50.append(n["ttft_p50"] or 0.0)
        xs = [j + i * width for j in range(len(tenants))]
        color = COLORS.get(arm)
        ax.bar(xs, p99, width, color=color, alpha=0.45, label=f"{res['title']} p99")
        ax.bar(xs, p50, width, color=color, label=f"{res['title']} p50")
        if "idle" in res:
            (_, idle), *_ = stages(res["idle"])
            if idle["ttft_p99"]:
                ax.axhline(idle["ttft_p99"], color=color, ls=":", lw=1)
    ax.set_yscale("log")
    ax.set_xticks([j + width * (len(arms) - 1) / 2 for j in range(len(tenants))])
    prios = [t["priority"] for t in entry["arms"][arms[0]]["tenants"]]
    ax.set_xticklabels([f"{t} (priority {p})" for t, p in zip(tenants, prios, strict=False)])
    ax.set_ylabel("TTFT (ms, log); dotted: critical p99 on an idle pool")
    ax.set_title("priority overload (~2x capacity): TTFT by tenant")
    ax.legend(fontsize=7, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.12))
    ax.grid(True, axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def write_plots(results: dict[str, Any], out: Path) -> dict[str, Path]:
    """Every plot the results allow, under ``out``; {workload: png}."""
    out.mkdir(parents=True, exist_ok=True)
    made: dict[str, Path] = {}
    for name, entry in results["workloads"].items():
        if not entry["arms"]:
            continue
        if name == "priority":
            made[name] = priority_plot(entry, out / "routing_priority_ttft.png")
        elif name == "kv_pressure":
            made[name] = kv_pressure_plot(entry, out / "routing_kv_pressure_vs_load.png")
        else:
            made[name] = load_plot(name, entry, out / f"routing_{name}_vs_load.png")
    return made
