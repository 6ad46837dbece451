"""simnet persistence: one SQLite file (WAL) shared by every process that opens the state dir.

Each operation is one transaction: writes take the lock up front (``BEGIN IMMEDIATE``) so two
processes never interleave a read-then-write; ``busy_timeout`` makes the other one wait.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

DB_FILENAME = "simnet.sqlite3"
BUSY_TIMEOUT_MS = 10_000

Clock = Callable[[], int]  # unix time in milliseconds


def system_clock_ms() -> int:
    return time.time_ns() // 1_000_000


_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS nodes (
        name TEXT PRIMARY KEY,
        secret BLOB NOT NULL,
        pubkey TEXT NOT NULL UNIQUE,
        onchain_sat INTEGER NOT NULL CHECK (onchain_sat >= 0),
        next_address_index INTEGER NOT NULL DEFAULT 0,
        add_index INTEGER NOT NULL DEFAULT 0,
        settle_index INTEGER NOT NULL DEFAULT 0)""",
    """CREATE TABLE IF NOT EXISTS channels (
        channel_point TEXT PRIMARY KEY,
        node_a TEXT NOT NULL REFERENCES nodes(name),
        node_b TEXT NOT NULL REFERENCES nodes(name),
        capacity_sat INTEGER NOT NULL CHECK (capacity_sat > 0),
        balance_a_msat INTEGER NOT NULL CHECK (balance_a_msat >= 0),
        balance_b_msat INTEGER NOT NULL CHECK (balance_b_msat >= 0),
        pending_a_msat INTEGER NOT NULL DEFAULT 0 CHECK (pending_a_msat >= 0),
        pending_b_msat INTEGER NOT NULL DEFAULT 0 CHECK (pending_b_msat >= 0),
        fee_base_a_msat INTEGER NOT NULL, fee_ppm_a INTEGER NOT NULL,
        fee_base_b_msat INTEGER NOT NULL, fee_ppm_b INTEGER NOT NULL,
        close_address_a TEXT, close_address_b TEXT,
        CHECK (balance_a_msat + balance_b_msat + pending_a_msat + pending_b_msat
               = capacity_sat * 1000))""",
    """CREATE TABLE IF NOT EXISTS closed_channels (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        node TEXT NOT NULL REFERENCES nodes(name),
        channel_point TEXT NOT NULL,
        closing_txid TEXT NOT NULL,
        close_type TEXT NOT NULL,
        settled_sat INTEGER NOT NULL CHECK (settled_sat >= 0),
        time_locked_sat INTEGER NOT NULL CHECK (time_locked_sat >= 0),
        close_address TEXT,
        UNIQUE (node, channel_point))""",
    """CREATE TABLE IF NOT EXISTS invoices (
        payment_hash BLOB PRIMARY KEY,
        node TEXT NOT NULL REFERENCES nodes(name),
        bolt11 TEXT NOT NULL,
        preimage BLOB,
        payment_secret BLOB NOT NULL,
        amount_msat INTEGER,
        state TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expiry_s INTEGER NOT NULL,
        add_index INTEGER NOT NULL,
        settle_index INTEGER NOT NULL DEFAULT 0,
        amount_paid_msat INTEGER NOT NULL DEFAULT 0,
        settled_at INTEGER,
        memo TEXT,
        description_hash BLOB,
        is_hold INTEGER NOT NULL DEFAULT 0,
        CHECK (is_hold = 1 OR preimage IS NOT NULL))""",
    """CREATE INDEX IF NOT EXISTS invoices_settle ON invoices (node, settle_index)""",
    # Every read ticks the expiry of OPEN invoices: without this, a scan of all invoices.
    """CREATE INDEX IF NOT EXISTS invoices_open_expiry
       ON invoices (state, created_at + expiry_s)""",
    """CREATE TABLE IF NOT EXISTS invoice_events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        node TEXT NOT NULL,
        payment_hash BLOB NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS payments (
        sender TEXT NOT NULL REFERENCES nodes(name),
        payment_hash BLOB NOT NULL,
        status TEXT NOT NULL,
        amount_msat INTEGER NOT NULL,
        fee_msat INTEGER NOT NULL,
        route TEXT NOT NULL,
        resolve_at_ms INTEGER NOT NULL,
        planned_success INTEGER NOT NULL,
        planned_failure TEXT NOT NULL,
        preimage BLOB,
        failure_reason TEXT,
        created_at_ms INTEGER NOT NULL,
        accepted INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (sender, payment_hash))""",
    """CREATE INDEX IF NOT EXISTS payments_due ON payments (status, resolve_at_ms)""",
    """CREATE TABLE IF NOT EXISTS addresses (
        address TEXT PRIMARY KEY, node TEXT NOT NULL, idx INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS onchain_txs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        txid TEXT NOT NULL,
        node TEXT NOT NULL,
        amount_sat INTEGER NOT NULL,
        fee_sat INTEGER NOT NULL,
        block_height INTEGER NOT NULL,
        addresses TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS faults (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        node TEXT,
        payment_hash BLOB,
        hold_ms INTEGER NOT NULL DEFAULT 0,
        succeed INTEGER NOT NULL DEFAULT 1,
        delay_ms INTEGER NOT NULL DEFAULT 0,
        fee_base_msat INTEGER NOT NULL DEFAULT 0,
        fee_ppm INTEGER NOT NULL DEFAULT 0)""",
)


class Store:
    """One connection to the simnet database, serialised by a lock within this process."""

    def __init__(self, state_dir: Path, clock_ms: Clock = system_clock_ms) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.path = state_dir / DB_FILENAME
        self.clock_ms = clock_ms
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
        )
        self._conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._conn.execute("PRAGMA foreign_keys = ON")
        with self.write() as conn:
            old_invoices = _detach_old_invoices(conn)
            for statement in _SCHEMA:
                conn.execute(statement)
            _upgrade(conn, old_invoices)
            conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('block_height', 100)")

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, holding SQLite's write lock from its first statement."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """One read transaction: a consistent snapshot."""
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                yield self._conn
            finally:
                self._conn.execute("COMMIT")

    def read_statement(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """The rows of one read statement, outside any transaction: a single statement is
        its own snapshot, and saves the BEGIN and COMMIT of ``read``."""
        with self._lock:
            return list(self._conn.execute(sql, params).fetchall())

    def data_version(self) -> int:
        """SQLite's ``PRAGMA data_version``: it moves whenever another connection (another
        handle, another process) commits to the file; this handle's own commits leave it."""
        with self._lock:
            return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _columns(conn: sqlite3.Connection, table: str) -> dict[str, bool]:
    """The table's columns, each with whether it is NOT NULL."""
    return {str(row[1]): bool(row[3]) for row in conn.execute(f"PRAGMA table_info({table})")}


def _detach_old_invoices(conn: sqlite3.Connection) -> bool:
    """A state dir from before hold invoices has ``invoices.preimage NOT NULL``, which SQLite
    cannot alter: that table is renamed aside here, the schema then creates the new one and
    ``_upgrade`` copies the rows over."""
    columns = _columns(conn, "invoices")
    if not columns.get("preimage"):
        return False
    conn.execute("ALTER TABLE invoices RENAME TO invoices_before_hold")
    conn.execute("DROP INDEX IF EXISTS invoices_settle")
    return True


def _upgrade(conn: sqlite3.Connection, old_invoices: bool) -> None:
    if old_invoices:
        names = ", ".join(c for c in _columns(conn, "invoices_before_hold") if c != "is_hold")
        conn.execute(f"INSERT INTO invoices ({names}) SELECT {names} FROM invoices_before_hold")
        conn.execute("DROP TABLE invoices_before_hold")
    if "accepted" not in _columns(conn, "payments"):
        conn.execute("ALTER TABLE payments ADD COLUMN accepted INTEGER NOT NULL DEFAULT 0")
        # Before the column, a payment the payee accepted was planned to fail (if at all) for
        # lack of a route; one it refused, for incorrect payment details.
        conn.execute(
            "UPDATE payments SET accepted = 1 WHERE status = 'in_flight'"
            " AND planned_failure != 'incorrect_payment_details'"
        )


def block_height(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT value FROM meta WHERE key = 'block_height'").fetchone()
    return int(row[0])


def mine_block(conn: sqlite3.Connection) -> int:
    """Advance the simulated chain by one block; returns the new height."""
    conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'block_height'")
    return block_height(conn)
