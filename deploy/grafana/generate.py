"""Write ``endpoint-picker.json``, the Grafana dashboard for the EPP's metrics.

Run ``python deploy/grafana/generate.py`` after changing a panel; a test checks that the committed
JSON is what this script writes and that every metric it queries is one the EPP exports.
Panels are listed as data (title, unit, queries) so the dashboard reads as a table of contents.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).with_name("endpoint-picker.json")
POOL = 'inference_pool="$pool"'
RATE = "$__rate_interval"


def q(expr: str, legend: str) -> dict[str, str]:
    return {"expr": expr, "legend": legend}


def p90(metric: str, by: str) -> str:
    return f"histogram_quantile(0.9, sum by (le, {by}) (rate({metric}_bucket[{RATE}])))"


# (row, [(title, unit, [queries])])
ROWS: list[tuple[str, list[tuple[str, str, list[dict[str, str]]]]]] = [
    (
        "Requests",
        [
            (
                "Requests/s by objective model",
                "reqps",
                [
                    q(
                        f"sum by (model_name) (rate(inference_objective_request_total[{RATE}]))",
                        "{{model_name}}",
                    )
                ],
            ),
            (
                "Errors/s by model and code",
                "reqps",
                [
                    q(
                        "sum by (model_name, error_code) "
                        f"(rate(inference_objective_request_error_total[{RATE}]))",
                        "{{model_name}} {{error_code}}",
                    )
                ],
            ),
            (
                "Request duration p90",
                "s",
                [
                    q(
                        p90("inference_objective_request_duration_seconds", "model_name"),
                        "{{model_name}}",
                    )
                ],
            ),
            (
                "Running requests",
                "short",
                [q("sum by (model_name) (inference_objective_running_requests)", "{{model_name}}")],
            ),
            (
                "Tokens/s (input, output)",
                "short",
                [
                    q(f"sum(rate(inference_objective_input_tokens_sum[{RATE}]))", "input"),
                    q(f"sum(rate(inference_objective_output_tokens_sum[{RATE}]))", "output"),
                ],
            ),
            (
                "Normalized time per output token p90",
                "s",
                [
                    q(
                        p90(
                            "inference_objective_normalized_time_per_output_token_seconds",
                            "model_name",
                        ),
                        "{{model_name}}",
                    )
                ],
            ),
        ],
    ),
    (
        "Flow control",
        [
            (
                "Queued requests per priority band",
                "short",
                [
                    q(
                        "sum by (priority) "
                        f"(inference_extension_flow_control_queue_size{{{POOL}}})",
                        "priority {{priority}}",
                    )
                ],
            ),
            (
                "Queued bytes per priority band",
                "bytes",
                [
                    q(
                        "sum by (priority) "
                        f"(inference_extension_flow_control_queue_bytes{{{POOL}}})",
                        "priority {{priority}}",
                    )
                ],
            ),
            (
                "Queue time p90 per priority",
                "s",
                [
                    q(
                        p90(
                            "inference_extension_flow_control_request_queue_duration_seconds",
                            "priority",
                        ),
                        "priority {{priority}}",
                    )
                ],
            ),
            (
                "Flow-control outcomes/s",
                "reqps",
                [
                    q(
                        "sum by (outcome) (rate("
                        "inference_extension_flow_control_request_queue_duration_seconds_count"
                        f"[{RATE}]))",
                        "{{outcome}}",
                    )
                ],
            ),
            (
                "Pool saturation (>= 1 holds requests)",
                "short",
                [q(f"inference_extension_flow_control_pool_saturation{{{POOL}}}", "saturation")],
            ),
        ],
    ),
    (
        "Scheduling",
        [
            (
                "Scheduler latency",
                "s",
                [
                    q(
                        "histogram_quantile(0.5, sum by (le) (rate("
                        f"inference_extension_scheduler_e2e_duration_seconds_bucket[{RATE}])))",
                        "p50",
                    ),
                    q(
                        "histogram_quantile(0.99, sum by (le) (rate("
                        f"inference_extension_scheduler_e2e_duration_seconds_bucket[{RATE}])))",
                        "p99",
                    ),
                ],
            ),
            (
                "Plugin latency p90",
                "s",
                [
                    q(
                        p90("inference_extension_plugin_duration_seconds", "plugin_name"),
                        "{{plugin_name}}",
                    )
                ],
            ),
            (
                "Requests/s routed per endpoint",
                "reqps",
                [
                    q(
                        "sum by (pod_name) (rate(inference_extension_scheduler_attempts_total"
                        f'{{status="success"}}[{RATE}]))',
                        "{{pod_name}}",
                    )
                ],
            ),
            (
                "Prefix cache hit ratio (mean)",
                "percentunit",
                [
                    q(
                        f"sum(rate(inference_extension_prefix_indexer_hit_ratio_sum[{RATE}])) / "
                        f"sum(rate(inference_extension_prefix_indexer_hit_ratio_count[{RATE}]))",
                        "hit ratio",
                    )
                ],
            ),
            (
                "Prefix indexer size",
                "short",
                [q("inference_extension_prefix_indexer_size", "entries")],
            ),
        ],
    ),
    (
        "Pool",
        [
            (
                "Queue per endpoint (model server)",
                "short",
                [q('inference_pool_per_pod_queue_size{name="$pool"}', "{{model_server_pod}}")],
            ),
            (
                "Average KV-cache utilization",
                "percentunit",
                [q('inference_pool_average_kv_cache_utilization{name="$pool"}', "kv cache")],
            ),
            (
                "Average running and queued per endpoint",
                "short",
                [
                    q('inference_pool_average_running_requests{name="$pool"}', "running"),
                    q('inference_pool_average_queue_size{name="$pool"}', "queued"),
                ],
            ),
            (
                "Ready endpoints",
                "short",
                [q('inference_pool_ready_pods{name="$pool"}', "ready")],
            ),
        ],
    ),
]


def panel(pid: int, title: str, unit: str, queries: list[dict[str, str]], x: int, y: int) -> Any:
    return {
        "id": pid,
        "type": "timeseries",
        "title": title,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 8, "w": 8, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "expr": t["expr"],
                "legendFormat": t["legend"],
            }
            for i, t in enumerate(queries)
        ],
    }


def dashboard() -> dict[str, Any]:
    panels: list[Any] = []
    pid, y = 1, 0
    for row, items in ROWS:
        panels.append({"id": pid, "type": "row", "title": row, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})  # fmt: skip
        pid, y = pid + 1, y + 1
        for i, (title, unit, queries) in enumerate(items):
            panels.append(panel(pid, title, unit, queries, (i % 3) * 8, y + (i // 3) * 8))
            pid += 1
        y += ((len(items) + 2) // 3) * 8
    return {
        "title": "endpoint-picker",
        "uid": "endpoint-picker",
        "tags": ["inference", "endpoint-picker", "gateway-api-inference-extension"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                },
                {
                    "name": "pool",
                    "label": "InferencePool",
                    "type": "query",
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "query": "label_values(inference_pool_ready_pods, name)",
                    "refresh": 2,
                    "current": {},
                },
            ]
        },
        "panels": panels,
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
    print(f"wrote {OUT}")
