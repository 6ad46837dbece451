"""Payments across simnet: start (route, lock HTLCs), lazy resolution (settle or roll back).

A payment in flight has a ``resolve_at_ms`` and a planned outcome. Nothing runs in the
background: whoever next reads payments or invoices calls ``resolve_due`` in a write
transaction, so resolution works across processes and restarts."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from lngate.domain.errors import InvariantBroken, NodeError
from lngate.lightning import errors
from lngate.lightning.node import (
    DecodedInvoice,
    FailureReason,
    InvoiceState,
    Network,
    Payment,
    PaymentStatus,
)
from lngate.lightning.simnet import invoices
from lngate.lightning.simnet.faults import Fault, FaultKind, active_faults
from lngate.lightning.simnet.routing import Edge, Hop, Route, find_route

MAX_RESOLVE_BATCH = 1000
# resolve_at_ms of a payment held by a hold invoice: it resolves when the payee settles or
# cancels, never by itself.
UNTIL_PAYEE_DECIDES_MS = 2**62


@dataclass(frozen=True, slots=True)
class PayOutcome:
    """The payment as recorded, and the typed error to raise once the transaction commits
    (a payment refused before any HTLC left is still recorded as FAILED, as LND does)."""

    payment: Payment
    error: NodeError | None = None


def _row_to_payment(row: tuple[Any, ...]) -> Payment:
    raw_hash, status, amount_msat, fee_msat, raw_preimage, failure_reason = row
    payment_hash = bytes(raw_hash)
    preimage = None if raw_preimage is None else bytes(raw_preimage)
    return Payment(
        payment_hash=payment_hash,
        status=PaymentStatus(status),
        amount_msat=amount_msat,
        fee_msat=fee_msat,
        preimage=None if preimage is None else invoices.checked_preimage(preimage, payment_hash),
        failure_reason=None if failure_reason is None else FailureReason(failure_reason),
    )


def get_payment(conn: sqlite3.Connection, sender: str, payment_hash: bytes) -> Payment:
    row = conn.execute(
        "SELECT payment_hash, status, amount_msat, fee_msat, preimage, failure_reason"
        " FROM payments WHERE sender = ? AND payment_hash = ?",
        (sender, payment_hash),
    ).fetchone()
    if row is None:
        return Payment(payment_hash=payment_hash, status=PaymentStatus.UNKNOWN)
    return _row_to_payment(row)


def _edges(conn: sqlite3.Connection, faults: list[Fault]) -> list[Edge]:
    offline = {f.node for f in faults if f.kind is FaultKind.OFFLINE}
    drain = {f.node: f for f in faults if f.kind is FaultKind.FEE_DRAIN}
    edges: list[Edge] = []
    rows = conn.execute(
        "SELECT channel_point, node_a, node_b, balance_a_msat, balance_b_msat,"
        " fee_base_a_msat, fee_ppm_a, fee_base_b_msat, fee_ppm_b FROM channels"
    ).fetchall()
    for point, node_a, node_b, bal_a, bal_b, base_a, ppm_a, base_b, ppm_b in rows:
        if node_a in offline or node_b in offline:
            continue
        for src, dst, bal, base, ppm in (
            (node_a, node_b, bal_a, base_a, ppm_a),
            (node_b, node_a, bal_b, base_b, ppm_b),
        ):
            if src in drain:
                base, ppm = drain[src].fee_base_msat, drain[src].fee_ppm
            edges.append(Edge(point, src, dst, bal, base, ppm))
    return edges


def _record(
    conn: sqlite3.Connection,
    sender: str,
    payment_hash: bytes,
    route: Route | None,
    amount_msat: int,
    *,
    status: PaymentStatus,
    resolve_at_ms: int,
    planned_success: bool,
    planned_failure: FailureReason,
    now_ms: int,
    accepted: bool = False,
) -> None:
    hops = [] if route is None else [list(_hop_tuple(hop)) for hop in route.hops]
    failure = planned_failure.value if status is PaymentStatus.FAILED else None
    conn.execute(
        "INSERT OR REPLACE INTO payments (sender, payment_hash, status, amount_msat, fee_msat,"
        " route, resolve_at_ms, planned_success, planned_failure, preimage, failure_reason,"
        " created_at_ms, accepted) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?)",
        (
            sender,
            payment_hash,
            status.value,
            amount_msat,
            0 if route is None else route.fee_msat,
            json.dumps(hops),
            resolve_at_ms,
            int(planned_success),
            planned_failure.value,
            failure,
            now_ms,
            int(accepted),
        ),
    )


def _hop_tuple(hop: Hop) -> tuple[str, str, str, int]:
    return (hop.channel_point, hop.from_node, hop.to_node, hop.amount_msat)


def _refuse(
    conn: sqlite3.Connection,
    sender: str,
    payment_hash: bytes,
    amount_msat: int,
    reason: FailureReason,
    error: NodeError,
    now_ms: int,
) -> PayOutcome:
    _record(
        conn,
        sender,
        payment_hash,
        None,
        amount_msat,
        status=PaymentStatus.FAILED,
        resolve_at_ms=now_ms,
        planned_success=False,
        planned_failure=reason,
        now_ms=now_ms,
    )
    return PayOutcome(get_payment(conn, sender, payment_hash), error)


def payment_amount_msat(decoded: DecodedInvoice, amount_msat: int | None) -> int:
    if decoded.amount_msat is None:
        if amount_msat is None or amount_msat <= 0:
            raise errors.InvalidNodeRequest("amountless invoice: give a positive amount_msat")
        return amount_msat
    if amount_msat is not None and amount_msat != decoded.amount_msat:
        raise errors.InvalidNodeRequest("amount given for an invoice that has one")
    return decoded.amount_msat


def start_payment(
    conn: sqlite3.Connection,
    sender: str,
    decoded: DecodedInvoice,
    amount_msat: int,
    fee_limit_msat: int,
    now_ms: int,
) -> PayOutcome:
    """Check, route and lock a payment; resolve it at once unless a fault holds it."""
    payment_hash = decoded.payment_hash
    previous = get_payment(conn, sender, payment_hash)
    if previous.status in (PaymentStatus.IN_FLIGHT, PaymentStatus.SUCCEEDED):
        raise errors.AlreadyPaid(f"payment {payment_hash.hex()} is {previous.status}")
    if decoded.network is not Network.REGTEST:
        raise errors.InvalidNodeRequest(f"invoice is for {decoded.network}, not simnet/regtest")
    if fee_limit_msat < 0:
        raise errors.InvalidNodeRequest("fee_limit_msat must not be negative")
    if now_ms // 1000 > decoded.expires_at:
        raise errors.InvoiceExpired(f"invoice expired at {decoded.expires_at}")
    sender_pubkey = conn.execute("SELECT pubkey FROM nodes WHERE name = ?", (sender,)).fetchone()
    if sender_pubkey[0] == decoded.payee:
        raise errors.InvalidNodeRequest("no self-payments allowed")
    payee_row = conn.execute("SELECT name FROM nodes WHERE pubkey = ?", (decoded.payee,))
    payee = payee_row.fetchone()

    def refuse(reason: FailureReason, error: NodeError) -> PayOutcome:
        return _refuse(conn, sender, payment_hash, amount_msat, reason, error, now_ms)

    if payee is None:
        return refuse(FailureReason.NO_ROUTE, errors.NoRoute("unknown destination"))
    payee_name = str(payee[0])
    faults = active_faults(conn)
    applying = [f for f in faults if f.applies_to_payment(sender, payee_name, payment_hash)]
    kinds = {f.kind for f in applying}
    if FaultKind.NO_ROUTE in kinds:
        return refuse(FailureReason.NO_ROUTE, errors.NoRoute("no route (fault)"))
    if FaultKind.INSUFFICIENT_LIQUIDITY in kinds:
        return refuse(
            FailureReason.INSUFFICIENT_BALANCE,
            errors.InsufficientBalance("insufficient liquidity (fault)"),
        )
    route = find_route(_edges(conn, faults), sender, payee_name, amount_msat)
    if route is None:
        local = conn.execute(
            "SELECT COALESCE(SUM(CASE WHEN node_a = ? THEN balance_a_msat ELSE balance_b_msat"
            " END), 0) FROM channels WHERE node_a = ? OR node_b = ?",
            (sender, sender, sender),
        ).fetchone()[0]
        if local < amount_msat:
            return refuse(
                FailureReason.INSUFFICIENT_BALANCE,
                errors.InsufficientBalance("not enough outbound liquidity"),
            )
        return refuse(FailureReason.NO_ROUTE, errors.NoRoute("no route with enough liquidity"))
    if route.fee_msat > fee_limit_msat:
        # LND: routes above the fee limit are not tried; none left is FAILURE_REASON_NO_ROUTE.
        return refuse(
            FailureReason.NO_ROUTE,
            errors.NoRoute(f"route fee {route.fee_msat} msat above the limit"),
        )
    stuck = next((f for f in applying if f.kind is FaultKind.STUCK), None)
    accepts = _payee_accepts(conn, payee_name, decoded, amount_msat)
    held = accepts and invoices.is_hold(conn, payment_hash)
    _lock_htlcs(conn, route)
    if accepts:
        invoices.accept(conn, payment_hash, route.amount_msat)
    hold_ms = 0 if stuck is None or not accepts else stuck.hold_ms  # a refusal is quick
    resolve_at_ms = now_ms + hold_ms
    if held and (stuck is None or stuck.succeed):
        # Held by the payee until it settles or cancels; a STUCK fault that would fail the
        # payment still fails it (back to the payer, the invoice OPEN again) after hold_ms.
        resolve_at_ms = UNTIL_PAYEE_DECIDES_MS
    _record(
        conn,
        sender,
        payment_hash,
        route,
        amount_msat,
        status=PaymentStatus.IN_FLIGHT,
        resolve_at_ms=resolve_at_ms,
        planned_success=accepts and (stuck is None or stuck.succeed),
        planned_failure=(
            FailureReason.NO_ROUTE if accepts else FailureReason.INCORRECT_PAYMENT_DETAILS
        ),
        now_ms=now_ms,
        accepted=accepts,
    )
    if resolve_at_ms <= now_ms:
        resolve(conn, sender, payment_hash, now_ms)
    return PayOutcome(get_payment(conn, sender, payment_hash))


def _payee_accepts(
    conn: sqlite3.Connection, payee: str, decoded: DecodedInvoice, amount_msat: int
) -> bool:
    """Whether the payee's node would accept (hold) the HTLC for this invoice: only an OPEN
    one, so a second payment to an ACCEPTED, SETTLED or CANCELED invoice is refused."""
    row = conn.execute(
        "SELECT state, amount_msat, payment_secret FROM invoices"
        " WHERE node = ? AND payment_hash = ?",
        (payee, decoded.payment_hash),
    ).fetchone()
    if row is None:
        return False
    state, invoice_amount_msat, payment_secret = row
    if InvoiceState(state) is not InvoiceState.OPEN:
        return False
    # BOLT #4: the final node MUST fail the HTLC if payment_secret doesn't match the invoice's.
    if decoded.payment_secret != bytes(payment_secret):
        return False
    # BOLT #4: ... or if the amount paid is less than the amount expected (it MAY accept up to
    # twice that amount).
    return invoice_amount_msat is None or invoice_amount_msat <= amount_msat <= 2 * (
        invoice_amount_msat
    )


def _move(conn: sqlite3.Connection, hop: tuple[Any, ...], phase: str) -> None:
    """phase: lock (balance -> pending of the sender side), settle (pending -> the receiver's
    balance), unlock (pending -> back to the sender's balance)."""
    point, from_node, _to_node, amount_msat = hop
    row = conn.execute("SELECT node_a FROM channels WHERE channel_point = ?", (point,)).fetchone()
    side, other = ("a", "b") if row[0] == from_node else ("b", "a")
    sets = {
        "lock": f"balance_{side}_msat = balance_{side}_msat - ?1,"
        f" pending_{side}_msat = pending_{side}_msat + ?1",
        "settle": f"pending_{side}_msat = pending_{side}_msat - ?1,"
        f" balance_{other}_msat = balance_{other}_msat + ?1",
        "unlock": f"pending_{side}_msat = pending_{side}_msat - ?1,"
        f" balance_{side}_msat = balance_{side}_msat + ?1",
    }[phase]
    conn.execute(f"UPDATE channels SET {sets} WHERE channel_point = ?2", (amount_msat, point))


def _lock_htlcs(conn: sqlite3.Connection, route: Route) -> None:
    for hop in route.hops:
        _move(conn, _hop_tuple(hop), "lock")


def resolve(conn: sqlite3.Connection, sender: str, payment_hash: bytes, now_ms: int) -> None:
    """Apply an in-flight payment's planned outcome now."""
    row = conn.execute(
        "SELECT status, route, planned_success, planned_failure, amount_msat, accepted"
        " FROM payments WHERE sender = ? AND payment_hash = ?",
        (sender, payment_hash),
    ).fetchone()
    if row is None or row[0] != PaymentStatus.IN_FLIGHT.value:  # else HTLCs would move twice
        raise InvariantBroken(f"payment {payment_hash.hex()} of {sender} is not in flight")
    hops = [tuple(hop) for hop in json.loads(row[1])]
    accepted = bool(row[5])
    invoice = conn.execute(
        "SELECT state, preimage FROM invoices WHERE payment_hash = ?", (payment_hash,)
    ).fetchone()
    success = (
        bool(row[2])
        and accepted
        and invoice is not None
        and invoice[0] == InvoiceState.ACCEPTED.value
    )
    if success and invoice[1] is None:
        raise InvariantBroken(f"hold invoice {payment_hash.hex()} settling without a preimage")
    if success:
        for hop in hops:
            _move(conn, hop, "settle")
        invoices.settle(conn, payment_hash, int(hops[-1][3]), now_ms // 1000)
        conn.execute(
            "UPDATE payments SET status = ?, preimage = ? WHERE sender = ? AND payment_hash = ?",
            (PaymentStatus.SUCCEEDED.value, bytes(invoice[1]), sender, payment_hash),
        )
        return
    for hop in reversed(hops):
        _move(conn, hop, "unlock")
    if accepted and invoice is not None and invoice[0] == InvoiceState.ACCEPTED.value:
        invoices.set_state(conn, payment_hash, InvoiceState.OPEN)  # the HTLC was failed back
    # planned to fail: its planned reason; planned to succeed but the invoice was canceled
    # meanwhile: the payee failed the HTLC.
    reason = row[3] if not row[2] else FailureReason.INCORRECT_PAYMENT_DETAILS.value
    conn.execute(
        "UPDATE payments SET status = ?, failure_reason = ? WHERE sender = ? AND payment_hash = ?",
        (PaymentStatus.FAILED.value, reason, sender, payment_hash),
    )


def resolve_due(conn: sqlite3.Connection, now_ms: int) -> int:
    """Resolve every in-flight payment whose time has come; returns how many."""
    rows = conn.execute(
        "SELECT sender, payment_hash FROM payments WHERE status = ? AND resolve_at_ms <= ?"
        " ORDER BY resolve_at_ms LIMIT ?",
        (PaymentStatus.IN_FLIGHT.value, now_ms, MAX_RESOLVE_BATCH),
    ).fetchall()
    for sender, payment_hash in rows:
        resolve(conn, str(sender), bytes(payment_hash), now_ms)
    return len(rows)


def any_due(conn: sqlite3.Connection, now_ms: int) -> bool:
    row = conn.execute(
        "SELECT 1 FROM payments WHERE status = ? AND resolve_at_ms <= ? LIMIT 1",
        (PaymentStatus.IN_FLIGHT.value, now_ms),
    ).fetchone()
    return row is not None


def release(conn: sqlite3.Connection, payment_hash: bytes, *, succeed: bool, now_ms: int) -> int:
    """Resolve the in-flight payments of a hash now, with the given outcome (test control).
    A hold invoice's payment succeeds only by ``settle_held`` (the payee has the preimage)."""
    if succeed and invoices.is_hold(conn, payment_hash):
        raise errors.InvalidNodeRequest("a hold invoice is settled by its payee's preimage")
    rows = conn.execute(
        "SELECT sender FROM payments WHERE payment_hash = ? AND status = ?",
        (payment_hash, PaymentStatus.IN_FLIGHT.value),
    ).fetchall()
    for (sender,) in rows:
        conn.execute(
            "UPDATE payments SET planned_success = planned_success AND ?, resolve_at_ms = ?"
            " WHERE sender = ? AND payment_hash = ?",
            (int(succeed), now_ms, sender, payment_hash),
        )
        resolve(conn, str(sender), payment_hash, now_ms)
    return len(rows)


def fail_for_canceled_invoice(conn: sqlite3.Connection, payment_hash: bytes, now_ms: int) -> None:
    """The payee canceled an invoice while HTLCs were held: they are failed back now."""
    rows = conn.execute(
        "SELECT sender FROM payments WHERE payment_hash = ? AND status = ?",
        (payment_hash, PaymentStatus.IN_FLIGHT.value),
    ).fetchall()
    for (sender,) in rows:
        resolve(conn, str(sender), payment_hash, now_ms)


def settle_held(
    conn: sqlite3.Connection, payment_hash: bytes, preimage: bytes, now_ms: int
) -> None:
    """The payee settles its ACCEPTED hold invoice: the preimage is stored and the held
    payment resolves now, successfully (a STUCK fault planned to fail it has not yet)."""
    rows = conn.execute(
        "SELECT sender FROM payments WHERE payment_hash = ? AND status = ? AND accepted = 1",
        (payment_hash, PaymentStatus.IN_FLIGHT.value),
    ).fetchall()
    if len(rows) != 1:
        raise InvariantBroken(f"accepted invoice {payment_hash.hex()} holds {len(rows)} payments")
    conn.execute(
        "UPDATE invoices SET preimage = ? WHERE payment_hash = ?",
        (invoices.checked_preimage(preimage, payment_hash), payment_hash),
    )
    (sender,) = rows[0]
    conn.execute(
        "UPDATE payments SET planned_success = 1 WHERE sender = ? AND payment_hash = ?",
        (sender, payment_hash),
    )
    resolve(conn, str(sender), payment_hash, now_ms)
