"""Requesting withdrawals: validation at the edge, limits and review, the hold, and the
settlement in the request of invoices our own node issued (``InternalSettlement``)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from lngate.domain import withdrawals as rules
from lngate.domain.errors import (
    AccountFrozen,
    AmountRequired,
    BlockedDestination,
    DuplicatePaymentHash,
    InsufficientFunds,
    InternalInvoicePaid,
    InvalidInvoice,
    InvalidRequest,
    InvariantBroken,
    LedgerRefused,
    NodeError,
    NotFound,
    OwnNodeInvoice,
    WithdrawalsHalted,
    WrongNetwork,
)
from lngate.domain.ledger import AccountKind, TransferFlag, TransferResult, TransferSpec
from lngate.domain.money import parse_amount_msat
from lngate.domain.withdrawals import WithdrawalPolicy, WithdrawalStatus
from lngate.lightning import errors as node_errors
from lngate.lightning.bolt11 import decode_bolt11, invoice_network
from lngate.lightning.node import DecodedInvoice, InvoiceState, Node, NodeInfo
from lngate.services import halt, lnurl_client
from lngate.services.accounts import iso_ms
from lngate.services.deposits import close_op
from lngate.services.idempotent import replayed, run_once
from lngate.services.lnurl import LightningAddresses
from lngate.services.ports import Clock, LnurlResolver, UnitOfWork, Wakeup
from lngate.services.withdrawal_records import WithdrawalPage, WithdrawalPreview, WithdrawalView
from lngate.services.withdrawal_settlement import InternalSettlement, withdrawal_json
from lngate.store import deposits, events, orders, users
from lngate.store import withdrawals as store
from lngate.store.db import IntegrityError, Tx
from lngate.store.deposits import DepositStatus
from lngate.store.ledger import apply_transfer, get_account
from lngate.store.users import UserStatus
from lngate.store.withdrawals import Withdrawal

log = logging.getLogger(__name__)

PAGE_MAX = 200
DAY_MS = 24 * 3600 * 1000
HOUR_MS = 3600 * 1000
BOLT11_MAX_CHARS = 7_089  # BOLT 11 invoices are bounded; longer strings are refused unread


@dataclass(frozen=True, slots=True)
class Destination:
    bolt11: str
    decoded: DecodedInvoice
    lightning_address: str | None
    minted_here: bool = False  # an invoice we just minted for one of our users' addresses


class OrderPayer(Protocol):
    """Pay's side of a withdrawal to one of our orders' invoices (``services.orders.Orders``):
    it is paid from the balance like ``POST /v1/orders/{id}/pay``, not held and sent."""

    def is_order_invoice(self, tx: Tx, payment_hash_hex: str) -> bool: ...

    def pay_by_withdrawal(self, tx: Tx, w: Withdrawal) -> dict[str, Any]: ...

    async def finish_invoice(self, payment_hash_hex: str) -> None: ...


# Runs inside the hold's transaction, after the hold: a refund reserves its order's amount here.
HoldHook = Callable[[Tx, Withdrawal], None]


class WithdrawalRequests:
    """A user's withdrawals: asked for (checked, limited, held, and reviewed when large), read
    back one by one or a page at a time. One to another user's invoice of our own node is
    settled in the request, off Lightning (``internal``); the rest wait for the payment worker,
    which this wakes (``wakeup``)."""

    def __init__(
        self,
        uow: UnitOfWork,
        node: Node,
        policy: WithdrawalPolicy,
        system_accounts: Mapping[str, int],
        clock: Clock,
        wakeup: Wakeup,
        lnurl: LnurlResolver,
        *,
        addresses: LightningAddresses,
        public_host: str,
        internal: InternalSettlement | None = None,
        orders: OrderPayer | None = None,
    ) -> None:
        self._uow = uow
        self._orders = orders
        self._node = node
        self._policy = policy
        self._system_accounts = system_accounts
        self._clock = clock
        self._wakeup = wakeup
        self._lnurl = lnurl
        self._addresses = addresses  # our own users' Lightning Addresses, minted directly
        self._public_host = public_host.lower()
        self._internal = internal or InternalSettlement(uow, node, system_accounts)
        self._info: NodeInfo | None = None

    async def _node_info(self) -> NodeInfo:
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
        in_hold: HoldHook | None = None,
    ) -> WithdrawalView:
        """Check, hold and record a withdrawal (``review`` or ``approved``), at most once per
        Idempotency-Key: a repeat answers the first withdrawal as it is now. ``in_hold`` runs
        in the hold's transaction (a refund's reservation): its refusal refuses the whole."""
        key, req_hash = idempotency
        previous = await self._uow.read(lambda tx: replayed(tx, user_id, key, req_hash))
        if previous is not None:
            return await self.get(user_id, str(previous["id"]))
        await self._uow.read(_refuse_if_halted)  # early, before asking any LNURL service
        destination = await self._destination(bolt11, lightning_address, amount_msat)
        if destination.lightning_address is not None:
            amount_msat = None  # the resolved invoice states it
        try:
            w = await self._validate(user_id, destination, amount_msat)
            if w.internal and in_hold is None and await self._is_order(w):
                return await self._pay_order(w, key, req_hash)
            if w.internal:
                await self._require_open_on_node(w)  # node down: 503, and nothing was created
            body = await self._uow.write(
                lambda tx: run_once(tx, user_id, key, req_hash, lambda t: self._hold(t, w, in_hold))
            )
        except BaseException:
            if destination.minted_here:
                await self._withdraw_minted(destination)
            raise
        created = WithdrawalView.from_json(body)
        if created.id != w.id:  # a concurrent request with this key answered first
            if destination.minted_here:
                await self._withdraw_minted(destination)
            return created
        self._wakeup.fire()
        if w.internal and created.status is WithdrawalStatus.APPROVED:
            created = await self._settle_now(w.id, user_id)
        return created

    async def preview(
        self,
        user_id: str,
        *,
        bolt11: str | None,
        lightning_address: str | None,
        amount_msat: int | None,
    ) -> WithdrawalPreview:
        """What ``request`` would hold for this destination, checked by the same rules (amount,
        network, expiry, blocked payees, limits, halt), with nothing held or recorded. An
        address is only parsed: its invoice is fetched when the withdrawal is requested."""
        await self._uow.read(_refuse_if_halted)
        if lightning_address is not None and bolt11 is None:
            if amount_msat is None:
                raise AmountRequired("a Lightning Address withdrawal needs an amount")
            parse_amount_msat(amount_msat)
            lnurl_client.parse_address(lightning_address)
            rules.check_amount(amount_msat, self._policy)
            own = lnurl_client.parse_address(lightning_address)[1] == self._public_host
            return await self._preview_of(
                user_id, lightning_address, lightning_address, amount_msat, None, own
            )
        destination = await self._destination(bolt11, lightning_address, amount_msat)
        w = await self._validate(user_id, destination, amount_msat)
        return await self._preview_of(
            user_id, destination.bolt11, None, w.amount_msat, destination.decoded, w.internal
        )

    async def _preview_of(
        self,
        user_id: str,
        destination: str,
        address: str | None,
        amount_msat: int,
        decoded: DecodedInvoice | None,
        internal: bool,
    ) -> WithdrawalPreview:
        policy = self._policy
        exchange_fee = 0 if internal else rules.exchange_fee_msat(amount_msat, policy)
        reserve = 0 if internal else rules.routing_reserve_msat(amount_msat, policy)
        now = self._clock.now_ms()

        def read(tx: Tx) -> tuple[int, int]:
            user = users.user_by_id(tx, user_id)
            if user is None:
                raise NotFound("no such user")
            if user.status is UserStatus.FROZEN:
                raise AccountFrozen("this account is frozen")
            spent = store.sum_since(tx, now - DAY_MS, user_id=user_id)
            spent += orders.balance_paid_since(tx, user_id, now - DAY_MS)
            account = get_account(tx, user.account_id)
            if account is None:
                raise InvariantBroken(f"user {user_id} has no account")
            return account.balance.available_msat, spent

        available, spent_24h = await self._uow.read(read)
        return WithdrawalPreview(
            destination=destination,
            lightning_address=address,
            amount_msat=amount_msat,
            payee=None if decoded is None else decoded.payee,
            description=None if decoded is None else decoded.description,
            expires_at=None if decoded is None else iso_ms(decoded.expires_at * 1000),
            internal=internal,
            exchange_fee_msat=exchange_fee,
            fee_reserve_msat=reserve,
            total_hold_msat=amount_msat + exchange_fee + reserve,
            available_msat=available,
            daily_left_msat=max(policy.user_daily_max_msat - spent_24h, 0),
            needs_review=rules.needs_review(amount_msat, policy),
        )

    async def _is_order(self, w: Withdrawal) -> bool:
        orders = self._orders
        if orders is None:
            return False
        return await self._uow.read(lambda tx: orders.is_order_invoice(tx, w.payment_hash))

    async def _pay_order(self, w: Withdrawal, key: str, req_hash: str) -> WithdrawalView:
        """A withdrawal to one of our orders' invoices: the order is paid from the balance in
        one transaction and the withdrawal recorded as its succeeded receipt."""
        orders = self._orders
        if orders is None:
            raise InvariantBroken("no orders to pay")
        body = await self._uow.write(
            lambda tx: run_once(tx, w.user_id, key, req_hash, lambda t: self._order_op(t, w))
        )
        paid = WithdrawalView.from_json(body)
        if paid.id == w.id:  # not a replay: the order's invoice is to be cancelled now
            await orders.finish_invoice(w.payment_hash)
        return await self.get(w.user_id, paid.id)

    def _order_op(self, tx: Tx, w: Withdrawal) -> dict[str, Any]:
        if self._orders is None:
            raise InvariantBroken("no orders to pay")
        if store.active_with_hash(tx, w.payment_hash) is not None:
            raise DuplicatePaymentHash("this invoice is already paid or being paid")
        return self._orders.pay_by_withdrawal(tx, w)

    async def get(self, user_id: str, withdrawal_id: str) -> WithdrawalView:
        """One of the user's withdrawals (NotFound for anyone else's)."""
        return await self._uow.read(lambda tx: _get(tx, user_id, withdrawal_id))

    async def page(self, user_id: str, *, cursor: int | None, limit: int) -> WithdrawalPage:
        """The user's withdrawals, newest first, ``limit`` at most, before ``cursor``."""
        if not 1 <= limit <= PAGE_MAX:
            raise InvalidRequest(f"limit must be between 1 and {PAGE_MAX}")

        def read(tx: Tx) -> WithdrawalPage:
            rows = store.page_for_user(tx, user_id, before_seq=cursor, limit=limit + 1)
            more = len(rows) > limit
            rows = rows[:limit]
            return WithdrawalPage(
                withdrawals=tuple(WithdrawalView.of(w) for w in rows),
                next_cursor=rows[-1].seq if more and rows else None,
            )

        return await self._uow.read(read)

    async def _require_open_on_node(self, w: Withdrawal) -> None:
        invoice = await self._node.lookup_invoice(bytes.fromhex(w.payment_hash))
        if invoice.state is not InvoiceState.OPEN:
            raise InternalInvoicePaid("this invoice is already paid or closed")

    async def _withdraw_minted(self, destination: Destination) -> None:
        """A refused withdrawal to one of our users' Lightning Addresses leaves no open invoice
        behind on the recipient: cancel the one minted for it, and close its deposit."""
        payment_hash = destination.decoded.payment_hash
        try:
            await self._node.cancel_invoice(payment_hash)
        except NodeError as exc:
            log.warning("could not cancel minted invoice %s: %s", payment_hash.hex(), exc)
            return  # still open on the node: the deposit stays open too, and may be paid
        await self._uow.write(close_op(payment_hash.hex(), DepositStatus.CANCELLED))

    async def _settle_now(self, withdrawal_id: str, user_id: str) -> WithdrawalView:
        """Settle a new internal withdrawal in the request, instantly. Funds are held by now, so
        nothing here may answer an error: whatever stops it (the node, a halt, a freeze), the
        withdrawal is durable and the payment worker finishes it."""
        try:
            claimed = await self._uow.write(claim_op(withdrawal_id, self._policy))
            if claimed is not None:
                await self._internal.settle(claimed)
        except NodeError as exc:
            log.warning("withdrawal %s: node error %s; the worker finishes it", withdrawal_id, exc)
        except Exception:  # a bug or a database outage: loud, but the held funds are safe
            log.exception("withdrawal %s: settling in the request failed", withdrawal_id)
        return await self.get(user_id, withdrawal_id)

    async def _destination(
        self, bolt11: str | None, address: str | None, amount_msat: int | None
    ) -> Destination:
        if (bolt11 is None) == (address is None):
            raise InvalidRequest("give exactly one of bolt11 or lightning_address")
        minted_here = False
        if address is not None:
            if amount_msat is None:
                raise AmountRequired("a Lightning Address withdrawal needs amount_msat")
            parse_amount_msat(amount_msat)
            bolt11, minted_here = await self._resolve_address(address, amount_msat)
        if not isinstance(bolt11, str) or len(bolt11) > BOLT11_MAX_CHARS:
            raise InvalidInvoice("bolt11 must be a BOLT 11 invoice string")
        bolt11 = bolt11.strip()
        if bolt11.lower().startswith("lightning:"):
            bolt11 = bolt11[len("lightning:") :]
        try:
            decoded = decode_bolt11(bolt11)
        except node_errors.InvalidInvoice as exc:
            raise InvalidInvoice(f"not a valid BOLT 11 invoice: {exc.message}") from exc
        return Destination(bolt11, decoded, address, minted_here)

    async def _resolve_address(self, address: str, amount_msat: int) -> tuple[str, bool]:
        """The invoice to pay, and whether we minted it ourselves."""
        name, host = lnurl_client.parse_address(address)
        if host == self._public_host:
            # One of our own users: mint their invoice directly, no HTTP round trip to ourselves.
            answer = await self._addresses.callback(name, str(amount_msat), None)
            return answer.pr, True
        return await self._lnurl.resolve_invoice(address, amount_msat), False

    async def _validate(
        self, user_id: str, dest: Destination, amount_msat: int | None
    ) -> Withdrawal:
        inv, policy = dest.decoded, self._policy
        info = await self._node_info()
        ours = invoice_network(info.network)
        if inv.network is not ours:
            raise WrongNetwork(f"this is a {inv.network.value} invoice; we pay {ours.value}")
        now = self._clock.now_ms()
        rules.check_expiry(inv.expires_at, now // 1000, policy)
        amount = rules.resolve_amount(inv.amount_msat, amount_msat)
        parse_amount_msat(amount)
        internal = inv.payee == info.pubkey
        rules.check_amount(amount, policy)  # internal ones too: the same rules for every payer
        if inv.payee in policy.blocked_payees:
            raise BlockedDestination("payments to this node are blocked")
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

    def _hold(self, tx: Tx, w: Withdrawal, in_hold: HoldHook | None = None) -> dict[str, Any]:
        """Checks that need the database, then the record and the hold, atomically. Internal
        withdrawals follow the same rules (limits, review) and reserve the deposit they pay."""
        user = users.user_by_id(tx, w.user_id)
        if user is None:
            raise NotFound("no such user")
        if user.status is UserStatus.FROZEN:
            raise AccountFrozen("this account is frozen")
        store.take_lock(tx, "withdrawal_limits")  # limits are a check-then-write: serialise
        _refuse_if_halted(tx)
        if store.active_with_hash(tx, w.payment_hash) is not None:
            raise DuplicatePaymentHash("this invoice is already paid or being paid")
        credit_account = self._system("node")
        if w.internal:
            credit_account = self._internal_recipient(tx, w).account_id
        now = w.created_at_ms
        rules.check_limits(
            w.amount_msat,
            # Orders paid from the balance count too: the limit is on what leaves the account.
            store.sum_since(tx, now - DAY_MS, user_id=w.user_id)
            + orders.balance_paid_since(tx, w.user_id, now - DAY_MS),
            0 if w.internal else store.sum_since(tx, now - HOUR_MS),  # it never leaves the node
            self._policy,
        )
        review = rules.needs_review(w.amount_msat, self._policy)
        status = WithdrawalStatus.REVIEW if review else WithdrawalStatus.APPROVED
        try:
            store.insert(tx, _with_status(w, status))
        except IntegrityError as exc:  # the unique index: another process, same hash
            raise DuplicatePaymentHash("this invoice is already paid or being paid") from exc
        if w.internal and not deposits.reserve(tx, w.payment_hash, w.id):
            raise InternalInvoicePaid("this invoice is already paid or being paid")
        self._place_hold(
            tx, w.hold_id, user.account_id, credit_account, w.amount_msat + w.fee_reserve_msat
        )
        if w.exchange_fee_msat:
            self._place_hold(
                tx, w.fee_hold_id, user.account_id, self._system("fee_revenue"), w.exchange_fee_msat
            )
        if in_hold is not None:
            in_hold(tx, w)
        stored = store.by_id(tx, w.id)
        if stored is None:
            raise LedgerRefused(f"withdrawal {w.id} vanished inside its own transaction")
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
            raise OwnNodeInvoice("this invoice of our node is not an open deposit")
        if deposit.status is not DepositStatus.OPEN or deposit.reserved_by is not None:
            raise InternalInvoicePaid("this invoice is already paid or closed")
        if deposit.amount_msat is not None and deposit.amount_msat != w.amount_msat:
            raise OwnNodeInvoice("the amount differs from the deposit's invoice")
        if deposit.user_id == w.user_id:
            raise InvalidRequest("this is your own deposit invoice")
        recipient = users.user_by_id(tx, deposit.user_id)
        if recipient is None:
            raise OwnNodeInvoice("this invoice of our node belongs to no user")
        if recipient.status is UserStatus.FROZEN:
            # Like a transfer: a frozen account receives nothing until an operator unfreezes it.
            raise AccountFrozen("the recipient cannot receive payments now")
        return recipient

    def _system(self, kind: str) -> int:
        return self._system_accounts[AccountKind(kind).value]


def _get(tx: Tx, user_id: str, withdrawal_id: str) -> WithdrawalView:
    w = store.by_id(tx, withdrawal_id)
    if w is None or w.user_id != user_id:
        raise NotFound("no such withdrawal")
    return WithdrawalView.of(w)


def _refuse_if_halted(tx: Tx) -> None:
    state = halt.halted(tx)
    if state is not None:
        raise WithdrawalsHalted(f"withdrawals are halted: {state.reason}")


def _with_status(w: Withdrawal, status: WithdrawalStatus) -> Withdrawal:
    return replace(w, status=status)


IN_FLIGHT_CAP_NOTE = "waiting: too many of your payments are in flight"


def over_in_flight_cap(
    policy: WithdrawalPolicy, w: Withdrawal, count: int, total_msat: int
) -> bool:
    """Hold-invoice griefing: a user's payments held in flight would lock up the node's
    liquidity, so each user has only so many (and so much) in flight at once."""
    return count >= policy.user_sending_max_count or (
        total_msat + w.amount_msat > policy.user_sending_max_msat
    )


def claim_op(withdrawal_id: str, policy: WithdrawalPolicy) -> Callable[[Tx], Withdrawal | None]:
    """approved -> sending, committed before the node is called; the claimed record, or None.
    Nothing is claimed while withdrawals are halted or its user is frozen, past the user's
    in-flight cap, or ahead of an earlier approved withdrawal of the same user."""

    def op(tx: Tx) -> Withdrawal | None:
        w = store.by_id(tx, withdrawal_id)
        if w is None or w.status is not WithdrawalStatus.APPROVED or halt.halted(tx) is not None:
            return None
        user = users.user_by_id(tx, w.user_id)
        if user is None or user.status is UserStatus.FROZEN:
            return None
        store.take_lock(tx, "withdrawal_limits")
        if store.earlier_approved(tx, w.user_id, w.seq):
            return None
        count, total_msat = store.sending_totals(tx, w.user_id)
        if not w.internal and over_in_flight_cap(policy, w, count, total_msat):
            return None  # checked again here: another worker may have claimed meanwhile
        if not store.move(tx, w.id, WithdrawalStatus.APPROVED, WithdrawalStatus.SENDING, note=""):
            return None
        if not w.internal and count + 1 >= policy.user_sending_max_count:
            # The user's queue is not offered again until one lands: tell them why it waits.
            store.note_approved(tx, w.user_id, IN_FLIGHT_CAP_NOTE)
        return store.by_id(tx, w.id)

    return op
