"""Several real lngate processes over one PostgreSQL: API processes on their own ports (so a
test can choose which one a request reaches), worker processes, and the supervisor of
``lngate serve --processes N``. Every rule that guards money holds across processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import pytest

from lngate.bootstrap import accounts_for, open_core
from lngate.client import AsyncClient, Client, signed_headers
from lngate.config import load_config
from lngate.lightning.simnet import SimnetNetwork
from lngate.store.db import Database
from lngate.store.migrate import migrate
from tests.conftest import (
    POSTGRES_URL,
    REQUIRE_POSTGRES,
    _drop_postgres_database,
    _fresh_postgres_database,
    free_port,
)

pytestmark = pytest.mark.postgres

START_TIMEOUT_S = 30.0
WAIT_S = 40.0


@dataclass
class Cluster:
    """A data directory and a PostgreSQL database that every process of a test shares."""

    tmp: Path
    env: dict[str, str]
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "lngate.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def cli_json(self, *args: str) -> dict[str, object]:
        result: dict[str, object] = json.loads(self.cli(*args))
        return result

    def user(self, name: str, amount_msat: int = 0) -> dict[str, str]:
        """What ``lngate user create`` and ``lngate admin adjust`` do, without a process each."""
        core = open_core(load_config(env=self.env))
        try:
            creds = accounts_for(core).create_user_sync(name)
            if amount_msat:
                accounts_for(core).adjust_sync(
                    name, amount_msat, reason="test funding", actor="test"
                )
        finally:
            core.close()
        return creds.as_json()

    def spawn(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with (self.tmp / f"proc-{len(self.procs)}.log").open("w") as log:  # the child has it
            proc = subprocess.Popen(
                [sys.executable, "-m", "lngate.cli", *args],
                env={**self.env, **(env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.procs.append(proc)
        return proc

    def api(self, *, env: dict[str, str] | None = None) -> str:
        """An API process without workers on a port of its own; returns its URL."""
        port = free_port()
        proc = self.spawn(
            "serve", "--port", str(port), "--admin-port", "0", "--no-workers", env=env
        )
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, proc)
        return url

    def worker(self, *, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        return self.spawn("worker", env=env)

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_healthy(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError(f"no lngate at {url} (exit code {proc.poll()})")


def wait_until(condition: object, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    if not POSTGRES_URL:
        if REQUIRE_POSTGRES:
            pytest.fail("LNGATE_TEST_POSTGRES_URL is not set (run scripts/test.sh)")
        pytest.skip("PostgreSQL not configured: set LNGATE_TEST_POSTGRES_URL")
    name, url = _fresh_postgres_database()
    db = Database(url)
    migrate(db)
    db.close()
    config_file = tmp_path / "lngate.toml"
    config_file.write_text("log_json = true\n[treasury]\nsweep_interval_s = 0.3\n")
    env = {
        **os.environ,
        "LNGATE_DATA_DIR": str(tmp_path / "data"),
        "LNGATE_DATABASE_URL": url,
        "LNGATE_CONFIG": str(config_file),
    }
    env.pop("LNGATE_CRASHPOINTS", None)
    c = Cluster(tmp_path, env)
    c.cli("simnet", "wallets")  # the simnet state and the server key exist before any process
    open_core(load_config(env=env)).close()
    try:
        yield c
    finally:
        c.stop_all()
        _drop_postgres_database(name)


def sql(cluster: Cluster, query: str) -> list[tuple[object, ...]]:
    with psycopg.connect(cluster.env["LNGATE_DATABASE_URL"]) as conn:
        return list(conn.execute(query).fetchall())


def available_msat(url: str, creds: dict[str, str]) -> int:
    with Client(url, creds["api_key"], creds["api_secret"]) as api:
        return int(api.get("/v1/account").json()["available_msat"])


# -- money races -----------------------------------------------------------------------------


async def test_100_transfers_from_10_000_msat_through_two_processes_exactly_10_succeed(
    cluster: Cluster,
) -> None:
    alice = cluster.user("alice", 10_000)
    cluster.user("bob")
    urls = [cluster.api(), cluster.api()]

    async def send(url: str, n: int) -> list[int]:
        async with AsyncClient(url, alice["api_key"], alice["api_secret"]) as api:
            posts = (
                api.post("/v1/transfers", {"to": "bob", "amount_msat": 1_000}) for _ in range(n)
            )
            return [r.status_code for r in await asyncio.gather(*posts)]

    codes = [c for batch in await asyncio.gather(*(send(u, 50) for u in urls)) for c in batch]
    assert codes.count(201) == 10
    assert codes.count(422) == 90  # INSUFFICIENT_FUNDS, and nothing moved for them
    assert available_msat(urls[0], alice) == 0
    assert sql(cluster, "SELECT COUNT(*) FROM transfers WHERE kind = 'transfer'") == [(10,)]
    assert cluster.cli_json("reconcile", "--no-node")["ok"] is True


async def test_one_idempotency_key_through_three_processes_moves_money_once(
    cluster: Cluster,
) -> None:
    alice = cluster.user("alice", 10_000)
    cluster.user("bob")
    urls = [cluster.api() for _ in range(3)]

    async def send(url: str) -> list[httpx.Response]:
        async with AsyncClient(url, alice["api_key"], alice["api_secret"]) as api:
            payload = {"to": "bob", "amount_msat": 700}
            posts = (api.post("/v1/transfers", payload, idempotency_key="once") for _ in range(10))
            return list(await asyncio.gather(*posts))

    responses = [r for batch in await asyncio.gather(*(send(u) for u in urls)) for r in batch]
    assert {r.status_code for r in responses} == {201}
    assert len({r.content for r in responses}) == 1  # the same receipt from every process
    assert available_msat(urls[0], alice) == 9_300


async def test_one_invoice_withdrawn_by_many_users_through_different_processes_is_paid_once(
    cluster: Cluster,
) -> None:
    users = [cluster.user(f"user{i}", 50_000_000) for i in range(8)]
    urls = [cluster.api(), cluster.api()]
    bolt11 = cluster.cli("simnet", "invoice", "carol", "20000").strip()
    workers = [cluster.worker(), cluster.worker()]

    async def withdraw(i: int, creds: dict[str, str]) -> int:
        async with AsyncClient(urls[i % 2], creds["api_key"], creds["api_secret"]) as api:
            return (await api.post("/v1/withdrawals", {"bolt11": bolt11})).status_code

    codes = await asyncio.gather(*(withdraw(i, u) for i, u in enumerate(users)))
    assert all(code < 500 for code in codes)

    def settled() -> bool:
        rows = sql(cluster, "SELECT status FROM withdrawals")
        return all(s in ("succeeded", "failed", "rejected") for (s,) in rows)

    wait_until(settled)
    statuses = [s for (s,) in sql(cluster, "SELECT status FROM withdrawals")]
    assert statuses.count("succeeded") == 1
    with SimnetNetwork(Path(cluster.env["LNGATE_DATA_DIR"]) / "simnet") as net:
        invoice = net.lookup_invoice("carol", _payment_hash(bolt11))
    assert invoice.amount_paid_msat == 20_000_000  # carol was paid once, not twice
    balances = [available_msat(urls[0], u) for u in users]
    assert sorted(balances)[1:] == [50_000_000] * 7  # everyone else's hold was released
    assert sorted(balances)[0] <= 50_000_000 - 20_000_000
    assert all(w.poll() is None for w in workers)
    report = cluster.cli_json("reconcile")  # the books against the node: paid exactly once
    assert report["ok"] is True


# -- the replay guard ------------------------------------------------------------------------


def test_a_request_replayed_to_a_second_process_is_refused(cluster: Cluster) -> None:
    alice = cluster.user("alice", 10_000)
    cluster.user("bob")
    first, second = cluster.api(), cluster.api()
    body = json.dumps({"to": "bob", "amount_msat": 1_000}).encode()
    headers = signed_headers(alice["api_key"], alice["api_secret"], "POST", "/v1/transfers", body)
    headers |= {"Idempotency-Key": "r1", "Content-Type": "application/json"}
    assert httpx.post(f"{first}/v1/transfers", content=body, headers=headers).status_code == 201
    replay = httpx.post(f"{second}/v1/transfers", content=body, headers=headers)
    assert replay.status_code == 401
    assert "replay" in replay.json()["error"]["message"]
    get = signed_headers(alice["api_key"], alice["api_secret"], "GET", "/v1/account", b"")
    assert httpx.get(f"{second}/v1/account", headers=get).status_code == 200
    assert httpx.get(f"{first}/v1/account", headers=get).status_code == 401


# -- workers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("crashpoint", ["after_sending_recorded", "after_node_answered"])
def test_a_worker_killed_mid_payment_is_taken_over_and_nothing_is_paid_twice(
    cluster: Cluster, crashpoint: str
) -> None:
    alice = cluster.user("alice", 100_000_000)
    url = cluster.api()
    bolt11 = cluster.cli("simnet", "invoice", "carol", "30000").strip()
    doomed = cluster.worker(env={"LNGATE_CRASHPOINTS": f"{crashpoint}:1"})
    with Client(url, alice["api_key"], alice["api_secret"]) as api:
        withdrawal = api.post("/v1/withdrawals", {"bolt11": bolt11}).json()
    assert doomed.wait(timeout=WAIT_S) == -signal.SIGKILL  # it died at the crash point
    assert sql(cluster, "SELECT status FROM withdrawals") == [("sending",)]
    cluster.worker()  # another worker finds the payment in flight and finishes it

    def finished() -> bool:
        return sql(cluster, "SELECT status FROM withdrawals")[0][0] in ("succeeded", "failed")

    wait_until(finished)
    with Client(url, alice["api_key"], alice["api_secret"]) as api:
        final = api.get(f"/v1/withdrawals/{withdrawal['id']}").json()
    assert final["status"] == "succeeded"
    spent_msat = 100_000_000 - available_msat(url, alice)
    assert 30_000_000 <= spent_msat < 2 * 30_000_000  # once, plus a routing fee
    assert cluster.cli_json("reconcile")["ok"] is True


def test_two_treasury_workers_never_sweep_twice(cluster: Cluster) -> None:
    from tests.integration.test_treasury import SEED, tpub_descriptor

    descriptor = cluster.tmp / "cold.txt"
    descriptor.write_text(tpub_descriptor(SEED) + "\n")
    cluster.cli("cold", "import", str(descriptor), "--count", "20")
    cluster.cli("simnet", "fund", "exchange", "3000000")
    workers = [cluster.worker(), cluster.worker()]
    wait_until(lambda: sql(cluster, "SELECT COUNT(*) FROM sweeps") != [(0,)])
    time.sleep(2.0)  # ten more rounds of both workers: none may send again
    assert sql(cluster, "SELECT COUNT(*) FROM sweeps") == [(1,)]
    assert sql(cluster, "SELECT COUNT(*) FROM cold_addresses WHERE used_at_ms IS NOT NULL") == [
        (1,)
    ]
    cold = {str(a) for (a,) in sql(cluster, "SELECT address FROM cold_addresses")}
    with SimnetNetwork(Path(cluster.env["LNGATE_DATA_DIR"]) / "simnet") as net:
        txs = net.list_onchain_transactions("exchange")
    sweeps_sent = [t for t in txs if t.amount_sat < 0 and cold & set(t.addresses)]
    assert len(sweeps_sent) == 1
    assert all(w.poll() is None for w in workers)


# -- the supervisor --------------------------------------------------------------------------


def test_serve_processes_runs_api_processes_on_one_port_and_stops_them_all(
    cluster: Cluster,
) -> None:
    alice = cluster.user("alice", 10_000)
    cluster.user("bob")
    port = free_port()
    supervisor = cluster.spawn(
        "serve",
        "--processes",
        "2",
        "--worker-processes",
        "1",
        "--port",
        str(port),
        "--admin-port",
        "0",
    )
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, supervisor)
    wait_until(lambda: len(_children(supervisor.pid)) == 3)
    with Client(url, alice["api_key"], alice["api_secret"]) as api:
        for _ in range(5):
            assert api.post("/v1/transfers", {"to": "bob", "amount_msat": 1_000}).is_success
    children = _children(supervisor.pid)
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(timeout=30) == 0
    assert all(not Path(f"/proc/{pid}").exists() for pid in children)
    assert available_msat_direct(cluster, "alice") == 5_000


def _payment_hash(bolt11: str) -> bytes:
    from lngate.lightning.bolt11 import decode_bolt11

    return decode_bolt11(bolt11).payment_hash


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def available_msat_direct(cluster: Cluster, username: str) -> int:
    rows = sql(
        cluster,
        "SELECT a.credits_posted - a.debits_posted - a.debits_pending FROM accounts a "
        f"JOIN users u ON u.account_id = a.id WHERE u.username = '{username}'",
    )
    return int(rows[0][0])  # type: ignore[call-overload]
