"""Upstream's per-request latency series: TTFT, TPOT, their last values and SLO violations.

``inference_objective_request_ttft_seconds`` / ``..._tpot_seconds`` (histograms), the
``inference_objective_inference_request_metric`` gauge (``type`` ttft/tpot) and
``inference_objective_request_slo_violation_total`` against the ``x-llm-d-slo-ttft-ms`` /
``x-llm-d-slo-tpot-ms`` headers (or GIE's ``x-slo-*-ms``). The director measures (it owns the
clock and the request's books); this module only records, so the director stays one journey.
"""

from __future__ import annotations

from typing import Any

from endpoint_picker import metrics as m
from endpoint_picker.requests.types import SLO_TPOT_HEADER, SLO_TTFT_HEADER, header_value


def record(
    histograms: tuple[Any, Any],
    labels: tuple[str, str],
    headers: dict[str, str],
    ttft: float,
    tpot: float | None,
) -> None:
    """Record one request's TTFT (seconds) and, when known, its TPOT; ``histograms`` are the
    (ttft, tpot) children of the request's (model, target model) series."""
    histograms[0].observe(ttft)
    m.REQUEST_GAUGES.labels(*labels, "ttft").set(ttft)
    _slo_check(labels, "ttft", ttft, header_value(headers, SLO_TTFT_HEADER))
    if tpot is not None:
        histograms[1].observe(tpot)
        m.REQUEST_GAUGES.labels(*labels, "tpot").set(tpot)
        _slo_check(labels, "tpot", tpot, header_value(headers, SLO_TPOT_HEADER))


def _slo_check(labels: tuple[str, str], kind: str, seconds: float, slo_ms: str | None) -> None:
    try:
        slo = float(slo_ms) / 1000.0 if slo_ms else 0.0
    except ValueError:
        return  # a malformed SLO header is the client's; routing ignored it too
    if slo > 0 and seconds > slo:
        m.SLO_VIOLATIONS.labels(*labels, f"{kind}_slo_violation").inc()
