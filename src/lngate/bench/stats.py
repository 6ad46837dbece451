"""Throughput and latency percentiles of a run."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Result:
    name: str
    database: str
    concurrency: int
    operations: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    client: str

    @property
    def ops_per_s(self) -> float:
        return self.operations / self.seconds if self.seconds else 0.0

    def row(self) -> str:
        rate = f"{self.ops_per_s:,.0f}" if self.seconds else "-"
        return (
            f"| {self.name} | {self.database} | {self.concurrency} | {rate} | "
            f"{self.p50_ms:.1f} | {self.p99_ms:.1f} | {self.operations:,} | {self.errors} | "
            f"{self.client} |"
        )


HEADER = (
    "| benchmark | database | concurrency | ops/s | p50 ms | p99 ms | ops | errors | client |\n"
    "|---|---|---|---|---|---|---|---|---|"
)


def percentile_ms(latencies_s: list[float], pct: float) -> float:
    if not latencies_s:
        return 0.0
    ordered = sorted(latencies_s)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))
    return ordered[index] * 1000
