"""Stored responses for (user, Idempotency-Key): same key and request, same answer."""

from __future__ import annotations

from dataclasses import dataclass

from lngate.store.db import Tx
from lngate.store.ledger import now_ms


@dataclass(frozen=True, slots=True)
class StoredResponse:
    request_hash: str
    status_code: int
    response_json: str


def lookup(tx: Tx, user_id: str, key: str) -> StoredResponse | None:
    row = tx.one(
        "SELECT request_hash, status_code, response_json FROM idempotency_keys "
        "WHERE user_id = :u AND key = :k",
        {"u": user_id, "k": key},
    )
    return None if row is None else StoredResponse(str(row[0]), int(row[1]), str(row[2]))


def store(tx: Tx, user_id: str, key: str, stored: StoredResponse) -> None:
    tx.execute(
        "INSERT INTO idempotency_keys "
        "(user_id, key, request_hash, status_code, response_json, created_at_ms) "
        "VALUES (:u, :k, :h, :s, :r, :t)",
        {
            "u": user_id,
            "k": key,
            "h": stored.request_hash,
            "s": stored.status_code,
            "r": stored.response_json,
            "t": now_ms(),
        },
    )
