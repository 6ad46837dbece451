"""The account-event outbox: written in the transaction of the change it reports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from lngate.store.db import Dialect, Tx
from lngate.store.ledger import now_ms


@dataclass(frozen=True, slots=True)
class Event:
    seq: int
    user_id: str
    type: str
    data: dict[str, Any]
    created_at_ms: int


def append(tx: Tx, user_id: str, event_type: str, data: dict[str, Any]) -> None:
    params = {"u": user_id, "t": event_type, "d": orjson.dumps(data).decode(), "c": now_ms()}
    if tx.dialect is Dialect.POSTGRES:
        # Through the function that orders one user's events across processes (migration
        # 0008): a stream that has read seq N never sees a smaller seq committed later.
        tx.execute("SELECT lngate_append_event(:u, :t, :d, :c)", params)
        return
    # SQLite has one writer at a time, so seq order is commit order already.
    tx.execute(
        "INSERT INTO events (user_id, type, data_json, created_at_ms) VALUES (:u, :t, :d, :c)",
        params,
    )


def after(tx: Tx, user_id: str, after_seq: int, limit: int = 100) -> list[Event]:
    assert 1 <= limit <= 1000
    rows = tx.all(
        "SELECT seq, user_id, type, data_json, created_at_ms FROM events "
        "WHERE user_id = :u AND seq > :s ORDER BY seq LIMIT :l",
        {"u": user_id, "s": after_seq, "l": limit},
    )
    return [Event(int(r[0]), str(r[1]), str(r[2]), orjson.loads(r[3]), int(r[4])) for r in rows]


def last_seq(tx: Tx, user_id: str) -> int:
    return int(
        tx.scalar("SELECT COALESCE(MAX(seq), 0) FROM events WHERE user_id = :u", {"u": user_id})
    )
