"""Scraping endpoint metrics: per-endpoint loops, per-engine metric maps, freshness.

``DataLayer`` follows the datastore's endpoints and keeps each ``endpoint.metrics`` fresh;
``engines`` holds upstream's built-in maps (vllm, sglang, trtllm-serve, triton-tensorrt-llm);
``from_params`` turns upstream's plugin parameters into ``DataLayer`` keyword arguments.
"""

from endpoint_picker.datalayer.collector import SCRAPE_ERRORS, DataLayer, ScrapeError
from endpoint_picker.datalayer.engines import (
    BUILTIN_ENGINES,
    SGLANG,
    TRITON_TENSORRT_LLM,
    TRTLLM_SERVE,
    VLLM,
    EngineMap,
    EngineSelector,
    MetricSpec,
    selector_from_params,
)
from endpoint_picker.datalayer.extract import ExtractError, extract
from endpoint_picker.datalayer.freshness import (
    DEFAULT_STALENESS_THRESHOLD,
    PoolStats,
    is_fresh,
    pool_stats,
)
from endpoint_picker.datalayer.params import from_params

__all__ = [
    "BUILTIN_ENGINES",
    "DEFAULT_STALENESS_THRESHOLD",
    "SCRAPE_ERRORS",
    "SGLANG",
    "TRITON_TENSORRT_LLM",
    "TRTLLM_SERVE",
    "VLLM",
    "DataLayer",
    "EngineMap",
    "EngineSelector",
    "ExtractError",
    "MetricSpec",
    "PoolStats",
    "ScrapeError",
    "extract",
    "from_params",
    "is_fresh",
    "pool_stats",
    "selector_from_params",
]
