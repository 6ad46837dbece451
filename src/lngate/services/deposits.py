"""Lightning deposits: an invoice of our node per deposit, credited exactly once when paid.

Crediting is keyed by payment hash: the ledger transfer id is ``deposit:<hash>`` and the deposit
moves to ``settled`` in the same transaction, so a settlement seen twice (a replayed stream, the
stream and the expiry poll) credits once.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

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
from lngate.services.accounts import iso_ms, require_user
from lngate.services.idempotent import replayed, run_once
from lngate.services.ports import Clock, UnitOfWork
from lngate.store import deposits, events, orders, users
from lngate.store.db import Tx
from lngate.store.deposits import Deposit, DepositStatus
from lngate.store.ledger import apply_transfer
from lngate.store.users import User, UserStatus

log = logging.getLogger(__name__)

SETTLE_CURSOR = "invoice_settle_index"
PAGE_MAX = 200


@dataclass(frozen=True, slots=True)
class DepositRecord:
    """A deposit as the API, the CLI and the account events show it (``schemas.Deposit``)."""

    id: str
    bolt11: str
    payment_hash: str
    amount_msat: int | None
    amount_paid_msat: int | None
    memo: str
    source: str
    status: str
    created_at: str
    expires_at: str
    settled_at: str | None

    @classmethod
    def of(cls, d: Deposit) -> DepositRecord:
        return cls(
            id=d.id,
            bolt11=d.bolt11,
            payment_hash=d.payment_hash,
            amount_msat=d.amount_msat,
            amount_paid_msat=d.amount_paid_msat,
            memo=d.memo,
            source=d.source,
            status=d.status.value,
            created_at=iso_ms(d.created_at_ms),
            expires_at=iso_ms(d.expires_at_ms),
            settled_at=iso_ms(d.settled_at_ms) if d.settled_at_ms else None,
        )

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True)
class DepositPage:
    """One page of a user's deposits, newest first (``schemas.DepositPage``)."""

    deposits: tuple[DepositRecord, ...]
    next_cursor: int | None


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
    """The JSON of a deposit, for account events and stored idempotent responses."""
    return DepositRecord.of(d).as_json()


class Deposits:
    """Deposits of the users: invoices of ``node`` within ``limits``, each recorded once and
    credited once (against the node's account in ``system_accounts``) when it is paid."""

    def __init__(
        self,
        uow: UnitOfWork,
        node: Node,
        limits: Limits,
        system_accounts: Mapping[str, int],
        clock: Clock,
    ) -> None:
        self._uow = uow
        self._node = node
        self._limits = limits
        self._system_accounts = system_accounts
        self._clock = clock

    @property
    def node_account_id(self) -> int:
        return self._system_accounts[AccountKind.NODE.value]

    async def create(
        self,
        user_id: str,
        amount_msat: int | None,
        *,
        memo: str = "",
        description_hash: bytes | None = None,
        source: str = "api",
        idempotency: tuple[str, str] | None = None,
    ) -> DepositRecord:
        """Ask the node for an invoice and record it as the user's deposit.

        ``idempotency`` is (key, request hash): a repeat returns the first deposit.
        """
        amount_msat = self._check(amount_msat, memo, description_hash)

        def find(tx: Tx) -> DepositRecord | User:
            if idempotency is not None:
                previous = replayed(tx, user_id, idempotency[0], idempotency[1])
                if previous is not None:
                    return DepositRecord(**previous)
            user = users.user_by_id(tx, user_id)
            if user is None:
                raise NotFound("no such user")
            return user

        found = await self._uow.read(find)
        if isinstance(found, DepositRecord):
            return found
        return await self._create(found, amount_msat, memo, description_hash, source, idempotency)

    async def create_for_username(
        self,
        username: str,
        amount_msat: int | None,
        *,
        memo: str = "",
        description_hash: bytes | None = None,
        source: str = "api",
    ) -> DepositRecord:
        """As ``create``, for the account holder named ``username`` (UnknownUser if none)."""
        user = await self._uow.read(lambda tx: require_user(tx, username))
        amount_msat = self._check(amount_msat, memo, description_hash)
        return await self._create(user, amount_msat, memo, description_hash, source, None)

    def _check(
        self, amount_msat: int | None, memo: str, description_hash: bytes | None
    ) -> int | None:
        amount_msat = check_amount(amount_msat, self._limits)
        if description_hash is None:
            check_invoice_description(memo)  # the node would refuse it, after our checks
        else:
            check_text(memo, name="comment")
        return amount_msat

    async def _create(
        self,
        user: User,
        amount_msat: int | None,
        memo: str,
        description_hash: bytes | None,
        source: str,
        idempotency: tuple[str, str] | None,
    ) -> DepositRecord:
        if user.status is UserStatus.FROZEN:
            raise AccountFrozen("this account is frozen")
        # A watch-only node whose remote signer is away refuses here (NodeUnreachable, a 503).
        invoice = await self._node.create_invoice(
            amount_msat,
            memo=None if description_hash else memo,
            description_hash=description_hash,
            expiry_s=self._limits.invoice_expiry_s,
        )
        decoded = await self._node.decode(invoice.bolt11)
        record = Deposit(
            id=str(uuid.uuid4()),
            user_id=user.id,
            payment_hash=invoice.payment_hash.hex(),
            bolt11=invoice.bolt11,
            payee=decoded.payee,
            amount_msat=amount_msat,
            amount_paid_msat=None,
            memo=memo,
            source=source,
            status=DepositStatus.OPEN,
            created_at_ms=self._clock.now_ms(),
            expires_at_ms=invoice.expires_at * 1000,
            settled_at_ms=None,
        )

        def insert(tx: Tx) -> dict[str, Any]:
            deposits.insert(tx, record)
            return deposit_json(record)

        def op(tx: Tx) -> dict[str, Any]:
            if idempotency is None:
                return insert(tx)
            return run_once(tx, user.id, idempotency[0], idempotency[1], insert)

        try:
            result = DepositRecord(**await self._uow.write(op))
        except BaseException:
            await self._cancel_quietly(invoice.payment_hash)  # no deposit row: nobody may pay it
            raise
        if result.payment_hash != record.payment_hash:  # a concurrent duplicate answered first
            await self._cancel_quietly(invoice.payment_hash)
        return result

    async def _cancel_quietly(self, payment_hash: bytes) -> None:
        try:
            await self._node.cancel_invoice(payment_hash)
        except Exception:
            log.warning("could not cancel invoice %s", payment_hash.hex())

    async def get(self, user_id: str, deposit_id: str) -> DepositRecord:
        def find(tx: Tx) -> DepositRecord:
            d = deposits.by_id(tx, deposit_id)
            if d is None or d.user_id != user_id:  # another user's deposit does not exist for you
                raise NotFound("no such deposit")
            return DepositRecord.of(d)

        return await self._uow.read(find)

    async def page(self, user_id: str, *, cursor: int | None, limit: int) -> DepositPage:
        """The user's deposits, newest first; ``next_cursor`` pages further back."""
        if not 1 <= limit <= PAGE_MAX:
            raise InvalidRequest(f"limit must be between 1 and {PAGE_MAX}")
        rows = await self._uow.read(
            lambda tx: deposits.page_for_user(tx, user_id, before_seq=cursor, limit=limit + 1)
        )
        more = len(rows) > limit
        rows = rows[:limit]
        return DepositPage(
            deposits=tuple(DepositRecord.of(d) for _, d in rows),
            next_cursor=rows[-1][0] if more and rows else None,
        )

    # -- the invoice watcher's use cases ---------------------------------------------------------

    async def settle_cursor(self) -> int:
        """The settle index of the last settlement the invoice stream delivered and we
        committed (0 before the first): the stream resumes after it."""
        return await self._uow.read(lambda tx: deposits.cursor(tx, SETTLE_CURSOR))

    async def credit_settled(self, invoice: Invoice, *, from_stream: bool) -> bool:
        """Credit a settled invoice's deposit, once (see ``credit_settled_op``); returns whether
        this call credited it."""
        op = credit_settled_op(invoice, self.node_account_id, from_stream=from_stream)
        return await self._uow.write(op)

    async def close_cancelled(self, invoice: Invoice) -> bool:
        """Close the deposit of an invoice the node cancelled: ``expired`` if the invoice is
        past its expiry, else ``cancelled``; returns whether this call closed it."""
        expired = self._clock.now_ms() >= invoice.expires_at * 1000
        status = DepositStatus.EXPIRED if expired else DepositStatus.CANCELLED
        return await self._uow.write(close_op(invoice.payment_hash.hex(), status))

    async def expire_due(self, cutoff_ms: int, limit: int) -> int:
        """Ask the node about (at most ``limit``) open deposits that expired before
        ``cutoff_ms``: a settled one is credited (a settlement the stream missed), an open or
        cancelled one is closed as expired. Returns how many changed."""
        due = await self._uow.read(lambda tx: deposits.open_past_expiry(tx, cutoff_ms, limit))
        changed = 0
        for deposit in due:
            invoice = await self._node.lookup_invoice(bytes.fromhex(deposit.payment_hash))
            if invoice.state is InvoiceState.SETTLED:
                changed += await self.credit_settled(invoice, from_stream=False)
            elif invoice.state in (InvoiceState.OPEN, InvoiceState.CANCELED):
                # Past expiry the node refuses payment; an HTLC held (ACCEPTED) still may settle.
                op = close_op(deposit.payment_hash, DepositStatus.EXPIRED)
                changed += await self._uow.write(op)
        return changed


# -- writes shared with the withdrawals' internal settlement -------------------------------------


def credit_settled_op(
    invoice: Invoice, node_account_id: int, *, from_stream: bool
) -> Callable[[Tx], bool]:
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
        if deposit is None and orders.is_order_hash(tx, payment_hash):
            return False  # an order's hold invoice: the order watcher credited it
        if deposit is None:
            log.error("settled invoice %s matches no deposit; recorded", payment_hash)
            deposits.record_unmatched(tx, payment_hash, paid_msat, invoice.settle_index)
            return False
        if not deposits.mark_settled(tx, payment_hash, paid_msat):
            return False  # already credited: a replay
        user = users.user_by_id(tx, deposit.user_id)
        if user is None:
            raise InvariantBroken(f"deposit {payment_hash} belongs to no user")
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


def close_op(payment_hash_hex: str, status: DepositStatus) -> Callable[[Tx], bool]:
    """The write that closes an open deposit as ``status`` (once), with its account event."""

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
