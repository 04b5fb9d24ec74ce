"""The EPP's Prometheus registry. Each area defines its own metrics on ``REGISTRY`` with
upstream's names and labels; the metrics port serves this registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

REGISTRY = CollectorRegistry(auto_describe=True)
