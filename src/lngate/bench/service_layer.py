"""Internal transfers through the service layer, in process: the group-commit ceiling."""

from __future__ import annotations

import asyncio
import time
import uuid

from lngate.bench.stats import Result, percentile_ms
from lngate.bootstrap import Core
from lngate.services.transfers import Transfers


async def _run(
    core: Core, usernames: list[str], user_ids: list[str], count: int, concurrency: int
) -> tuple[float, list[float], int]:
    latencies: list[float] = []
    errors = 0
    next_index = 0
    transfers = Transfers(core.uow, max_amount_msat=10**12, clock=core.clock)

    async def worker() -> None:
        nonlocal next_index, errors
        while next_index < count:
            i = next_index
            next_index += 1
            sender = i % len(user_ids)
            started = time.perf_counter()
            try:
                await transfers.transfer(
                    user_ids[sender],
                    usernames[(sender + 1) % len(usernames)],
                    1_000,
                    "",
                    idempotency_key=str(uuid.uuid4()),
                    request_hash=str(i),
                )
            except Exception:
                errors += 1
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, latencies, errors


def bench_service_layer(
    core: Core,
    database: str,
    usernames: list[str],
    user_ids: list[str],
    *,
    count: int,
    concurrency: int,
) -> Result:
    seconds, latencies, errors = asyncio.run(_run(core, usernames, user_ids, count, concurrency))
    return Result(
        "transfers, service layer",
        database,
        concurrency,
        count - errors,
        seconds,
        percentile_ms(latencies, 50),
        percentile_ms(latencies, 99),
        errors,
        "in-process asyncio",
    )
