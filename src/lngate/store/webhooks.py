"""Webhook endpoints, the outbox of deliveries and the attempt log in the database.

A delivery is claimed for one attempt by a lease (``lease_until_ms``): on PostgreSQL the due
rows are picked with ``FOR UPDATE SKIP LOCKED`` so several senders never take the same one;
SQLite has one writer at a time, so the conditional UPDATE alone is enough there. A sender that
dies mid-attempt leaves a lease that runs out: the delivery is due again (at least once)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from lngate.store.db import Dialect, Row, Tx


@dataclass(frozen=True, slots=True)
class Endpoint:
    seq: int
    id: str
    merchant_user_id: str
    url: str
    events: tuple[str, ...]
    secret_encrypted: bytes
    status: str
    created_at_ms: int
    failing_since_ms: int | None
    disabled_at_ms: int | None


_ENDPOINT = (
    "seq, id, merchant_user_id, url, events, secret_encrypted, status, created_at_ms, "
    "failing_since_ms, disabled_at_ms"
)


def _endpoint(r: Row) -> Endpoint:
    return Endpoint(
        int(r[0]),
        str(r[1]),
        str(r[2]),
        str(r[3]),
        tuple(json.loads(str(r[4]))),
        bytes(r[5]),
        str(r[6]),
        int(r[7]),
        None if r[8] is None else int(r[8]),
        None if r[9] is None else int(r[9]),
    )


def insert_endpoint(
    tx: Tx,
    *,
    endpoint_id: str,
    merchant_user_id: str,
    url: str,
    events: tuple[str, ...],
    secret_encrypted: bytes,
    now_ms: int,
) -> None:
    tx.execute(
        "INSERT INTO webhook_endpoints (id, merchant_user_id, url, events, secret_encrypted,"
        " status, created_at_ms) VALUES (:id, :m, :u, :e, :s, 'enabled', :t)",
        {
            "id": endpoint_id,
            "m": merchant_user_id,
            "u": url,
            "e": json.dumps(list(events)),
            "s": secret_encrypted,
            "t": now_ms,
        },
    )


def endpoint_by_id(tx: Tx, endpoint_id: str) -> Endpoint | None:
    row = tx.one(f"SELECT {_ENDPOINT} FROM webhook_endpoints WHERE id = :id", {"id": endpoint_id})
    return None if row is None else _endpoint(row)


def endpoints_of(tx: Tx, merchant_user_id: str) -> list[Endpoint]:
    rows = tx.all(
        f"SELECT {_ENDPOINT} FROM webhook_endpoints WHERE merchant_user_id = :m"
        " AND status != 'deleted' ORDER BY seq",
        {"m": merchant_user_id},
    )
    return [_endpoint(r) for r in rows]


def subscribed_endpoints(tx: Tx, merchant_user_id: str, event_type: str) -> list[str]:
    rows = tx.all(
        "SELECT id, events FROM webhook_endpoints WHERE merchant_user_id = :m"
        " AND status = 'enabled' ORDER BY seq",
        {"m": merchant_user_id},
    )
    return [str(r[0]) for r in rows if event_type in json.loads(str(r[1]))]


def delete_endpoint(tx: Tx, endpoint_id: str) -> bool:
    """Deleted endpoints get nothing more; what is still due for them is dropped as failed."""
    changed = tx.execute(
        "UPDATE webhook_endpoints SET status = 'deleted' WHERE id = :id AND status != 'deleted'",
        {"id": endpoint_id},
    )
    tx.execute(
        "UPDATE webhook_deliveries SET status = 'failed', next_attempt_at_ms = NULL,"
        " last_error = 'endpoint deleted' WHERE endpoint_id = :id AND status = 'pending'",
        {"id": endpoint_id},
    )
    return changed == 1


def disable_endpoint(tx: Tx, endpoint_id: str, now_ms: int) -> bool:
    return (
        tx.execute(
            "UPDATE webhook_endpoints SET status = 'disabled', disabled_at_ms = :t"
            " WHERE id = :id AND status = 'enabled'",
            {"t": now_ms, "id": endpoint_id},
        )
        == 1
    )


def note_endpoint_health(tx: Tx, endpoint_id: str, *, ok: bool, now_ms: int) -> int | None:
    """Record an attempt's outcome on its endpoint; the start of its run of failures (None
    while it answers)."""
    if ok:
        tx.execute(
            "UPDATE webhook_endpoints SET failing_since_ms = NULL WHERE id = :id",
            {"id": endpoint_id},
        )
        return None
    tx.execute(
        "UPDATE webhook_endpoints SET failing_since_ms = COALESCE(failing_since_ms, :t)"
        " WHERE id = :id",
        {"t": now_ms, "id": endpoint_id},
    )
    value = tx.scalar(
        "SELECT failing_since_ms FROM webhook_endpoints WHERE id = :id", {"id": endpoint_id}
    )
    return None if value is None else int(value)


# --- deliveries ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Delivery:
    seq: int
    id: str
    endpoint_id: str
    message_id: str
    event_type: str
    body: str
    status: str
    attempts: int
    next_attempt_at_ms: int | None
    committed_at_ms: int
    delivered_at_ms: int | None
    last_status_code: int | None
    last_error: str | None


_DELIVERY = (
    "seq, id, endpoint_id, message_id, event_type, body, status, attempts, next_attempt_at_ms, "
    "committed_at_ms, delivered_at_ms, last_status_code, last_error"
)


def _opt(value: Any) -> int | None:
    return None if value is None else int(value)


def _delivery(r: Row) -> Delivery:
    return Delivery(
        int(r[0]),
        str(r[1]),
        str(r[2]),
        str(r[3]),
        str(r[4]),
        str(r[5]),
        str(r[6]),
        int(r[7]),
        _opt(r[8]),
        int(r[9]),
        _opt(r[10]),
        _opt(r[11]),
        None if r[12] is None else str(r[12]),
    )


def insert_delivery(
    tx: Tx,
    *,
    delivery_id: str,
    endpoint_id: str,
    message_id: str,
    event_type: str,
    body: str,
    now_ms: int,
) -> None:
    tx.execute(
        "INSERT INTO webhook_deliveries (id, endpoint_id, message_id, event_type, body, status,"
        " next_attempt_at_ms, committed_at_ms) VALUES (:id, :e, :m, :t, :b, 'pending', :n, :n)",
        {
            "id": delivery_id,
            "e": endpoint_id,
            "m": message_id,
            "t": event_type,
            "b": body,
            "n": now_ms,
        },
    )


def delivery_by_id(tx: Tx, delivery_id: str) -> Delivery | None:
    row = tx.one(f"SELECT {_DELIVERY} FROM webhook_deliveries WHERE id = :id", {"id": delivery_id})
    return None if row is None else _delivery(row)


def deliveries_of(
    tx: Tx, endpoint_id: str, *, before_seq: int | None, limit: int
) -> list[Delivery]:
    rows = tx.all(
        f"SELECT {_DELIVERY} FROM webhook_deliveries WHERE endpoint_id = :e AND seq < :b"
        " ORDER BY seq DESC LIMIT :l",
        {"e": endpoint_id, "b": before_seq if before_seq is not None else 2**62, "l": limit},
    )
    return [_delivery(r) for r in rows]


def any_due(tx: Tx, now_ms: int) -> bool:
    """Whether some delivery is due (leases aside): the cheap read before a claim."""
    row = tx.one(
        "SELECT 1 FROM webhook_deliveries WHERE status = 'pending'"
        " AND next_attempt_at_ms <= :now LIMIT 1",
        {"now": now_ms},
    )
    return row is not None


def claim_due(tx: Tx, now_ms: int, lease_ms: int, limit: int) -> list[Delivery]:
    """Take up to ``limit`` due deliveries of enabled endpoints for one attempt each."""
    lock = " FOR UPDATE OF d SKIP LOCKED" if tx.dialect is Dialect.POSTGRES else ""
    rows = tx.all(
        "SELECT d.id FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id"
        " WHERE d.status = 'pending' AND d.next_attempt_at_ms <= :now"
        " AND (d.lease_until_ms IS NULL OR d.lease_until_ms <= :now) AND e.status = 'enabled'"
        f" ORDER BY d.next_attempt_at_ms LIMIT :l{lock}",
        {"now": now_ms, "l": limit},
    )
    claimed = []
    for (delivery_id,) in rows:
        taken = tx.execute(
            "UPDATE webhook_deliveries SET lease_until_ms = :lease, attempts = attempts + 1"
            " WHERE id = :id AND status = 'pending'"
            " AND (lease_until_ms IS NULL OR lease_until_ms <= :now)",
            {"lease": now_ms + lease_ms, "id": delivery_id, "now": now_ms},
        )
        if taken == 1:
            found = delivery_by_id(tx, str(delivery_id))
            if found is not None:
                claimed.append(found)
    return claimed


def record_attempt(
    tx: Tx,
    delivery: Delivery,
    *,
    at_ms: int,
    duration_ms: int,
    status_code: int | None,
    error: str | None,
    next_attempt_at_ms: int | None,
    succeeded: bool,
) -> bool:
    """The outcome of the attempt ``delivery`` was claimed for (its ``attempts`` number):
    succeeded, due again at ``next_attempt_at_ms``, or failed for good (None)."""
    status = "succeeded" if succeeded else ("pending" if next_attempt_at_ms else "failed")
    changed = tx.execute(
        "UPDATE webhook_deliveries SET status = :s, next_attempt_at_ms = :n, lease_until_ms = NULL,"
        " delivered_at_ms = :d, last_status_code = :c, last_error = :err"
        " WHERE id = :id AND attempts = :a AND status = 'pending'",
        {
            "s": status,
            "n": None if succeeded else next_attempt_at_ms,
            "d": at_ms if succeeded else None,
            "c": status_code,
            "err": error,
            "id": delivery.id,
            "a": delivery.attempts,
        },
    )
    tx.execute(
        "INSERT INTO webhook_attempts (delivery_id, attempt, at_ms, duration_ms, status_code,"
        " error) VALUES (:id, :a, :t, :dur, :c, :err)",
        {
            "id": delivery.id,
            "a": delivery.attempts,
            "t": at_ms,
            "dur": duration_ms,
            "c": status_code,
            "err": error,
        },
    )
    return changed == 1


def redeliver(tx: Tx, delivery_id: str, now_ms: int) -> bool:
    """Due again now, with a fresh schedule (the same webhook-id and body)."""
    return (
        tx.execute(
            "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at_ms = :n,"
            " lease_until_ms = NULL, attempts = 0 WHERE id = :id AND status != 'pending'",
            {"n": now_ms, "id": delivery_id},
        )
        == 1
    )
