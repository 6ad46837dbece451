"""Requesting withdrawals: validation at the edge, limits and review, the hold, and internal
settlement of invoices our own node issued."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any

from lngate.bootstrap import Core
from lngate.domain import withdrawals as rules
from lngate.domain.errors import (
    AccountFrozen,
    InsufficientFunds,
    InvalidRequest,
    LedgerRefused,
    NodeError,
    NotFound,
)
from lngate.domain.ledger import AccountKind, TransferFlag, TransferResult, TransferSpec
from lngate.domain.money import parse_amount_msat
from lngate.domain.withdrawals import WithdrawalStatus
from lngate.lightning import errors as node_errors
from lngate.lightning.bolt11 import decode_bolt11, invoice_network
from lngate.lightning.node import DecodedInvoice, InvoiceState, Node, NodeInfo
from lngate.services import halt, lnurl, lnurl_client
from lngate.services.idempotent import replayed, run_once
from lngate.services.withdrawal_settlement import (
    refuse_internal_op,
    reject_op,
    settle_internal_op,
    withdrawal_json,
)
from lngate.store import audit, deposits, events, users
from lngate.store import withdrawals as store
from lngate.store.db import IntegrityError, Tx
from lngate.store.deposits import DepositStatus
from lngate.store.ledger import apply_transfer
from lngate.store.users import UserStatus
from lngate.store.withdrawals import Withdrawal

log = logging.getLogger(__name__)

PAGE_MAX = 200
DAY_MS = 24 * 3600 * 1000
HOUR_MS = 3600 * 1000
BOLT11_MAX_CHARS = 7_089  # BOLT 11 invoices are bounded; longer strings are refused unread


class InternalInvoicePaid(InvalidRequest):
    code = "INVOICE_ALREADY_PAID"


@dataclass(frozen=True, slots=True)
class Destination:
    bolt11: str
    decoded: DecodedInvoice
    lightning_address: str | None


class WithdrawalService:
    def __init__(self, core: Core, node: Node) -> None:
        self._core = core
        self._node = node
        self._policy = core.config.withdrawals
        self._info: NodeInfo | None = None

    async def node_info(self) -> NodeInfo:
        if self._info is None:
            self._info = await self._node.get_info()
        return self._info

    async def request(
        self,
        user_id: str,
        *,
        bolt11: str | None,
        lightning_address: str | None,
        amount_msat: int | None,
        idempotency: tuple[str, str],
    ) -> dict[str, Any]:
        key, req_hash = idempotency
        previous = await self._core.read(lambda tx: replayed(tx, user_id, key, req_hash))
        if previous is not None:
            return previous
        await self._core.read(_refuse_if_halted)  # early, before asking any LNURL service
        destination = await self._destination(bolt11, lightning_address, amount_msat)
        if destination.lightning_address is not None:
            amount_msat = None  # the resolved invoice states it
        w = await self._validate(user_id, destination, amount_msat)
        body = await self._core.write(
            lambda tx: run_once(tx, user_id, key, req_hash, lambda t: self._hold(t, w))
        )
        self._core.withdrawal_work.fire()
        if w.internal and body["id"] == w.id:
            body = await self.settle_internally(w)
        return body

    async def _destination(
        self, bolt11: str | None, address: str | None, amount_msat: int | None
    ) -> Destination:
        if (bolt11 is None) == (address is None):
            raise InvalidRequest("give exactly one of bolt11 or lightning_address")
        if address is not None:
            if amount_msat is None:
                raise rules.AmountRequired("a Lightning Address withdrawal needs amount_msat")
            parse_amount_msat(amount_msat)
            bolt11 = await self._resolve_address(address, amount_msat)
        assert bolt11 is not None
        if not isinstance(bolt11, str) or len(bolt11) > BOLT11_MAX_CHARS:
            raise rules.InvoiceRefused("bolt11 must be a BOLT 11 invoice string")
        bolt11 = bolt11.strip()
        if bolt11.lower().startswith("lightning:"):
            bolt11 = bolt11[len("lightning:") :]
        try:
            decoded = decode_bolt11(bolt11)
        except node_errors.InvalidInvoice as exc:
            raise rules.InvoiceRefused(f"not a valid BOLT 11 invoice: {exc.message}") from exc
        return Destination(bolt11, decoded, address)

    async def _resolve_address(self, address: str, amount_msat: int) -> str:
        name, host = lnurl_client.parse_address(address)
        if host == self._core.config.public_host.lower():
            # One of our own users: mint their invoice directly, no HTTP round trip to ourselves.
            answer = await lnurl.callback(self._core, self._node, name, str(amount_msat), None)
            return str(answer["pr"])
        allow = self._core.config.lnurl_allow_private_hosts
        return await lnurl_client.resolve_invoice(address, amount_msat, allow_private=allow)

    async def _validate(
        self, user_id: str, dest: Destination, amount_msat: int | None
    ) -> Withdrawal:
        inv, policy = dest.decoded, self._policy
        info = await self.node_info()
        ours = invoice_network(info.network)
        if inv.network is not ours:
            raise rules.WrongNetwork(f"this is a {inv.network.value} invoice; we pay {ours.value}")
        rules.check_expiry(inv.expires_at, int(time.time()), policy)
        amount = rules.resolve_amount(inv.amount_msat, amount_msat)
        parse_amount_msat(amount)
        internal = inv.payee == info.pubkey
        if not internal:
            rules.check_amount(amount, policy)
        if inv.payee in policy.blocked_payees:
            raise rules.BlockedDestination("payments to this node are blocked")
        now = int(time.time() * 1000)
        return Withdrawal(
            seq=0,
            id=str(uuid.uuid4()),
            user_id=user_id,
            bolt11=dest.bolt11,
            payment_hash=inv.payment_hash.hex(),
            payee=inv.payee,
            destination=dest.lightning_address,
            amount_msat=amount,
            exchange_fee_msat=0 if internal else rules.exchange_fee_msat(amount, policy),
            fee_reserve_msat=0 if internal else rules.routing_reserve_msat(amount, policy),
            routing_fee_msat=None,
            preimage=None,
            status=WithdrawalStatus.REQUESTED,
            internal=internal,
            note="",
            attempts=0,
            created_at_ms=now,
            updated_at_ms=now,
            sent_at_ms=None,
            finished_at_ms=None,
        )

    def _hold(self, tx: Tx, w: Withdrawal) -> dict[str, Any]:
        """Checks that need the database, then the hold, atomically."""
        user = users.user_by_id(tx, w.user_id)
        assert user is not None
        if user.status is UserStatus.FROZEN:
            raise AccountFrozen("this account is frozen")
        store.take_lock(tx, "withdrawal_limits")  # limits are a check-then-write: serialise
        _refuse_if_halted(tx)
        if store.active_with_hash(tx, w.payment_hash) is not None:
            raise rules.DuplicatePaymentHash("this invoice is already paid or being paid")
        credit_account = self._system("node")
        if w.internal:
            credit_account = self._internal_recipient(tx, w).account_id
        else:
            now = w.created_at_ms
            rules.check_limits(
                w.amount_msat,
                store.sum_since(tx, now - DAY_MS, user_id=w.user_id),
                store.sum_since(tx, now - HOUR_MS),
                self._policy,
            )
        review = not w.internal and rules.needs_review(w.amount_msat, self._policy)
        if w.internal:
            status = WithdrawalStatus.REQUESTED
        else:
            status = WithdrawalStatus.REVIEW if review else WithdrawalStatus.APPROVED
        try:
            store.insert(tx, _with_status(w, status))
        except IntegrityError as exc:  # the unique index: another process, same hash
            raise rules.DuplicatePaymentHash("this invoice is already paid or being paid") from exc
        self._place_hold(
            tx, w.hold_id, user.account_id, credit_account, w.amount_msat + w.fee_reserve_msat
        )
        if w.exchange_fee_msat:
            self._place_hold(
                tx, w.fee_hold_id, user.account_id, self._system("fee_revenue"), w.exchange_fee_msat
            )
        stored = store.by_id(tx, w.id)
        assert stored is not None
        body = withdrawal_json(stored)
        if review:
            events.append(tx, w.user_id, "withdrawal.review", body)
        return body

    def _place_hold(self, tx: Tx, hold_id: str, debit: int, credit: int, amount_msat: int) -> None:
        spec = TransferSpec(
            hold_id, debit, credit, amount_msat, flag=TransferFlag.PENDING, kind="withdrawal"
        )
        result = apply_transfer(tx, spec)
        if result is TransferResult.EXCEEDS_CREDITS:
            raise InsufficientFunds(
                "the available balance does not cover the amount, fee and routing reserve"
            )
        if result is not TransferResult.OK:
            raise LedgerRefused(f"the ledger refused the hold: {result.value}")

    def _internal_recipient(self, tx: Tx, w: Withdrawal) -> users.User:
        """The deposit this invoice of our node belongs to: matched on the exact invoice
        string and payee, never on the payment hash alone (LNbits PR #1681)."""
        deposit = deposits.by_hash(tx, w.payment_hash)
        if (
            deposit is None
            or deposit.bolt11.lower() != w.bolt11.lower()
            or (deposit.payee != w.payee)
        ):
            raise rules.OwnNodeInvoice("this invoice of our node is not an open deposit")
        if deposit.status is not DepositStatus.OPEN:
            raise InternalInvoicePaid("this invoice is already paid or closed")
        if deposit.amount_msat is not None and deposit.amount_msat != w.amount_msat:
            raise rules.OwnNodeInvoice("the amount differs from the deposit's invoice")
        if deposit.user_id == w.user_id:
            raise InvalidRequest("this is your own deposit invoice")
        recipient = users.user_by_id(tx, deposit.user_id)
        assert recipient is not None
        return recipient

    def _system(self, kind: str) -> int:
        return self._core.system_accounts[AccountKind(kind).value]

    async def settle_internally(self, w: Withdrawal) -> dict[str, Any]:
        """Cancel the invoice on our node first, so it can never also be paid from outside
        (LNbits #2159, blink #1295), then post the hold. If the node already has it settled or
        accepted, refuse and release the hold."""
        payment_hash = bytes.fromhex(w.payment_hash)
        try:
            invoice = await self._node.lookup_invoice(payment_hash)
            if invoice.state is InvoiceState.OPEN:
                await self._node.cancel_invoice(payment_hash)
                invoice = await self._node.lookup_invoice(payment_hash)
        except NodeError as exc:
            if not isinstance(exc, node_errors.AlreadyPaid):
                raise  # unknown outcome: the withdrawal stays 'requested'; the worker retries
            invoice = await self._node.lookup_invoice(payment_hash)
        if invoice.state is InvoiceState.CANCELED:
            await self._core.write(settle_internal_op(w))
        else:
            await self._core.write(refuse_internal_op(w, "the invoice was paid from outside"))
        return await self._core.read(lambda tx: self.get(tx, w.user_id, w.id))

    # -- queries and operator decisions -------------------------------------------------------

    def get(self, tx: Tx, user_id: str, withdrawal_id: str) -> dict[str, Any]:
        w = store.by_id(tx, withdrawal_id)
        if w is None or w.user_id != user_id:
            raise NotFound("no such withdrawal")
        return withdrawal_json(w)

    def page(self, tx: Tx, user_id: str, *, cursor: int | None, limit: int) -> dict[str, Any]:
        if not 1 <= limit <= PAGE_MAX:
            raise InvalidRequest(f"limit must be between 1 and {PAGE_MAX}")
        rows = store.page_for_user(tx, user_id, before_seq=cursor, limit=limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        return {
            "withdrawals": [withdrawal_json(w) for w in rows],
            "next_cursor": rows[-1].seq if more and rows else None,
        }


def _refuse_if_halted(tx: Tx) -> None:
    state = halt.halted(tx)
    if state is not None:
        raise rules.WithdrawalsHalted(f"withdrawals are halted: {state.get('reason')}")


def _with_status(w: Withdrawal, status: WithdrawalStatus) -> Withdrawal:
    return replace(w, status=status)


def approve_op(withdrawal_id: str, actor: str, reason: str) -> Any:
    def op(tx: Tx) -> dict[str, Any] | None:
        if not store.move(
            tx,
            withdrawal_id,
            WithdrawalStatus.REVIEW,
            WithdrawalStatus.APPROVED,
            note=f"approved: {reason}",
        ):
            return None
        audit.append(
            tx,
            actor=actor,
            action="withdrawal.approve",
            subject=f"withdrawal:{withdrawal_id}",
            reason=reason,
        )
        w = store.by_id(tx, withdrawal_id)
        assert w is not None
        return withdrawal_json(w)

    return op


def reject_with_audit_op(withdrawal_id: str, actor: str, reason: str) -> Any:
    reject = reject_op(withdrawal_id, reason)

    def op(tx: Tx) -> dict[str, Any] | None:
        result = reject(tx)
        if result is not None:
            audit.append(
                tx,
                actor=actor,
                action="withdrawal.reject",
                subject=f"withdrawal:{withdrawal_id}",
                reason=reason,
            )
        return result

    return op


def review_queue(tx: Tx, limit: int = 200) -> list[dict[str, Any]]:
    return [withdrawal_json(w) for w in store.with_status(tx, WithdrawalStatus.REVIEW, limit)]
