"""Prometheus metrics: histograms observed in process, gauges read from the books at scrape.

Each core has its own registry (no global state); ``/metrics`` on the admin listener serves it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from lngate.bootstrap import Core

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._watching = False
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

    def watch_books(self, core: Core) -> None:
        if not self._watching:
            self.registry.register(BooksCollector(core))
            self._watching = True


class BooksCollector(Collector):
    """Reads the books at scrape time: liabilities, assets from the last reconciliation,
    the halt state, and deposits and withdrawals by status."""

    def __init__(self, core: Core) -> None:
        self._core = core

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from lngate.services import halt
        from lngate.services.solvency import books
        from lngate.store import system_state

        def read(tx):  # type: ignore[no-untyped-def]
            return (
                books(tx),
                system_state.reports(tx, 1),
                halt.halted(tx) is not None,
                tx.all("SELECT status, COUNT(*) FROM deposits GROUP BY status"),
                tx.all("SELECT status, COUNT(*) FROM withdrawals GROUP BY status"),
            )

        bk, last, halted, deposits, withdrawals = self._core.read_sync(read)
        yield _gauge(
            "lngate_liabilities_msat", "What users and merchants are owed", bk.liabilities_msat
        )
        yield _gauge("lngate_cold_msat", "Booked in cold storage", bk.cold_msat)
        yield _gauge(
            "lngate_pending_withdrawals_msat",
            "Approved or in flight, with reserves",
            bk.pending_withdrawals_msat,
        )
        yield _gauge("lngate_withdrawals_halted", "1 while withdrawals are halted", int(halted))
        if last:
            report = last[0]["report"]
            node = report["node"]
            yield _gauge(
                "lngate_node_assets_msat",
                "Node assets at the last reconciliation",
                node["assets_msat"],
            )
            yield _gauge(
                "lngate_hot_float_msat",
                "On-chain and channel funds of the node",
                node["onchain_confirmed_sat"] * 1000 + node["channel_local_msat"],
            )
            yield _gauge(
                "lngate_shortfall_msat",
                "Required minus assets (negative: surplus)",
                report["shortfall_msat"],
            )
            yield _gauge(
                "lngate_liquidity_warnings",
                "Liquidity warnings at the last check",
                len(report["warnings"]),
            )
        by_status = GaugeMetricFamily("lngate_deposits", "Deposits by status", labels=["status"])
        for status, count in deposits:
            by_status.add_metric([str(status)], int(count))
        yield by_status
        w_status = GaugeMetricFamily(
            "lngate_withdrawals", "Withdrawals by status", labels=["status"]
        )
        for status, count in withdrawals:
            w_status.add_metric([str(status)], int(count))
        yield w_status


def _gauge(name: str, doc: str, value: int) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)
