"""Pay's benchmarks, on simnet:

- Order creation over HTTP: ``POST /v1/orders`` driven by wrk against a real ``lngate serve``
  (pre-signed, as the transfer benchmark), each order a hold invoice on the node and a row.
- Orders paid from a balance, in process: ``Orders.pay_from_balance`` at concurrency 32 (the
  ledger transfer, the order's ``open -> paid``, the webhook outbox row, one transaction).
- Webhook delivery latency at a steady 50 orders/s: from the commit of an ``order.paid`` to its
  arrival at a receiver on loopback, through the same sender ``lngate serve`` runs. The start
  is the payload's ``timestamp``, taken inside the paying transaction: the figure includes the
  commit itself.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import tempfile
import threading
import time
from dataclasses import replace
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from lngate.bench.http import (
    http_result,
    run_wrk,
    start_processes,
    start_server,
    wait_for_server,
)
from lngate.bench.stats import Result, percentile_ms
from lngate.bootstrap import Core, accounts_for, open_core, use_cases
from lngate.client import signed_headers
from lngate.config import Config
from lngate.domain.users import Role
from lngate.lightning.simnet import SimnetNetwork, SimnetNode
from lngate.workers.webhook_sender import WebhookSender

ORDER_MSAT = 10_000
WEBHOOK_RATE_PER_S = 50
PAID_CONCURRENCY = 32


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _presigned_orders(
    path: Path, merchants: list[dict[str, str]], per_thread: int, tag: str
) -> None:
    """Unique orders (a repeated merchant_order_id would be answered from the first, 200)."""
    stamp_ms = int(time.time() * 1000)
    n = 0
    for thread in range(2):
        with open(f"{path}.{thread}", "w") as fh:
            for _ in range(per_thread):
                n += 1
                shop = merchants[n % len(merchants)]
                body = json.dumps(
                    {
                        "merchant_order_id": f"{tag}-{n}",
                        "amount_msat": ORDER_MSAT,
                        "description": "benchmark",
                    }
                )
                h = signed_headers(
                    shop["api_key"],
                    shop["api_secret"],
                    "POST",
                    "/v1/orders",
                    body.encode(),
                    timestamp_ms=stamp_ms,
                )
                fields = [shop["api_key"], h["X-Lngate-Timestamp"], h["X-Lngate-Signature"]]
                fh.write("\t".join([*fields, f"k{n}", body]) + "\n")


def bench_order_creation(
    database_url: str,
    data_dir: Path,
    workdir: Path,
    *,
    duration_s: int,
    api_processes: int | None = None,
) -> list[Result]:
    """At concurrency 1 and 32, against one ``lngate serve``; with ``api_processes``
    (PostgreSQL), at 32 against ``lngate serve --processes N --worker-processes 1``."""
    core = open_core(Config(data_dir=data_dir, database_url=database_url))
    try:
        accounts = accounts_for(core)
        merchants = [
            accounts.create_user_sync(f"shop{api_processes or 1}x{i}", Role.MERCHANT).as_json()
            for i in range(8)
        ]
    finally:
        core.close()
    config_file = workdir / "bench.toml"
    config_file.write_text("receive_window_ms = 600000\n")  # benchmark-only: pre-signed
    env = {
        **os.environ,
        "LNGATE_DATA_DIR": str(data_dir),
        "LNGATE_DATABASE_URL": database_url,
        "LNGATE_CONFIG": str(config_file),
    }
    database = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    name = "orders created, HTTP API"
    if api_processes is not None:
        name += f", {api_processes} API processes"
    results = []
    port = _free_port()
    server = (
        start_server(env, port)
        if api_processes is None
        # PostgreSQL's deployment: N API processes on one port, one for the workers
        else start_processes(env, port, api_processes, worker_processes=1)
    )
    try:
        wait_for_server(f"http://127.0.0.1:{port}")
        for concurrency in (1, 32) if api_processes is None else (32,):
            requests_file = workdir / f"orders-{concurrency}-{api_processes}"
            per_thread = max(2_000, 3_000 * duration_s)
            tag = f"c{concurrency}-p{api_processes}"
            _presigned_orders(requests_file, merchants, per_thread, tag=tag)
            stats = run_wrk(
                f"http://127.0.0.1:{port}", requests_file, concurrency, duration_s, "/v1/orders"
            )
            results.append(http_result(database, concurrency, stats, name=name))
    finally:
        server.terminate()
        server.wait(timeout=30)
    return results


class _Receiver:
    """Records when each webhook arrives (wall clock, as the payload's timestamp is)."""

    def __init__(self) -> None:
        self.latencies_s: list[float] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                arrived = time.time()
                payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                committed = datetime.fromisoformat(payload["timestamp"]).timestamp()
                with receiver.lock:
                    receiver.latencies_s.append(arrived - committed)
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"


async def _orders_paid(core: Core, count: int) -> tuple[float, list[float], int]:
    node_dir = core.config.simnet_dir
    network = SimnetNetwork(node_dir)
    cases = use_cases(core, SimnetNode(network))
    accounts = accounts_for(core)
    shop = accounts.create_user_sync("paid_shop", Role.MERCHANT)
    payers = [accounts.create_user_sync(f"payer{i}") for i in range(PAID_CONCURRENCY)]
    for payer in payers:
        accounts.adjust_sync(payer.username, 10**12, reason="benchmark funding", actor="bench")
    orders = [
        (
            await cases.orders.create(shop.user_id, merchant_order_id=f"p{i}", amount_msat=1_000)
        ).order.id
        for i in range(count)
    ]
    latencies: list[float] = []
    errors = 0
    queue = list(enumerate(orders))

    async def payer_loop(payer_id: str) -> None:
        nonlocal errors
        while queue:
            i, order_id = queue.pop()
            started = time.perf_counter()
            try:
                await cases.orders.pay_from_balance(payer_id, order_id, idempotency=(f"k{i}", "h"))
            except Exception:
                errors += 1
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(payer_loop(p.user_id) for p in payers))
    seconds = time.perf_counter() - started
    network.close()
    return seconds, latencies, errors


async def _webhook_latency(core: Core, count: int) -> list[float]:
    network = SimnetNetwork(core.config.simnet_dir)
    cases = use_cases(core, SimnetNode(network))
    receiver = _Receiver()
    accounts = accounts_for(core)
    shop = accounts.create_user_sync("hooked_shop", Role.MERCHANT)
    payer = accounts.create_user_sync("hook_payer")
    accounts.adjust_sync(payer.username, 10**12, reason="benchmark funding", actor="bench")
    await cases.webhooks.create(shop.user_id, receiver.url, ["order.paid"])
    orders = [
        (
            await cases.orders.create(shop.user_id, merchant_order_id=f"w{i}", amount_msat=1_000)
        ).order.id
        for i in range(count)
    ]
    sender = WebhookSender(
        cases.webhook_dispatch,
        core.commits,
        timeout_s=10,
        max_response_bytes=1024,
        allow_private_hosts=True,
    )
    stop = asyncio.Event()
    sending = asyncio.create_task(sender.run(stop))
    pending: set[asyncio.Task[object]] = set()
    started = time.perf_counter()
    for i, order_id in enumerate(orders):  # a steady rate, each payment its own task
        await asyncio.sleep(max(0.0, started + i / WEBHOOK_RATE_PER_S - time.perf_counter()))
        task = asyncio.create_task(
            cases.orders.pay_from_balance(payer.user_id, order_id, idempotency=(f"w{i}", "h"))
        )
        pending.add(task)
        task.add_done_callback(pending.discard)
    deadline = time.monotonic() + 60
    while len(receiver.latencies_s) < count and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    stop.set()
    await sending
    receiver.server.shutdown()
    network.close()
    return receiver.latencies_s


def bench_pay_in_process(database_url: str, data_dir: Path, *, count: int) -> list[Result]:
    database = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    config = Config(data_dir=data_dir, database_url=database_url)
    config = replace(config, pay=replace(config.pay, webhook_allow_private_hosts=True))
    core = open_core(config)
    core.start_writer()
    try:
        seconds, latencies, errors = asyncio.run(_orders_paid(core, count))
        webhook_count = WEBHOOK_RATE_PER_S * 20
        delivered = asyncio.run(_webhook_latency(core, webhook_count))
    finally:
        core.close()
    return [
        Result(
            "orders paid from a balance, service layer",
            database,
            PAID_CONCURRENCY,
            count - errors,
            seconds,
            percentile_ms(latencies, 50),
            percentile_ms(latencies, 99),
            errors,
            "in-process asyncio",
        ),
        Result(
            f"webhook delivery, commit to receiver, {WEBHOOK_RATE_PER_S} orders/s",
            database,
            1,
            len(delivered),
            0.0,
            percentile_ms(delivered, 50),
            percentile_ms(delivered, 99),
            webhook_count - len(delivered),
            "loopback receiver",
        ),
    ]


def run_pay_benchmarks(database_url: str | None, *, duration_s: int, count: int) -> list[Result]:
    """On a fresh SQLite database (``database_url`` None) or the given PostgreSQL one."""
    results = []
    with tempfile.TemporaryDirectory(prefix="lngate-bench-pay-") as tmp:
        workdir = Path(tmp)
        url = database_url or f"sqlite:///{workdir / 'pay.sqlite3'}"
        results += bench_pay_in_process(url, workdir / "data", count=count)
        results += bench_order_creation(url, workdir / "data", workdir, duration_s=duration_s)
        if database_url is not None:
            results += bench_order_creation(
                url, workdir / "data", workdir, duration_s=duration_s, api_processes=2
            )
    return results
