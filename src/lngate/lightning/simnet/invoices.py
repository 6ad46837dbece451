"""Invoices of simnet nodes: rows, state changes and the event log that subscriptions follow."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from typing import Any

from lngate.lightning.bolt11 import encode_bolt11
from lngate.lightning.errors import InvalidNodeRequest, InvoiceNotFound, NodeBadResponse
from lngate.lightning.node import (
    MAX_HOLD_INVOICE_CLTV,
    MIN_HOLD_INVOICE_CLTV,
    Invoice,
    InvoiceState,
    Network,
)

MAX_EXPIRY_S = 365 * 24 * 3600
MAX_MEMO_CHARS = 639  # LND's limit on a description
MIN_FINAL_CLTV_EXPIRY = 40

_COLUMNS = (
    "bolt11, payment_hash, amount_msat, state, created_at, expiry_s, add_index, settle_index,"
    " amount_paid_msat, settled_at, preimage, memo, description_hash"
)


def row_to_invoice(row: tuple[Any, ...]) -> Invoice:
    (
        bolt11,
        payment_hash,
        amount_msat,
        state,
        created_at,
        expiry_s,
        add_index,
        settle_index,
        amount_paid_msat,
        settled_at,
        preimage,
        memo,
        description_hash,
    ) = row
    return Invoice(
        bolt11=bolt11,
        payment_hash=bytes(payment_hash),
        amount_msat=amount_msat,
        state=InvoiceState(state),
        created_at=created_at,
        expiry_s=expiry_s,
        add_index=add_index,
        settle_index=settle_index,
        amount_paid_msat=amount_paid_msat,
        settled_at=settled_at,
        # A hold invoice's preimage is unknown until it is settled.
        preimage=None if preimage is None else checked_preimage(bytes(preimage), payment_hash),
        memo=memo,
        description_hash=None if description_hash is None else bytes(description_hash),
    )


def checked_preimage(preimage: bytes, payment_hash: bytes) -> bytes:
    # Check sha256(preimage) == payment_hash whenever a preimage is read (STYLE.md).
    if hashlib.sha256(preimage).digest() != payment_hash:
        raise NodeBadResponse(f"simnet preimage does not hash to {payment_hash.hex()}")
    return preimage


def _check_terms(amount_msat: int | None, memo: str | None, expiry_s: int) -> None:
    if amount_msat is not None and amount_msat <= 0:
        raise InvalidNodeRequest("amount_msat must be positive (or None for amountless)")
    if not 0 < expiry_s <= MAX_EXPIRY_S:
        raise InvalidNodeRequest("expiry_s out of range")
    if memo is not None and len(memo) > MAX_MEMO_CHARS:
        raise InvalidNodeRequest("memo too long")


def create_invoice(
    conn: sqlite3.Connection,
    node: str,
    amount_msat: int | None,
    *,
    memo: str | None,
    description_hash: bytes | None,
    expiry_s: int,
    created_at: int,
) -> Invoice:
    _check_terms(amount_msat, memo, expiry_s)
    if description_hash is not None and len(description_hash) != 32:
        raise InvalidNodeRequest("description_hash must be 32 bytes")
    if memo is not None and description_hash is not None:
        raise InvalidNodeRequest("memo and description_hash are exclusive")
    preimage = os.urandom(32)
    return _insert(
        conn,
        node,
        hashlib.sha256(preimage).digest(),
        preimage,
        amount_msat,
        memo=memo,
        description_hash=description_hash,
        expiry_s=expiry_s,
        created_at=created_at,
        min_final_cltv_expiry=MIN_FINAL_CLTV_EXPIRY,
    )


def create_hold_invoice(
    conn: sqlite3.Connection,
    node: str,
    payment_hash: bytes,
    amount_msat: int,
    *,
    memo: str | None,
    expiry_s: int,
    cltv_expiry: int,
    created_at: int,
) -> Invoice:
    """An invoice for a hash whose preimage this node does not know (stored NULL until the
    payee settles with it)."""
    if len(payment_hash) != 32:
        raise ValueError("payment_hash must be 32 bytes")
    if amount_msat <= 0:
        raise InvalidNodeRequest("a hold invoice needs a positive amount_msat")
    _check_terms(amount_msat, memo, expiry_s)
    if not MIN_HOLD_INVOICE_CLTV <= cltv_expiry <= MAX_HOLD_INVOICE_CLTV:
        raise InvalidNodeRequest("cltv_expiry out of range")
    return _insert(
        conn,
        node,
        payment_hash,
        None,
        amount_msat,
        memo=memo,
        description_hash=None,
        expiry_s=expiry_s,
        created_at=created_at,
        min_final_cltv_expiry=cltv_expiry,
    )


def _insert(
    conn: sqlite3.Connection,
    node: str,
    payment_hash: bytes,
    preimage: bytes | None,
    amount_msat: int | None,
    *,
    memo: str | None,
    description_hash: bytes | None,
    expiry_s: int,
    created_at: int,
    min_final_cltv_expiry: int,
) -> Invoice:
    exists = conn.execute("SELECT 1 FROM invoices WHERE payment_hash = ?", (payment_hash,))
    if exists.fetchone() is not None:  # the key is the hash alone, as in LND's invoice index
        raise InvalidNodeRequest("an invoice with this payment hash already exists")
    numbered = conn.execute(
        "UPDATE nodes SET add_index = add_index + 1 WHERE name = ? RETURNING secret, add_index",
        (node,),
    ).fetchall()  # to the end: a RETURNING statement left open would hold up the commit
    if not numbered:
        raise InvalidNodeRequest(f"unknown simnet node {node!r}")
    secret, add_index = bytes(numbered[0][0]), int(numbered[0][1])
    payment_secret = os.urandom(32)
    bolt11 = encode_bolt11(
        private_key=secret,
        network=Network.SIMNET,
        payment_hash=payment_hash,
        payment_secret=payment_secret,
        amount_msat=amount_msat,
        created_at=created_at,
        expiry_s=expiry_s,
        description=memo,
        description_hash=description_hash,
        min_final_cltv_expiry=min_final_cltv_expiry,
    )
    conn.execute(
        "INSERT INTO invoices (payment_hash, node, bolt11, preimage, payment_secret, amount_msat,"
        " state, created_at, expiry_s, add_index, memo, description_hash, is_hold)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            payment_hash,
            node,
            bolt11,
            preimage,
            payment_secret,
            amount_msat,
            InvoiceState.OPEN.value,
            created_at,
            expiry_s,
            add_index,
            memo,
            description_hash,
            int(preimage is None),
        ),
    )
    return lookup_invoice(conn, node, payment_hash)


def lookup_invoice(conn: sqlite3.Connection, node: str, payment_hash: bytes) -> Invoice:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM invoices WHERE node = ? AND payment_hash = ?",
        (node, payment_hash),
    ).fetchone()
    if row is None:
        raise InvoiceNotFound(f"no invoice {payment_hash.hex()}")
    return row_to_invoice(row)


def is_hold(conn: sqlite3.Connection, payment_hash: bytes) -> bool:
    row = conn.execute("SELECT is_hold FROM invoices WHERE payment_hash = ?", (payment_hash,))
    found = row.fetchone()
    return found is not None and bool(found[0])


def record_event(conn: sqlite3.Connection, node: str, payment_hash: bytes) -> None:
    conn.execute(
        "INSERT INTO invoice_events (node, payment_hash) VALUES (?, ?)", (node, payment_hash)
    )


def accept(conn: sqlite3.Connection, payment_hash: bytes, amount_msat: int) -> None:
    """OPEN -> ACCEPTED: the payee holds an HTLC of ``amount_msat``."""
    conn.execute(
        "UPDATE invoices SET state = ?, amount_paid_msat = ? WHERE payment_hash = ?",
        (InvoiceState.ACCEPTED.value, amount_msat, payment_hash),
    )


def set_state(conn: sqlite3.Connection, payment_hash: bytes, state: InvoiceState) -> None:
    """ACCEPTED -> OPEN (the held HTLC was failed back) or -> CANCELED (logs an event); either
    way nothing is held any more."""
    assert state in (InvoiceState.OPEN, InvoiceState.CANCELED), state
    conn.execute(
        "UPDATE invoices SET state = ?, amount_paid_msat = 0 WHERE payment_hash = ?",
        (state.value, payment_hash),
    )
    if state is InvoiceState.CANCELED:
        node = conn.execute("SELECT node FROM invoices WHERE payment_hash = ?", (payment_hash,))
        record_event(conn, str(node.fetchone()[0]), payment_hash)


def settle(
    conn: sqlite3.Connection, payment_hash: bytes, amount_paid_msat: int, now_s: int
) -> None:
    node = str(
        conn.execute(
            "SELECT node FROM invoices WHERE payment_hash = ?", (payment_hash,)
        ).fetchone()[0]
    )
    conn.execute("UPDATE nodes SET settle_index = settle_index + 1 WHERE name = ?", (node,))
    index = conn.execute("SELECT settle_index FROM nodes WHERE name = ?", (node,)).fetchone()[0]
    conn.execute(
        "UPDATE invoices SET state = ?, settle_index = ?, amount_paid_msat = ?, settled_at = ?"
        " WHERE payment_hash = ?",
        (InvoiceState.SETTLED.value, index, amount_paid_msat, now_s, payment_hash),
    )
    record_event(conn, node, payment_hash)


def expire_due(conn: sqlite3.Connection, now_s: int) -> int:
    """OPEN invoices past their expiry become CANCELED, as LND's expiry watcher does. ACCEPTED
    ones stay: a held HTLC may still settle after expiry (lnd: expiry is checked on decode)."""
    rows = conn.execute(
        "SELECT payment_hash FROM invoices WHERE state = ? AND created_at + expiry_s < ?",
        (InvoiceState.OPEN.value, now_s),
    ).fetchall()
    for (payment_hash,) in rows:
        set_state(conn, bytes(payment_hash), InvoiceState.CANCELED)
    return len(rows)


def settled_after(
    conn: sqlite3.Connection, node: str, settle_index: int, limit: int
) -> list[Invoice]:
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM invoices WHERE node = ? AND settle_index > ?"
        " ORDER BY settle_index LIMIT ?",
        (node, settle_index, limit),
    ).fetchall()
    return [row_to_invoice(row) for row in rows]


def last_event_seq(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT MAX(seq) FROM invoice_events").fetchone()
    return int(row[0] or 0)


def events_after(
    conn: sqlite3.Connection, node: str, seq: int, limit: int
) -> list[tuple[int, Invoice]]:
    """Invoice updates (settled, canceled) of ``node`` logged after ``seq``, oldest first, each
    with the invoice as it is now."""
    cols = ", ".join(f"i.{c.strip()}" for c in _COLUMNS.split(","))
    rows = conn.execute(
        f"SELECT e.seq, {cols} FROM invoice_events e JOIN invoices i"
        " ON i.payment_hash = e.payment_hash WHERE e.node = ? AND e.seq > ?"
        " ORDER BY e.seq LIMIT ?",
        (node, seq, limit),
    ).fetchall()
    return [(int(row[0]), row_to_invoice(row[1:])) for row in rows]


def any_expired(conn: sqlite3.Connection, now_s: int) -> bool:
    row = conn.execute(
        "SELECT 1 FROM invoices WHERE state = ? AND created_at + expiry_s < ? LIMIT 1",
        (InvoiceState.OPEN.value, now_s),
    ).fetchone()
    return row is not None
