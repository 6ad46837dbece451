"""State that several processes share through the database: the replay guard, per-user event
order, and migrations that differ per dialect."""

from __future__ import annotations

import asyncio
import threading

import httpx
import psycopg
import pytest

from lngate.api.admin_app import create_admin_app
from lngate.api.app import create_app
from lngate.bootstrap import Core, accounts_for, use_cases
from lngate.client import signed_headers
from lngate.lightning.simnet import SimnetNetwork, SimnetNode
from lngate.security.replay_guards import (
    DatabaseReplayGuard,
    MemoryReplayGuard,
    replay_guard_for,
)
from lngate.store import events
from lngate.store.db import Database, Dialect
from lngate.store.migrate import available_migrations, current_version
from lngate.store.users import Role
from tests.conftest import funded_user

SIG = "ab" * 32
WINDOW_MS = 5_000


async def test_a_signature_seen_by_one_process_is_refused_by_another(core: Core) -> None:
    # two guards over two Database objects: what two processes have
    other_db = Database(core.config.effective_database_url)
    first, second = (
        DatabaseReplayGuard(core.db, WINDOW_MS),
        DatabaseReplayGuard(other_db, WINDOW_MS),
    )
    try:
        assert await first.first_use(SIG, 1_000)
        assert not await second.first_use(SIG, 1_001)
        assert not await first.first_use(SIG, 1_002)
    finally:
        first.close()
        second.close()
        other_db.close()


async def test_the_database_guard_forgets_only_what_the_window_already_refuses(
    core: Core,
) -> None:
    guard = DatabaseReplayGuard(core.db, WINDOW_MS)
    try:
        assert await guard.first_use(SIG, 0)
        assert not await guard.first_use(SIG, 9_999)
        assert await guard.first_use(SIG, 10_001)  # its timestamp is outside the window now
        assert not await guard.first_use(SIG, 10_002)
    finally:
        guard.close()


async def test_one_signature_twice_in_one_batch_is_accepted_once(core: Core) -> None:
    guard = DatabaseReplayGuard(core.db, WINDOW_MS)
    try:
        answers = await asyncio.gather(*(guard.first_use(SIG, 1_000) for _ in range(20)))
        others = await asyncio.gather(*(guard.first_use(f"{i:064x}", 1_000) for i in range(20)))
    finally:
        guard.close()
    assert answers.count(True) == 1
    assert all(others)


async def test_expired_signatures_are_cleaned_up(core: Core) -> None:
    guard = DatabaseReplayGuard(core.db, WINDOW_MS)
    try:
        await asyncio.gather(*(guard.first_use(f"{i:064x}", 0) for i in range(5)))
        assert await guard.first_use(SIG, 60_000)
        assert await guard.forget_expired(60_000) == 5
    finally:
        guard.close()
    remaining = core.uow.read_sync(lambda tx: tx.scalar("SELECT COUNT(*) FROM replay_guard"))
    assert remaining == 1


def test_postgres_shares_the_guard_and_sqlite_keeps_it_in_memory(core: Core) -> None:
    guard = replay_guard_for(core.db, WINDOW_MS)
    if core.db.dialect is Dialect.POSTGRES:
        assert isinstance(guard, DatabaseReplayGuard)
        guard.close()
    else:
        assert isinstance(guard, MemoryReplayGuard)


def test_one_users_events_commit_in_seq_order_across_connections(core: Core) -> None:
    """On PostgreSQL a second writer of events for the same user waits for the first to commit
    (a stream that read seq N never meets a smaller seq later); other users do not wait."""
    if core.db.dialect is not Dialect.POSTGRES:
        pytest.skip("SQLite has one writer at a time")
    with core.db.transaction() as first:
        events.append(first, "alice", "test", {"n": 1})
        with (
            pytest.raises(psycopg.errors.LockNotAvailable),
            core.db.transaction_on(core.db.connect()) as second,
        ):
            second.execute("SET LOCAL lock_timeout = '100ms'")
            events.append(second, "alice", "test", {"n": 2})
        conn = core.db.connect()
        with core.db.transaction_on(conn) as third:
            third.execute("SET LOCAL lock_timeout = '100ms'")
            events.append(third, "bob", "test", {"n": 3})


def test_a_dialect_only_migration_runs_on_its_dialect_and_is_recorded_on_both(
    core: Core,
) -> None:
    version, name, _ = available_migrations(core.db.dialect)[7]
    assert (version, name) == (8, "0008_scale_out.sql")
    postgres_sql = available_migrations(Dialect.POSTGRES)[7][2]
    sqlite_sql = available_migrations(Dialect.SQLITE)[7][2]
    assert "lngate_transfer_batch" in postgres_sql
    assert "lngate_transfer_batch" not in sqlite_sql
    assert current_version(core.db) == available_migrations(core.db.dialect)[-1][0]
    has_function = core.uow.read_sync(
        lambda tx: (
            tx.dialect is Dialect.POSTGRES
            and tx.scalar("SELECT COUNT(*) FROM pg_proc WHERE proname = 'lngate_transfer_batch'")
        )
    )
    assert bool(has_function) == (core.db.dialect is Dialect.POSTGRES)


async def test_the_shared_guard_stops_with_its_app(core: Core) -> None:
    """Each listener's guard has a writer thread and a connection: they end with the app."""
    if core.db.dialect is not Dialect.POSTGRES:
        pytest.skip("SQLite's guard is memory only")
    alice = funded_user(core, "alice")
    ops = accounts_for(core).create_user_sync("ops", Role.ADMIN)
    network = SimnetNetwork(core.config.simnet_dir)
    try:
        node = SimnetNode(network)
        listeners = [
            (create_app(core, use_cases(core, node)), alice, "/v1/account"),
            (create_admin_app(core, use_cases(core, node)), ops, "/admin/v1/status"),
        ]
        for app, creds, path in listeners:
            before = _guard_threads()  # other tests' apps may have left theirs
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                    headers = signed_headers(creds.api_key, creds.api_secret, "GET", path)
                    r = await http.get(path, headers=headers)  # starts the guard's writer
                    assert r.status_code == 200, r.text
                assert _guard_threads() == before + 1
            assert _guard_threads() == before
    finally:
        network.close()


def _guard_threads() -> int:
    return sum(t.name == "replay-guard" and t.is_alive() for t in threading.enumerate())
