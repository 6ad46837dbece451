"""Lightning benchmarks on simnet, against a real ``lngate serve`` process.

- Deposit credit latency: from the moment an outside wallet's payment settles on the node to the
  moment the deposit is credited in the ledger (the deposit's ``settled_at_ms``).
- Withdrawal throughput: withdrawals requested through the HTTP API (many users at once) until the
  payment worker has them all succeeded; completed per second and request-to-done latency.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from pathlib import Path

from lngate.bench.http import start_server, wait_for_server
from lngate.bench.stats import Result, percentile_ms
from lngate.bootstrap import accounts_for, open_core
from lngate.client import AsyncClient
from lngate.config import Config
from lngate.lightning.simnet import SimnetNetwork

FEE_LIMIT_MSAT = 100_000


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _deposit_latency(
    url: str, creds: dict[str, str], simnet_dir: Path, count: int, data_dir: Path
) -> Result:
    async with AsyncClient(url, creds["api_key"], creds["api_secret"]) as c:
        deposits = []
        for _ in range(count):
            r = await c.post("/v1/deposits", {"amount_msat": 10_000})
            if r.status_code != 201:
                raise RuntimeError(f"deposit refused: {r.status_code} {r.text}")
            deposits.append(r.json())
    paid_at_ms: dict[str, float] = {}
    with SimnetNetwork(simnet_dir) as wallet:  # an outside wallet, as `lngate simnet pay` is
        for d in deposits:
            wallet.pay("carol", d["bolt11"], fee_limit_msat=FEE_LIMIT_MSAT)
            paid_at_ms[d["id"]] = time.time() * 1000
            await asyncio.sleep(0.005)
    core = open_core(
        Config(data_dir=data_dir, database_url=os.environ.get("LNGATE_DATABASE_URL", ""))
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            settled = core.uow.read_sync(
                lambda tx: tx.all("SELECT id, settled_at_ms FROM deposits WHERE status = 'settled'")
            )
            if len(settled) >= count:
                break
            await asyncio.sleep(0.1)
    finally:
        core.close()
    latencies_s = [
        max(0.0, (int(at) - paid_at_ms[i]) / 1000) for i, at in settled if i in paid_at_ms
    ]
    return Result(
        "deposit credit latency",
        "sqlite",
        1,
        len(latencies_s),
        0.0,
        percentile_ms(latencies_s, 50),
        percentile_ms(latencies_s, 99),
        count - len(latencies_s),
        "simnet wallet in another handle",
    )


async def _withdrawal_throughput(
    url: str, creds: list[dict[str, str]], simnet_dir: Path, count: int, data_dir: Path
) -> Result:
    with SimnetNetwork(simnet_dir) as wallet:
        invoices = [
            wallet.create_invoice("carol" if i % 2 else "dave", 20_000).bolt11 for i in range(count)
        ]
    clients = [AsyncClient(url, c["api_key"], c["api_secret"]) for c in creds]
    started = time.perf_counter()
    batch_started_ms = int(time.time() * 1000)
    try:
        sem = asyncio.Semaphore(32)

        async def one(i: int) -> None:
            async with sem:
                r = await clients[i % len(clients)].post("/v1/withdrawals", {"bolt11": invoices[i]})
                assert r.status_code == 201, r.text

        await asyncio.gather(*(one(i) for i in range(count)))
    finally:
        for c in clients:
            await c.aclose()
    core = open_core(
        Config(data_dir=data_dir, database_url=os.environ.get("LNGATE_DATABASE_URL", ""))
    )
    try:
        deadline = time.monotonic() + 120
        rows: list[tuple[object, ...]] = []
        while time.monotonic() < deadline:
            rows = core.uow.read_sync(
                lambda tx: tx.all(
                    "SELECT created_at_ms, finished_at_ms, status FROM withdrawals "
                    "WHERE status IN ('succeeded', 'failed') AND created_at_ms >= :since",
                    {"since": batch_started_ms},  # this batch only
                )
            )
            if len(rows) >= count:
                break
            await asyncio.sleep(0.05)
        elapsed_s = time.perf_counter() - started
    finally:
        core.close()
    ok = [r for r in rows if r[2] == "succeeded"]
    latencies_s = [(int(r[1]) - int(r[0])) / 1000 for r in ok]  # type: ignore[call-overload]
    return Result(
        "withdrawals end to end",
        "sqlite",
        32,
        len(ok),
        elapsed_s,
        percentile_ms(latencies_s, 50),
        percentile_ms(latencies_s, 99),
        count - len(ok),
        "httpx, 32 at once",
    )


async def _withdrawal_latency_alone(
    url: str, creds: dict[str, str], simnet_dir: Path, count: int
) -> Result:
    """One withdrawal at a time: request to ``succeeded`` on an idle system (polling 2 ms)."""
    with SimnetNetwork(simnet_dir) as wallet:
        invoices = [wallet.create_invoice("carol", 15_000).bolt11 for _ in range(count)]
    latencies_s: list[float] = []
    started_all = time.perf_counter()
    async with AsyncClient(url, creds["api_key"], creds["api_secret"]) as c:
        for bolt11 in invoices:
            started = time.perf_counter()
            w = (await c.post("/v1/withdrawals", {"bolt11": bolt11})).json()
            deadline = started + 30
            while time.perf_counter() < deadline:
                status = (await c.get(f"/v1/withdrawals/{w['id']}")).json()["status"]
                if status in ("succeeded", "failed"):
                    break
                await asyncio.sleep(0.002)
            if status == "succeeded":
                latencies_s.append(time.perf_counter() - started)
    return Result(
        "withdrawal, one at a time",
        "sqlite",
        1,
        len(latencies_s),
        time.perf_counter() - started_all,
        percentile_ms(latencies_s, 50),
        percentile_ms(latencies_s, 99),
        count - len(latencies_s),
        "httpx, sequential",
    )


def run_lightning_benchmarks(*, deposits: int, withdrawals: int) -> list[Result]:
    workdir = Path(tempfile.mkdtemp(prefix="lngate-bench-ln-"))
    try:
        config = Config(data_dir=workdir / "data")
        core = open_core(config)
        try:
            accounts = accounts_for(core)
            creds = []
            for i in range(16):
                c = accounts.create_user_sync(f"lnbench{i}")
                # backed by the simnet node's assets, or reconciliation (rightly) halts withdrawals
                accounts.adjust_sync(c.username, 10**9, reason="benchmark funding", actor="bench")
                creds.append(c.as_json())
        finally:
            core.close()
        port = _free_port()
        env = {**os.environ, "LNGATE_DATA_DIR": str(config.data_dir)}
        env.pop("LNGATE_DATABASE_URL", None)
        env.pop("LNGATE_CONFIG", None)
        server = start_server(env, port)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for_server(url)
            return [
                asyncio.run(
                    _deposit_latency(url, creds[0], config.simnet_dir, deposits, config.data_dir)
                ),
                asyncio.run(_withdrawal_latency_alone(url, creds[1], config.simnet_dir, 100)),
                asyncio.run(
                    _withdrawal_throughput(
                        url, creds, config.simnet_dir, withdrawals, config.data_dir
                    )
                ),
            ]
        finally:
            server.terminate()
            server.wait(timeout=30)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
