"""The audit log: append-only records chained by SHA-256, so an edited record is detectable.

hash_n = sha256(hash_{n-1} || canonical JSON of record n). The single ``audit_head`` row is
updated in the same transaction as each append, which serialises appenders on both databases.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from lngate.store.db import Tx
from lngate.store.ledger import now_ms

GENESIS_HASH = "0" * 64


@dataclass(frozen=True, slots=True)
class AuditRecord:
    seq: int
    at_ms: int
    actor: str
    action: str
    subject: str
    reason: str
    details: dict[str, Any]
    prev_hash: str
    hash: str


def _digest(
    prev_hash: str,
    seq: int,
    at_ms: int,
    actor: str,
    action: str,
    subject: str,
    reason: str,
    details: dict[str, Any],
) -> str:
    body = orjson.dumps(
        [seq, at_ms, actor, action, subject, reason, details], option=orjson.OPT_SORT_KEYS
    )
    return hashlib.sha256(prev_hash.encode() + body).hexdigest()


def append(
    tx: Tx,
    *,
    actor: str,
    action: str,
    subject: str,
    reason: str,
    details: dict[str, Any] | None = None,
) -> AuditRecord:
    details = details or {}
    # Bump the head first: on PostgreSQL this row lock makes concurrent appenders take turns.
    tx.execute("UPDATE audit_head SET seq = seq + 1 WHERE id = 1")
    row = tx.one("SELECT seq, hash FROM audit_head WHERE id = 1")
    assert row is not None
    seq, prev_hash = int(row[0]), str(row[1])
    at = now_ms()
    digest = _digest(prev_hash, seq, at, actor, action, subject, reason, details)
    tx.execute(
        "INSERT INTO audit_log (seq, at_ms, actor, action, subject, reason, details_json, "
        "prev_hash, hash) VALUES (:s, :at, :ac, :a, :su, :r, :d, :p, :h)",
        {
            "s": seq,
            "at": at,
            "ac": actor,
            "a": action,
            "su": subject,
            "r": reason,
            "d": orjson.dumps(details, option=orjson.OPT_SORT_KEYS).decode(),
            "p": prev_hash,
            "h": digest,
        },
    )
    tx.execute("UPDATE audit_head SET hash = :h WHERE id = 1", {"h": digest})
    return AuditRecord(seq, at, actor, action, subject, reason, details, prev_hash, digest)


def records(tx: Tx, after_seq: int = 0, limit: int = 1000) -> list[AuditRecord]:
    assert 1 <= limit <= 100_000
    rows = tx.all(
        "SELECT seq, at_ms, actor, action, subject, reason, details_json, prev_hash, hash "
        "FROM audit_log WHERE seq > :s ORDER BY seq LIMIT :l",
        {"s": after_seq, "l": limit},
    )
    return [
        AuditRecord(
            int(r[0]),
            int(r[1]),
            str(r[2]),
            str(r[3]),
            str(r[4]),
            str(r[5]),
            orjson.loads(r[6]),
            str(r[7]),
            str(r[8]),
        )
        for r in rows
    ]


def verify(tx: Tx) -> list[str]:
    """Every break in the chain, as a sentence; an empty list means the log is intact."""
    problems: list[str] = []
    prev_hash, expected_seq, after = GENESIS_HASH, 1, 0
    while True:
        page = records(tx, after, 10_000)
        if not page:
            break
        for rec in page:
            if rec.seq != expected_seq:
                problems.append(f"record {expected_seq} is missing (found {rec.seq})")
            if rec.prev_hash != prev_hash:
                problems.append(f"record {rec.seq} does not link to the record before it")
            digest = _digest(
                rec.prev_hash,
                rec.seq,
                rec.at_ms,
                rec.actor,
                rec.action,
                rec.subject,
                rec.reason,
                rec.details,
            )
            if digest != rec.hash:
                problems.append(f"record {rec.seq} was altered (hash mismatch)")
            prev_hash, expected_seq = rec.hash, rec.seq + 1
        after = page[-1].seq
    head = tx.one("SELECT seq, hash FROM audit_head WHERE id = 1")
    if head is not None and (int(head[0]) != expected_seq - 1 or str(head[1]) != prev_hash):
        problems.append("the chain's head does not match its last record (records removed?)")
    return problems
