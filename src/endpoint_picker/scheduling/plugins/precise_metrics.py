"""The precise index's Prometheus metrics (``indexerConfig.kvBlockIndexConfig.enableMetrics``).

llm-d-kv-cache's names (``kvcache_index_*``), plus the ingestion counters of
datalayer/kvevents.py (``kvcache_events_*``, ours). Read from the index's own counters at
scrape time, so the request path and event ingestion pay nothing for them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily


class IndexCollector:
    """One producer's counters as metric families."""

    def __init__(self, producer: Any) -> None:
        self.producer = producer

    def describe(self) -> list[Any]:
        return []  # unchecked: collected on demand only

    def collect(self) -> Iterator[Any]:
        p = self.producer
        idx, st = p.index, p.ingester.stats
        for name, doc, value in (
            ("kvcache_index_admissions", "Total number of KV-block admissions", idx.admissions),
            ("kvcache_index_evictions", "Total number of KV-block evictions", idx.evictions),
            ("kvcache_index_lookup_requests", "Total number of lookup calls", p.lookups),
            (
                "kvcache_index_lookup_hits",
                "Number of keys found in the cache on Lookup()",
                p.lookup_hits,
            ),
        ):
            yield CounterMetricFamily(name, doc, value=value)
        yield GaugeMetricFamily("kvcache_index_size", "Keys in the precise index", len(idx))
        events = CounterMetricFamily(
            "kvcache_events",
            "KV events and batches ingested, and what went wrong, by kind",
            labels=["kind"],
        )
        for kind in ("batches", "events", "gaps", "replayed", "restarts", "cleared", "orphans"):
            events.add_metric([kind], getattr(st, kind))
        events.add_metric(["errors"], st.errors)
        yield events


def register(producer: Any) -> IndexCollector:
    from endpoint_picker.metrics import REGISTRY

    collector = IndexCollector(producer)
    REGISTRY.register(collector)
    return collector
