"""Small pieces of operational state, as JSON values under a key."""

from __future__ import annotations

from typing import Any

import orjson

from lngate.store.db import Tx
from lngate.store.ledger import now_ms


def get(tx: Tx, key: str) -> Any:
    raw = tx.scalar("SELECT value FROM system_state WHERE key = :k", {"k": key})
    return None if raw is None else orjson.loads(raw)


def put(tx: Tx, key: str, value: Any) -> None:
    params = {"k": key, "v": orjson.dumps(value).decode(), "t": now_ms()}
    if tx.execute("UPDATE system_state SET value = :v, updated_at_ms = :t WHERE key = :k", params):
        return
    tx.execute("INSERT INTO system_state (key, value, updated_at_ms) VALUES (:k, :v, :t)", params)


def delete(tx: Tx, key: str) -> bool:
    return tx.execute("DELETE FROM system_state WHERE key = :k", {"k": key}) == 1


def add_report(tx: Tx, ok: bool, shortfall_msat: int, report: dict[str, Any]) -> int:
    tx.execute(
        "INSERT INTO reconciliation_reports (at_ms, ok, shortfall_msat, report_json) "
        "VALUES (:t, :ok, :s, :r)",
        {"t": now_ms(), "ok": int(ok), "s": shortfall_msat, "r": orjson.dumps(report).decode()},
    )
    return int(tx.scalar("SELECT MAX(seq) FROM reconciliation_reports"))


def reports(tx: Tx, limit: int = 20) -> list[dict[str, Any]]:
    assert 1 <= limit <= 1000
    rows = tx.all(
        "SELECT seq, at_ms, ok, shortfall_msat, report_json FROM reconciliation_reports "
        "ORDER BY seq DESC LIMIT :l",
        {"l": limit},
    )
    return [
        {
            "id": int(r[0]),
            "at_ms": int(r[1]),
            "ok": bool(r[2]),
            "shortfall_msat": int(r[3]),
            "report": orjson.loads(r[4]),
        }
        for r in rows
    ]
