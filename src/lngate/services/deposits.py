"""Lightning deposits: an invoice of our node per deposit, credited exactly once when paid.

Crediting is keyed by payment hash: the ledger transfer id is ``deposit:<hash>`` and the deposit
moves to ``settled`` in the same transaction, so a settlement seen twice (a replayed stream, the
stream and the expiry poll) credits once.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from lngate.bootstrap import Core
from lngate.config import Limits
from lngate.domain.errors import (
    AccountFrozen,
    AmountOutOfRange,
    InvalidRequest,
    InvariantBroken,
    NotFound,
)
from lngate.domain.inputs import check_invoice_description, check_text
from lngate.domain.ledger import AccountKind, TransferResult, TransferSpec
from lngate.domain.money import parse_amount_msat
from lngate.lightning.node import Invoice, InvoiceState, Node
from lngate.services.accounts import iso_ms
from lngate.services.idempotent import replayed, run_once
from lngate.store import deposits, events, users
from lngate.store.db import Tx
from lngate.store.deposits import Deposit, DepositStatus
from lngate.store.ledger import apply_transfer
from lngate.store.users import UserStatus

log = logging.getLogger(__name__)

SETTLE_CURSOR = "invoice_settle_index"
PAGE_MAX = 200


def check_amount(amount_msat: int | None, limits: Limits) -> int | None:
    if amount_msat is None:
        if not limits.allow_amountless_deposits:
            raise InvalidRequest("amount_msat is required: amountless invoices are disabled")
        return None
    parse_amount_msat(amount_msat)
    if not limits.deposit_min_msat <= amount_msat <= limits.deposit_max_msat:
        raise AmountOutOfRange(
            f"a deposit must be between {limits.deposit_min_msat} and "
            f"{limits.deposit_max_msat} msat"
        )
    return amount_msat


def deposit_json(d: Deposit) -> dict[str, Any]:
    return {
        "id": d.id,
        "bolt11": d.bolt11,
        "payment_hash": d.payment_hash,
        "amount_msat": d.amount_msat,
        "amount_paid_msat": d.amount_paid_msat,
        "memo": d.memo,
        "source": d.source,
        "status": d.status.value,
        "created_at": iso_ms(d.created_at_ms),
        "expires_at": iso_ms(d.expires_at_ms),
        "settled_at": iso_ms(d.settled_at_ms) if d.settled_at_ms else None,
    }


async def create_deposit(
    core: Core,
    node: Node,
    user_id: str,
    amount_msat: int | None,
    *,
    memo: str = "",
    description_hash: bytes | None = None,
    source: str = "api",
    idempotency: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """Ask the node for an invoice and record it as the user's deposit.

    ``idempotency`` is (key, request hash): a repeat returns the first deposit.
    """
    amount_msat = check_amount(amount_msat, core.config.limits)
    if description_hash is None:
        check_invoice_description(memo)  # the node would refuse it, after our checks
    else:
        check_text(memo, name="comment")
    if idempotency is not None:
        key, req_hash = idempotency
        previous = await core.read(lambda tx: replayed(tx, user_id, key, req_hash))
        if previous is not None:
            return previous
    user = await core.read(lambda tx: users.user_by_id(tx, user_id))
    if user is None:
        raise NotFound("no such user")
    if user.status is UserStatus.FROZEN:
        raise AccountFrozen("this account is frozen")
    invoice = await node.create_invoice(
        amount_msat,
        memo=None if description_hash else memo,
        description_hash=description_hash,
        expiry_s=core.config.limits.invoice_expiry_s,
    )
    decoded = await node.decode(invoice.bolt11)
    record = Deposit(
        id=str(uuid.uuid4()),
        user_id=user_id,
        payment_hash=invoice.payment_hash.hex(),
        bolt11=invoice.bolt11,
        payee=decoded.payee,
        amount_msat=amount_msat,
        amount_paid_msat=None,
        memo=memo,
        source=source,
        status=DepositStatus.OPEN,
        created_at_ms=int(time.time() * 1000),
        expires_at_ms=invoice.expires_at * 1000,
        settled_at_ms=None,
    )

    def insert(tx: Tx) -> dict[str, Any]:
        deposits.insert(tx, record)
        return deposit_json(record)

    def op(tx: Tx) -> dict[str, Any]:
        if idempotency is None:
            return insert(tx)
        return run_once(tx, user_id, idempotency[0], idempotency[1], insert)

    try:
        result = await core.write(op)
    except BaseException:
        await _cancel_quietly(node, invoice.payment_hash)  # no deposit row: nobody may pay it
        raise
    if result["payment_hash"] != record.payment_hash:  # a concurrent duplicate answered first
        await _cancel_quietly(node, invoice.payment_hash)
    return result


async def _cancel_quietly(node: Node, payment_hash: bytes) -> None:
    try:
        await node.cancel_invoice(payment_hash)
    except Exception:
        log.warning("could not cancel invoice %s", payment_hash.hex())


def credit_settled_op(invoice: Invoice, node_account_id: int, *, from_stream: bool) -> Any:
    """The write that credits a settled invoice's deposit (once). Only the invoice stream, which
    delivers settlements in settle-index order, advances the resume cursor: a settlement found
    any other way (the expiry poll) may lie ahead of ones the stream has not delivered yet."""
    payment_hash = invoice.payment_hash.hex()
    if invoice.state is not InvoiceState.SETTLED:  # only money received is credited
        raise InvariantBroken(f"invoice {payment_hash} is {invoice.state}, not settled")
    paid_msat = invoice.amount_paid_msat

    def op(tx: Tx) -> bool:
        if from_stream and invoice.settle_index:
            deposits.advance_cursor(tx, SETTLE_CURSOR, invoice.settle_index)
        deposit = deposits.by_hash(tx, payment_hash)
        if deposit is None:
            log.error("settled invoice %s matches no deposit; recorded", payment_hash)
            deposits.record_unmatched(tx, payment_hash, paid_msat, invoice.settle_index)
            return False
        if not deposits.mark_settled(tx, payment_hash, paid_msat):
            return False  # already credited: a replay
        user = users.user_by_id(tx, deposit.user_id)
        assert user is not None
        spec = TransferSpec(
            f"deposit:{payment_hash}",
            node_account_id,
            user.account_id,
            paid_msat,
            kind="deposit",
            memo=deposit.memo,
        )
        result = apply_transfer(tx, spec)
        if result is not TransferResult.OK:  # undoes mark_settled: never settled uncredited
            raise InvariantBroken(f"crediting deposit {payment_hash} was refused: {result}")
        settled = deposits.by_hash(tx, payment_hash)
        if settled is None:
            raise InvariantBroken(f"deposit {payment_hash} vanished as it was settled")
        events.append(tx, user.id, "deposit.settled", deposit_json(settled))
        return True

    return op


def close_op(payment_hash_hex: str, status: DepositStatus) -> Any:
    def op(tx: Tx) -> bool:
        if not deposits.mark_closed(tx, payment_hash_hex, status):
            return False
        closed = deposits.by_hash(tx, payment_hash_hex)
        if closed is None:
            raise InvariantBroken(f"deposit {payment_hash_hex} vanished as it was closed")
        kind = "deposit.expired" if status is DepositStatus.EXPIRED else "deposit.cancelled"
        events.append(tx, closed.user_id, kind, deposit_json(closed))
        return True

    return op


def node_account(core: Core) -> int:
    return core.system_accounts[AccountKind.NODE.value]


# -- the invoice watcher's use cases: each opens its own transaction -----------------------------


async def settle_cursor(core: Core) -> int:
    """The settle index of the last settlement the invoice stream delivered and we committed
    (0 before the first): the stream resumes after it."""
    return await core.read(lambda tx: deposits.cursor(tx, SETTLE_CURSOR))


async def credit_settled(core: Core, invoice: Invoice, *, from_stream: bool) -> bool:
    """Credit a settled invoice's deposit, once (see ``credit_settled_op``); returns whether
    this call credited it."""
    op = credit_settled_op(invoice, node_account(core), from_stream=from_stream)
    return await core.write(op)


async def close_cancelled(core: Core, invoice: Invoice) -> bool:
    """Close the deposit of an invoice the node cancelled: ``expired`` if the invoice is past
    its expiry, else ``cancelled``; returns whether this call closed it."""
    expired = time.time() >= invoice.expires_at
    status = DepositStatus.EXPIRED if expired else DepositStatus.CANCELLED
    return await core.write(close_op(invoice.payment_hash.hex(), status))


async def expire_due(core: Core, node: Node, cutoff_ms: int, limit: int) -> int:
    """Ask the node about (at most ``limit``) open deposits that expired before ``cutoff_ms``:
    a settled one is credited (a settlement the stream missed), an open or cancelled one is
    closed as expired. Returns how many changed."""
    due = await core.read(lambda tx: deposits.open_past_expiry(tx, cutoff_ms, limit))
    changed = 0
    for deposit in due:
        invoice = await node.lookup_invoice(bytes.fromhex(deposit.payment_hash))
        if invoice.state is InvoiceState.SETTLED:
            changed += await credit_settled(core, invoice, from_stream=False)
        elif invoice.state in (InvoiceState.OPEN, InvoiceState.CANCELED):
            # Past expiry the node refuses payment; an HTLC held (ACCEPTED) still may settle.
            changed += await core.write(close_op(deposit.payment_hash, DepositStatus.EXPIRED))
    return changed


def get_deposit(tx: Tx, user_id: str, deposit_id: str) -> dict[str, Any]:
    d = deposits.by_id(tx, deposit_id)
    if d is None or d.user_id != user_id:  # another user's deposit does not exist for you
        raise NotFound("no such deposit")
    return deposit_json(d)


def list_deposits(tx: Tx, user_id: str, *, cursor: int | None, limit: int) -> dict[str, Any]:
    if not 1 <= limit <= PAGE_MAX:
        raise InvalidRequest(f"limit must be between 1 and {PAGE_MAX}")
    page = deposits.page_for_user(tx, user_id, before_seq=cursor, limit=limit + 1)
    more = len(page) > limit
    page = page[:limit]
    return {
        "deposits": [deposit_json(d) for _, d in page],
        "next_cursor": page[-1][0] if more and page else None,
    }
