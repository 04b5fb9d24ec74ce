"""Issue 15's figures, as render_figures.py quotes them: what precise prefix routing costs the
EPP (``precise_cost.json``) and what it buys under KV pressure (the routing ``results.json``)."""

from __future__ import annotations

from typing import Any

from routing_numbers import fmt, ratio, stages

COST_COMMAND = ".venv/bin/python benchmarks/precise_cost.py"
KV_COMMAND = ".venv/bin/python benchmarks/routing.py --workloads kv_pressure --merge"
KV_ARMS = (("round-robin", "round robin"), ("fc-off", "approximate"), ("precise", "precise"))


def _when(r: dict[str, Any]) -> str:
    return f"{r['measured_at']}, {r['cpus']} CPUs, load {r['load_average_1m']:g}"


def _ms(us: float) -> str:
    return f"{us / 1000:.2f} ms"


def precise_cost_block(r: dict[str, Any] | None) -> str:
    """Per request (p50 of both producers' ``prepare``) and ingestion (% of a core)."""
    if r is None:
        return f"not measured into `benchmarks/results/` yet: run `{COST_COMMAND}`\n"
    pr, ing = r["per_request"], r["ingestion"]
    toks = pr["tokenizers"]
    names = list(toks)
    lines = [
        f"`{r['command']}` ({_when(r)}): median CPU time per call (`time.process_time`; "
        "wall-clock medians are in the results file) over "
        f"{pr['repeats']} fresh requests of {pr['prompt_tokens']:,} tokens "
        f"({max(10, pr['repeats'] // 5)} for novel prompts):",
        "",
        "| added per request | " + " | ".join(f"tokenizer: {n}" for n in names) + " |",
        "|---|" + "---|" * len(names),
    ]
    suffixes = sorted(
        int(k.split("_")[2])
        for k in toks[names[0]]
        if k.startswith("prepare_shared_") and k.count("_") == 3  # prepare_shared_<n>_us
    )
    rows = [
        (f"both producers' `prepare`, shared prefix + {s}-token suffix", f"prepare_shared_{s}_us")
        for s in suffixes
    ] + [
        (
            f"the same, {suffixes[0]}-token suffix, `blockSize: 64` (llm-d's deploy config)",
            f"prepare_shared_{suffixes[0]}_block64_us",
        ),
        ("both producers' `prepare`, novel prompt (nothing cached)", "prepare_novel_us"),
        ("parts: tokenize the whole prompt", "tokenize_whole_us"),
        ("parts: hash every block key (no memo)", "keys_whole_us"),
        ("parts: index lookup, 8 endpoints", "lookup_us"),
        (f"parts: tokenize the {suffixes[0]}-token suffix alone", "tokenize_suffix_us"),
    ]
    for title, key in rows:
        if key not in toks[names[0]]:
            continue
        lines.append(f"| {title} | " + " | ".join(_ms(toks[n][key]) for n in names) + " |")
    if all("chars_per_token" in toks[n] for n in names):
        lines.append(
            "| the text: characters per token | "
            + " | ".join(f"{toks[n]['chars_per_token']:.1f}" for n in names)
            + " |"
        )
    if "approx_shared_us" in pr:
        lines += [
            "",
            "For comparison, the default configuration's `approx-prefix-cache-producer` (which "
            "the precise pipeline replaces) spent "
            f"**{_ms(pr['approx_shared_us'])}** in `prepare` on the same kind of request "
            f"(shared prefix + {suffixes[0]}-token suffix).",
        ]
    lines += [
        "",
        f"Ingestion: {ing['servers']} servers x {ing['block_events_per_s_per_server']:,.0f} "
        f"block events/s each (~{ing['block_events_per_s_measured']:,} in all) over real ZMQ"
        + (f" on {ing['event_loop']}" if ing.get("event_loop") else "")
        + " "
        f"used **{ing['core_percent']:.1f}% of one core** (user+sys over {ing['seconds']:g} s"
        + (
            f", the median of {len(ing['core_percent_windows'])} windows: "
            + ", ".join(f"{x:.1f}%" for x in ing["core_percent_windows"])
            if ing.get("core_percent_windows")
            else ""
        )
        + "; "
        f"{ing['gaps']} gaps, {ing['errors']} errors)"
        + (
            f". Of that, applying the batches (the ingester alone, no sockets) took "
            f"{ing['apply_us_per_batch']:.0f} us a batch of "
            f"{ing['block_events_per_s_per_server'] * 0.02:.0f} block events, "
            f"{ing['apply_core_percent']:.1f}% of a core at this rate; the rest is the "
            "sockets and the event loop."
            if "apply_us_per_batch" in ing
            else "."
        ),
    ]
    return "\n".join(lines) + "\n"


def kv_pressure_block(res: dict[str, Any] | None) -> str:
    """Round robin, approximate and precise at each load of the kv_pressure workload."""
    arms = (res or {}).get("workloads", {}).get("kv_pressure", {}).get("arms", {})
    if not arms:
        return f"not measured into `benchmarks/results/` yet: run `{KV_COMMAND}`\n"
    present = [(a, t) for a, t in KV_ARMS if a in arms]
    rates = [rate for rate, _ in stages(arms[present[0][0]]["tenants"][0])]
    lines = [
        f"`{KV_COMMAND}` (results in `benchmarks/results/results.json`, plot in "
        "[BENCHMARKS.md](../BENCHMARKS.md)); p90 TTFT / prompt tokens served from cache / output "
        "tokens/s, per offered load:",
        "",
        "| load | " + " | ".join(t for _, t in present) + " | approximate / precise p90 |",
        "|---|" + "---|" * (len(present) + 1),
    ]
    for i, rate in enumerate(rates):
        cells, p90 = [], {}
        for arm, _ in present:
            n = stages(arms[arm]["tenants"][0])[i][1]
            p90[arm] = n["ttft_p90"]
            cells.append(f"{fmt(n['ttft_p90'])} ms / {n['cached_frac']:.0%} / {fmt(n['out_tps'])}")
        x = ratio(p90.get("fc-off"), p90.get("precise"))
        lines.append(f"| {rate:g} req/s | " + " | ".join(cells) + f" | {fmt(x, 1)}x |")
    hits = [
        f"{t} {arms[a]['pool']['prefix_hit_rate']:.0%} (oracle "
        f"{arms[a]['pool']['oracle_hit_rate']:.0%})"
        for a, t in present
        if "oracle_hit_rate" in arms[a]["pool"]
    ]
    lines += ["", "Prefix hit rate over the whole run, simulators' count: " + ", ".join(hits) + "."]
    return "\n".join(lines) + "\n"
