"""The gauges of ``/metrics`` on the admin listener, read from the books at scrape time (the
scrape runs off the event loop) and, for a watch-only node, from its remote signer."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from lngate.services.monitoring import Monitoring


class BooksCollector(Collector):
    """Liabilities, assets from the last reconciliation, the halt state, deposits and
    withdrawals by status, and whether the node's remote signer answers."""

    def __init__(self, monitoring: Monitoring) -> None:
        self._monitoring = monitoring

    def collect(self) -> Iterator[GaugeMetricFamily]:
        snap = self._monitoring.books_sync()
        yield _gauge(
            "lngate_liabilities_msat", "What users and merchants are owed", snap.liabilities_msat
        )
        yield _gauge("lngate_cold_msat", "Booked in cold storage", snap.cold_msat)
        yield _gauge(
            "lngate_pending_withdrawals_msat",
            "Approved or in flight, with reserves",
            snap.pending_withdrawals_msat,
        )
        yield _gauge(
            "lngate_withdrawals_halted",
            "1 while withdrawals are halted",
            int(snap.withdrawals_halted),
        )
        last = snap.last_reconciliation
        if last is not None:
            yield _gauge(
                "lngate_node_assets_msat",
                "Node assets at the last reconciliation",
                last.node_assets_msat,
            )
            yield _gauge(
                "lngate_hot_float_msat",
                "On-chain and channel funds of the node",
                last.hot_float_msat,
            )
            yield _gauge(
                "lngate_shortfall_msat",
                "Required minus assets (negative: surplus)",
                last.shortfall_msat,
            )
            yield _gauge(
                "lngate_liquidity_warnings",
                "Liquidity warnings at the last check",
                last.liquidity_warnings,
            )
        yield _by_status("lngate_deposits", "Deposits by status", snap.deposits_by_status)
        yield _by_status("lngate_withdrawals", "Withdrawals by status", snap.withdrawals_by_status)
        reachable = self._monitoring.signer_reachable_sync()
        if reachable is not None:  # only for a watch-only node
            yield _gauge(
                "lngate_signer_reachable",
                "1 while the node's remote signer is reachable",
                int(reachable),
            )


def _gauge(name: str, doc: str, value: int) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _by_status(name: str, doc: str, counts: dict[str, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=["status"])
    for status, count in counts.items():
        family.add_metric([status], count)
    return family
