"""A thin layer over sqlite3 and psycopg: one SQL text, two dialects.

SQL in lngate is written once with ``:name`` parameters; for PostgreSQL they are rewritten to
``%(name)s`` (cached). Connections are plain DB-API connections, wrapped by ``Tx`` so the rest of
the store never knows which database it talks to.
"""

from __future__ import annotations

import contextlib
import enum
import re
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import psycopg

from lngate.domain.errors import InvalidRequest

Params = Mapping[str, Any]
Row = tuple[Any, ...]


class Dialect(enum.StrEnum):
    SQLITE = "sqlite"
    POSTGRES = "postgres"


class IntegrityError(Exception):
    """A unique or check constraint refused a write (either database)."""


_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


@lru_cache(maxsize=1024)
def _to_pyformat(sql: str) -> str:
    return _PARAM.sub(r"%(\1)s", sql.replace("%", "%%"))


@dataclass(frozen=True, slots=True)
class DatabaseUrl:
    dialect: Dialect
    sqlite_path: Path | None = None
    postgres_dsn: str | None = None

    @classmethod
    def parse(cls, url: str) -> DatabaseUrl:
        if url.startswith("sqlite:///"):
            return cls(Dialect.SQLITE, sqlite_path=Path(url.removeprefix("sqlite:///")))
        if url.startswith(("postgresql://", "postgres://")):
            return cls(Dialect.POSTGRES, postgres_dsn=url)
        raise ValueError(f"unsupported database URL (sqlite:///PATH or postgresql://...): {url!r}")


class Tx:
    """One connection inside a transaction; executes dialect-neutral SQL."""

    def __init__(self, conn: Any, dialect: Dialect) -> None:
        self._conn = conn
        self.dialect = dialect
        self._savepoints = 0

    def _sql(self, sql: str) -> str:
        return sql if self.dialect is Dialect.SQLITE else _to_pyformat(sql)

    def _run(self, sql: str, params: Params | None) -> Any:
        try:
            return self._conn.execute(self._sql(sql), params or {})
        except (sqlite3.IntegrityError, psycopg.errors.IntegrityError) as exc:
            raise IntegrityError(str(exc)) from exc
        except (psycopg.errors.DataError, ValueError, OverflowError) as exc:
            # A value the database cannot hold (a NUL byte in text, an integer past int64):
            # the edge should have refused it; this keeps it a refusal, not a crash.
            raise InvalidRequest("a value in the request cannot be stored") from exc

    def execute(self, sql: str, params: Params | None = None) -> int:
        """Run a statement; return the number of rows it changed."""
        return int(self._run(sql, params).rowcount)

    def one(self, sql: str, params: Params | None = None) -> Row | None:
        row = self._run(sql, params).fetchone()
        return tuple(row) if row is not None else None

    def all(self, sql: str, params: Params | None = None) -> list[Row]:
        return [tuple(r) for r in self._run(sql, params).fetchall()]

    def scalar(self, sql: str, params: Params | None = None) -> Any:
        row = self.one(sql, params)
        return None if row is None else row[0]

    def executescript(self, script: str) -> None:
        if self.dialect is Dialect.SQLITE:
            for statement in _split_statements(script):
                self._conn.execute(statement)
        else:
            self._conn.execute(script)

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A nested unit: on an exception only its own writes are undone."""
        self._savepoints += 1
        name = f"sp{self._savepoints}"
        self._conn.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            self._conn.execute(f"ROLLBACK TO SAVEPOINT {name}")
            self._conn.execute(f"RELEASE SAVEPOINT {name}")
            raise
        else:
            self._conn.execute(f"RELEASE SAVEPOINT {name}")
        finally:
            self._savepoints -= 1


def _split_statements(script: str) -> Sequence[str]:
    return [s.strip() for s in script.split(";\n") if s.strip()]


class Database:
    """Opens connections for one database URL. Thread-safe; each thread uses its own."""

    def __init__(self, url: str) -> None:
        self.url = DatabaseUrl.parse(url)
        self.dialect = self.url.dialect
        self._local = threading.local()
        self._all: list[Any] = []
        self._lock = threading.Lock()
        if self.url.sqlite_path is not None:
            self.url.sqlite_path.parent.mkdir(parents=True, exist_ok=True)

    def connect(self, *, synchronous_commit: bool = True) -> Any:
        """A new connection in manual-transaction mode.

        ``synchronous_commit=False`` (PostgreSQL) lets this connection's commits return before
        their WAL is flushed: for state whose loss in a database crash is harmless (the replay
        guard), never for money.
        """
        conn: Any
        if self.dialect is Dialect.SQLITE:
            assert self.url.sqlite_path is not None
            conn = sqlite3.connect(
                self.url.sqlite_path, isolation_level=None, check_same_thread=False, timeout=30
            )
            conn.execute("PRAGMA journal_mode=WAL")
            # FULL: a committed transfer survives power loss. Group commit pays one fsync a batch.
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=30000")
        else:
            conn = psycopg.connect(self.url.postgres_dsn or "", autocommit=True)
            if not synchronous_commit:
                conn.execute("SET synchronous_commit = off")
        with self._lock:
            self._all.append(conn)
        return conn

    def _thread_conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self.connect()
            self._local.conn = conn
        return conn

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Tx]:
        """A transaction on this thread's connection: committed on success, rolled back on error.

        SQLite write transactions start IMMEDIATE so two writers queue on the lock at BEGIN
        instead of failing at their first write.
        """
        conn = self._thread_conn()
        with self.transaction_on(conn, write=write) as tx:
            yield tx

    @contextmanager
    def transaction_on(self, conn: Any, *, write: bool = True) -> Iterator[Tx]:
        begin = "BEGIN IMMEDIATE" if (write and self.dialect is Dialect.SQLITE) else "BEGIN"
        conn.execute(begin)
        tx = Tx(conn, self.dialect)
        try:
            yield tx
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def single_statement(self) -> Tx:
        """This thread's connection outside any transaction (see ``single_statements_on``)."""
        return self.single_statements_on(self._thread_conn())

    def single_statements_on(self, conn: Any) -> Tx:
        """``conn`` outside any transaction: each statement commits on its own, in the one
        round trip that runs it (PostgreSQL's autocommit; SQLite's too, with our connections)."""
        return Tx(conn, self.dialect)

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            with contextlib.suppress(Exception):  # best effort: it may be gone
                conn.close()
        self._local = threading.local()
