"""The replay guard's table (migration 0008): a signature is accepted the first time any
process inserts it, and refused while its row lives.

A row that has expired counts as absent (it is taken over by the insert), so cleaning up late
never refuses a request the in-memory guard would accept; ``forget_expired`` only keeps the
table small.
"""

from __future__ import annotations

from collections.abc import Sequence

from lngate.store.db import Dialect, Params, Tx

FORGET_BATCH = 5_000

_UPSERT_TAIL = (
    "ON CONFLICT (signature) DO UPDATE SET expires_at_ms = excluded.expires_at_ms "
    "WHERE replay_guard.expires_at_ms < :now RETURNING signature"
)


def first_use(tx: Tx, signature: bytes, now_ms: int, ttl_ms: int) -> bool:
    """Remember ``signature`` until ``now_ms + ttl_ms``; False if it is already remembered."""
    row = tx.one(
        f"INSERT INTO replay_guard (signature, expires_at_ms) VALUES (:s, :e) {_UPSERT_TAIL}",
        {"s": signature, "e": now_ms + ttl_ms, "now": now_ms},
    )
    return row is not None


def first_uses_statement(
    signatures: Sequence[bytes], now_ms: int, ttl_ms: int
) -> tuple[str, Params]:
    """PostgreSQL: one statement for many distinct signatures; it returns the new ones."""
    sql = (
        "INSERT INTO replay_guard (signature, expires_at_ms) "
        f"SELECT s, :e FROM unnest(:sigs::bytea[]) AS s {_UPSERT_TAIL}"
    )
    return sql, {"sigs": list(signatures), "e": now_ms + ttl_ms, "now": now_ms}


def forget_expired(tx: Tx, now_ms: int, limit: int = FORGET_BATCH) -> int:
    """Delete up to ``limit`` expired rows; several processes may do this at once."""
    skip = " FOR UPDATE SKIP LOCKED" if tx.dialect is Dialect.POSTGRES else ""
    return tx.execute(
        "DELETE FROM replay_guard WHERE signature IN (SELECT signature FROM replay_guard "
        f"WHERE expires_at_ms < :now LIMIT :l{skip})",
        {"now": now_ms, "l": limit},
    )
