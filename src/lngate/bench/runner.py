"""Runs every benchmark on SQLite, and on PostgreSQL when LNGATE_BENCH_POSTGRES_URL is set."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg

from lngate.bench.http import bench_http, start_server, wait_for_server
from lngate.bench.lightning import run_lightning_benchmarks
from lngate.bench.pay import run_pay_benchmarks
from lngate.bench.scale import SCALE_HEADER, ScaleResult, bench_scale
from lngate.bench.service_layer import bench_service_layer
from lngate.bench.stats import HEADER, Result
from lngate.bootstrap import accounts_for, open_core
from lngate.config import Config
from lngate.store.db import Database
from lngate.store.migrate import migrate

USERS = 32
FUNDING_MSAT = 10**12


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _seed(config: Config) -> list[dict[str, str]]:
    core = open_core(config)
    try:
        accounts = accounts_for(core)
        creds = []
        for i in range(USERS):
            c = accounts.create_user_sync(f"bench{i}")
            accounts.adjust_sync(
                c.username, FUNDING_MSAT, reason="benchmark funding", actor="bench"
            )
            creds.append(c.as_json())
        return creds
    finally:
        core.close()


def _fresh_database(admin_url: str | None, workdir: Path) -> tuple[str, str]:
    if admin_url is None:
        return "sqlite", f"sqlite:///{workdir / 'bench.sqlite3'}"
    name = f"lngate_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    db = Database(url)
    migrate(db)
    db.close()
    return "postgresql", url


@dataclass(frozen=True, slots=True)
class Plan:
    api: bool
    transfers: int
    duration_s: int
    scale_processes: tuple[int, ...] = ()  # PostgreSQL: HTTP through N API processes
    scale_concurrency: int = 32


def _one_database(admin_url: str | None, plan: Plan) -> tuple[list[Result], list[ScaleResult]]:
    results: list[Result] = []
    scaled: list[ScaleResult] = []
    api, transfers, duration_s = plan.api, plan.transfers, plan.duration_s
    workdir = Path(tempfile.mkdtemp(prefix="lngate-bench-"))
    try:
        database, url = _fresh_database(admin_url, workdir)
        config = Config(data_dir=workdir / "data", database_url=url, receive_window_ms=600_000)
        creds = _seed(config)
        core = open_core(config)
        core.start_writer()
        try:
            ids = [c["user_id"] for c in creds]
            names = [c["username"] for c in creds]
            for concurrency in (1, 32):
                count = transfers if concurrency > 1 else max(1, transfers // 10)
                results.append(
                    bench_service_layer(
                        core, database, names, ids, count=count, concurrency=concurrency
                    )
                )
        finally:
            core.close()
        if api:
            port = _free_port()
            # benchmark-only: a wide receive window lets wrk replay pre-signed requests
            config_file = workdir / "bench.toml"
            config_file.write_text("receive_window_ms = 600000\n")
            env = {
                **os.environ,
                "LNGATE_DATA_DIR": str(config.data_dir),
                "LNGATE_DATABASE_URL": url,
                "LNGATE_CONFIG": str(config_file),
            }
            server = start_server(env, port)
            try:
                wait_for_server(f"http://127.0.0.1:{port}")
                for concurrency in (1, 32):
                    results.append(
                        bench_http(
                            f"http://127.0.0.1:{port}",
                            database,
                            creds,
                            concurrency=concurrency,
                            duration_s=duration_s,
                            workdir=workdir,
                        )
                    )
            finally:
                server.terminate()
                server.wait(timeout=30)
            if admin_url is not None:
                for processes in plan.scale_processes:
                    scaled.append(
                        bench_scale(
                            url,
                            env,
                            _free_port(),
                            creds,
                            processes=processes,
                            concurrency=plan.scale_concurrency,
                            duration_s=duration_s,
                            workdir=workdir,
                        )
                    )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return results, scaled


def run_benchmarks(
    config: Config,
    *,
    suite: str,
    api: bool,
    transfers: int,
    duration_s: int,
    lightning_ops: int,
    sqlite: bool = True,
    scale_processes: tuple[int, ...] = (),
    scale_concurrency: int = 32,
) -> None:
    del config  # benchmarks run on fresh databases of their own, never on live data
    if api and suite in ("all", "transfers", "pay") and shutil.which("wrk") is None:
        raise SystemExit("the HTTP benchmark needs wrk (apt-get install wrk), or pass --no-api")
    plan = Plan(api, transfers, duration_s, scale_processes, scale_concurrency)
    results: list[Result] = []
    scaled: list[ScaleResult] = []
    if suite in ("all", "transfers"):
        if sqlite:
            results += _one_database(None, plan)[0]
        pg = os.environ.get("LNGATE_BENCH_POSTGRES_URL")
        if pg:
            pg_results, scaled = _one_database(pg, plan)
            results += pg_results
    if suite in ("all", "lightning"):
        results += run_lightning_benchmarks(deposits=lightning_ops, withdrawals=lightning_ops)
    if suite in ("all", "pay"):
        if sqlite:
            results += run_pay_benchmarks(None, duration_s=duration_s, count=transfers // 4)
        pg = os.environ.get("LNGATE_BENCH_POSTGRES_URL")
        if pg:
            with tempfile.TemporaryDirectory(prefix="lngate-bench-pg-") as tmp:
                _, url = _fresh_database(pg, Path(tmp))
                results += run_pay_benchmarks(url, duration_s=duration_s, count=transfers // 4)
    print(HEADER)
    for result in results:
        print(result.row())
    if scaled:
        print(f"\nHTTP transfers on PostgreSQL by API processes (wrk -c{scale_concurrency})\n")
        print(SCALE_HEADER)
        for row in scaled:
            print(row.row())
