"""Prometheus metrics: histograms observed in process, and collectors read at scrape time
(the books' gauges: ``lngate.api.books_metrics``).

Each core has its own registry (no global state); ``/metrics`` on the admin listener serves it.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.registry import Collector

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._watched: set[str] = set()
        self.http_latency = Histogram(
            "lngate_http_request_seconds",
            "HTTP request latency",
            ["listener", "method", "route"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.withdrawal_latency = Histogram(
            "lngate_withdrawal_seconds",
            "Withdrawal request to final status",
            ["status"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )

        self.webhook_latency = Histogram(
            "lngate_webhook_delivery_seconds",
            "Webhook delivered: from the commit of its change to the receiver's 2xx",
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.webhook_endpoints_disabled = Counter(
            "lngate_webhook_endpoints_disabled",
            "Webhook endpoints disabled after failing for 24 hours",
            registry=self.registry,
        )

    def watch(self, name: str, collector: Collector) -> None:
        """Registers a collector read at scrape time, once per name (several apps of one
        process share its registry)."""
        if name not in self._watched:
            self.registry.register(collector)
            self._watched.add(name)
