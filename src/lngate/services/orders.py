"""Pay's orders: a merchant's request for an amount, paid over Lightning (a hold invoice of
our node) or from an lngate balance, and never credited unless it is still open.

The ordering that makes it safe: the order's own state always commits first, and only then is
the node told. A payment arriving over Lightning is *held* (the invoice's HTLC is accepted, not
settled); the merchant's credit and ``open -> paid`` commit in one transaction with the webhook
outbox rows and ``htlc_state = to_settle``, and only then is the HTLC settled with the order's
preimage. An order that is closed or paid from a balance commits ``htlc_state = to_cancel``
first, then cancels the invoice, which fails any held HTLC back to its payer: a late or second
payment returns to the payer instead of being kept uncredited. The watcher finishes every
``to_settle`` and ``to_cancel`` after a crash (``finish_htlc_work``).

Paying from a balance commits before cancelling the node invoice (DESIGN.md had it the other
way round): a refusal (funds, limits, a freeze) must change nothing, and a cancelled invoice
could never be paid again; the hold makes the order of the two safe, since an HTLC arriving in
between is held, seen to belong to a paid order, and failed back.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from lngate.config import ORDER_EXPIRY_MIN_S, Limits, PayPolicy
from lngate.domain import withdrawals as withdrawal_rules
from lngate.domain.errors import (
    AccountFrozen,
    AmountOutOfRange,
    InsufficientFunds,
    InvalidRequest,
    InvariantBroken,
    LedgerRefused,
    MerchantOrderIdReused,
    NodeError,
    NotAMerchant,
    NotFound,
    OrderNotOpen,
    WithdrawalsHalted,
)
from lngate.domain.ledger import AccountKind, TransferResult, TransferSpec
from lngate.domain.orders import (
    ORDER_ID,
    HtlcState,
    OrderStatus,
    OrderTerms,
    PaidVia,
    check_merchant_order_id,
    check_terms,
    merchant_fee_msat,
    new_order_id,
)
from lngate.domain.users import Role
from lngate.domain.withdrawals import WithdrawalPolicy, WithdrawalStatus
from lngate.lightning import errors as node_errors
from lngate.lightning.node import Invoice, InvoiceState, Node
from lngate.security.secrets import ServerKey
from lngate.services import halt
from lngate.services.accounts import iso_ms, require_user
from lngate.services.idempotent import run_once
from lngate.services.order_records import CheckoutView, OrderPage, OrderView
from lngate.services.ports import Clock, UnitOfWork
from lngate.services.webhook_outbox import announce
from lngate.services.withdrawal_settlement import withdrawal_json
from lngate.store import events, users
from lngate.store import orders as store
from lngate.store import withdrawals as withdrawal_store
from lngate.store.db import Dialect, IntegrityError, Params, Row, Tx
from lngate.store.ledger import apply_transfer
from lngate.store.orders import Order as Order  # the record the watcher follows
from lngate.store.users import User, UserStatus
from lngate.store.withdrawals import Withdrawal
from lngate.store.writer import AS_CLOSURE, Outcome

log = logging.getLogger(__name__)

PAGE_MAX = 200
DAY_MS = 24 * 3600 * 1000
PREIMAGE_LABEL = b"order-preimage:"


@dataclass(frozen=True, slots=True)
class Created:
    """An order, and whether this request created it (201) or found it (200)."""

    order: OrderView
    created: bool


def order_view(o: Order, public_url: str) -> OrderView:
    return OrderView(
        id=o.id,
        merchant_order_id=o.merchant_order_id,
        status=o.status.value,
        amount_msat=o.amount_msat,
        fee_msat=o.fee_msat,
        description=o.description,
        bolt11=o.bolt11,
        payment_hash=o.payment_hash,
        checkout_url=f"{public_url}/pay/{o.id}",
        created_at=iso_ms(o.created_at_ms),
        expires_at=iso_ms(o.expires_at_ms),
        paid_at=iso_ms(o.paid_at_ms) if o.paid_at_ms else None,
        paid_via=None if o.paid_via is None else o.paid_via.value,
        refunded_msat=o.refunded_msat,
        redirect_url=o.redirect_url,
        metadata=o.metadata,
    )


def checkout_view(o: Order, merchant: str) -> CheckoutView:
    return CheckoutView(
        id=o.id,
        status=o.status.value,
        amount_msat=o.amount_msat,
        description=o.description,
        bolt11=o.bolt11,
        merchant=merchant,
        created_at=iso_ms(o.created_at_ms),
        expires_at=iso_ms(o.expires_at_ms),
        expires_at_s=o.expires_at_ms // 1000,
        paid_at=iso_ms(o.paid_at_ms) if o.paid_at_ms else None,
        redirect_url=o.redirect_url,
    )


def _require(result: TransferResult, what: str) -> None:
    if result is TransferResult.EXCEEDS_CREDITS:
        raise InsufficientFunds("the available balance does not cover this payment")
    if result not in (TransferResult.OK, TransferResult.EXISTS):
        raise LedgerRefused(f"the ledger refused {what}: {result.value}")


@dataclass(frozen=True, slots=True)
class NewOrder:
    """The write that stores a new order: ``insert`` (which also answers an order a
    concurrent request with the same merchant_order_id committed first); on PostgreSQL many at
    once by ``NEW_ORDERS``, one statement and one round trip for a whole batch."""

    order: Order
    insert: Callable[[Tx], OrderView | Order]

    def __call__(self, tx: Tx) -> OrderView | Order:
        return self.insert(tx)

    def batch_statement(self, dialect: Dialect) -> NewOrders | None:
        return NEW_ORDERS if dialect is Dialect.POSTGRES else None


class NewOrders:
    """The ``BatchStatement`` of new orders. An order the statement left out (its merchant
    not a merchant or frozen, its merchant_order_id taken) is applied as its closure, which
    answers or refuses it as a request alone would be."""

    def statement(self, ops: Sequence[NewOrder]) -> tuple[str, Params]:
        return store.insert_many_statement([op.order for op in ops])

    def outcomes(self, ops: Sequence[NewOrder], rows: list[Row]) -> list[Outcome]:
        inserted = {str(row[0]) for row in rows}
        return [Outcome(value=op.order) if op.order.id in inserted else AS_CLOSURE for op in ops]


NEW_ORDERS = NewOrders()


class MerchantOrders:
    """Reading a merchant's orders: needs no node (``lngate merchant orders``)."""

    def __init__(self, uow: UnitOfWork, public_url: str) -> None:
        self._uow = uow
        self._public_url = public_url.rstrip("/")

    def page_sync(
        self, username: str, *, status: str | None = None, limit: int = PAGE_MAX
    ) -> OrderPage:
        """The newest ``limit`` orders of the merchant named ``username``."""

        def read(tx: Tx) -> OrderPage:
            merchant = require_user(tx, username)
            if merchant.role is not Role.MERCHANT:
                raise NotAMerchant(f"{username} is not a merchant")
            return self.page_op(merchant.id, status, None, None, limit)(tx)

        return self._uow.read_sync(read)

    def page_op(
        self,
        merchant_id: str,
        status: str | None,
        merchant_order_id: str | None,
        cursor: int | None,
        limit: int,
    ) -> Callable[[Tx], OrderPage]:
        if not 1 <= limit <= PAGE_MAX:
            raise InvalidRequest(f"limit must be between 1 and {PAGE_MAX}")
        try:
            wanted = None if status is None else OrderStatus(status)
        except ValueError:
            names = ", ".join(s.value for s in OrderStatus)
            raise InvalidRequest(f"status must be one of {names}") from None
        if merchant_order_id is not None:
            check_merchant_order_id(merchant_order_id)

        def read(tx: Tx) -> OrderPage:
            rows = store.page_for_merchant(
                tx,
                merchant_id,
                status=wanted,
                merchant_order_id=merchant_order_id,
                before_seq=cursor,
                limit=limit + 1,
            )
            more = len(rows) > limit
            rows = rows[:limit]
            return OrderPage(
                orders=tuple(order_view(o, self._public_url) for o in rows),
                next_cursor=str(rows[-1].seq) if more and rows else None,
            )

        return read


class Orders:
    """A merchant's orders (create, read, cancel), the public checkout view, paying one from a
    balance, and what the order watcher does with each invoice update of the node."""

    def __init__(
        self,
        uow: UnitOfWork,
        node: Node,
        *,
        pay: PayPolicy,
        limits: Limits,
        withdrawals: WithdrawalPolicy,
        system_accounts: Mapping[str, int],
        clock: Clock,
        server_key: ServerKey,
        public_url: str,
    ) -> None:
        self._uow = uow
        self._node = node
        self._pay = pay
        self._limits = limits
        self._withdrawals = withdrawals
        self._accounts = system_accounts
        self._clock = clock
        self._key = server_key
        self._public_url = public_url.rstrip("/")

    # --- the merchant's calls ----------------------------------------------------------------

    async def create(
        self,
        merchant_id: str,
        *,
        merchant_order_id: Any,
        amount_msat: Any,
        description: Any = None,
        expires_in_s: Any = None,
        redirect_url: Any = None,
        metadata: Any = None,
    ) -> Created:
        """An open order with its hold invoice. ``merchant_order_id`` is the idempotency key:
        the same body again answers the first order, another body is refused."""
        terms = check_terms(
            merchant_order_id=merchant_order_id,
            amount_msat=amount_msat,
            description=description,
            expires_in_s=expires_in_s,
            redirect_url=redirect_url,
            metadata=metadata,
            expiry_default_s=self._pay.order_expiry_default_s,
            expiry_min_s=ORDER_EXPIRY_MIN_S,
            expiry_max_s=self._pay.order_expiry_max_s,
        )
        request_hash = hashlib.sha256(terms.canonical_json().encode()).hexdigest()
        existing = await self._uow.read_one_statement(
            lambda tx: self._existing(tx, merchant_id, terms, request_hash)
        )
        if existing is not None:
            return Created(existing, created=False)
        if not self._limits.deposit_min_msat <= terms.amount_msat <= self._limits.deposit_max_msat:
            raise AmountOutOfRange(
                f"an order must be between {self._limits.deposit_min_msat} and "
                f"{self._limits.deposit_max_msat} msat"
            )
        order_id = new_order_id()
        preimage = self._preimage(order_id)
        payment_hash = hashlib.sha256(preimage).digest()
        invoice = await self._node.create_hold_invoice(
            payment_hash,
            terms.amount_msat,
            memo=terms.description,
            expiry_s=terms.expires_in_s,
        )
        now = self._clock.now_ms()
        order = Order(
            seq=0,
            id=order_id,
            merchant_user_id=merchant_id,
            merchant_order_id=terms.merchant_order_id,
            request_hash=request_hash,
            amount_msat=terms.amount_msat,
            fee_msat=merchant_fee_msat(terms.amount_msat, self._pay.merchant_fee_ppm),
            description=terms.description,
            bolt11=invoice.bolt11,
            payment_hash=payment_hash.hex(),
            status=OrderStatus.OPEN,
            htlc_state=HtlcState.NONE,
            paid_via=None,
            amount_paid_msat=None,
            payer_user_id=None,
            paid_by_withdrawal_id=None,
            created_at_ms=now,
            expires_at_ms=invoice.expires_at * 1000,
            paid_at_ms=None,
            closed_at_ms=None,
            refunded_msat=0,
            refunds_reserved_msat=0,
            redirect_url=terms.redirect_url,
            metadata=terms.metadata,
        )

        def insert(tx: Tx) -> OrderView | Order:
            found = self._existing(tx, merchant_id, terms, request_hash)
            if found is not None:
                return found  # a concurrent request with this id committed first
            try:
                store.insert(tx, order)
            except IntegrityError:
                found = self._existing(tx, merchant_id, terms, request_hash)
                if found is None:
                    raise
                return found
            return order

        try:
            result = await self._uow.write(NewOrder(order, insert))
        except BaseException:
            await self._cancel_quietly(payment_hash)  # no order row: nobody may pay it
            raise
        if isinstance(result, OrderView):
            await self._cancel_quietly(payment_hash)
            return Created(result, created=False)
        return Created(order_view(result, self._public_url), created=True)

    def _existing(
        self, tx: Tx, merchant_id: str, terms: OrderTerms, request_hash: str
    ) -> OrderView | None:
        """The order of this merchant_order_id if the same body made it (in one statement)."""
        merchant, found = store.merchant_and_order(tx, merchant_id, terms.merchant_order_id)
        if merchant is None or merchant[0] is not Role.MERCHANT:
            raise NotAMerchant("this call needs a merchant's API key")
        if found is None:
            if merchant[1] is UserStatus.FROZEN:
                raise AccountFrozen("this account is frozen")
            return None
        if found.request_hash != request_hash:
            raise MerchantOrderIdReused(
                "this merchant_order_id was used for an order with another body"
            )
        return order_view(found, self._public_url)

    async def get(self, merchant_id: str, order_id: str) -> OrderView:
        return await self._uow.read(
            lambda tx: order_view(self._owned(tx, merchant_id, order_id), self._public_url)
        )

    async def page(
        self,
        merchant_id: str,
        *,
        status: str | None = None,
        merchant_order_id: str | None = None,
        cursor: int | None = None,
        limit: int = 50,
    ) -> OrderPage:
        """The merchant's orders, newest first, filtered by status and merchant_order_id."""
        query = MerchantOrders(self._uow, self._public_url)
        read = query.page_op(merchant_id, status, merchant_order_id, cursor, limit)
        return await self._uow.read(read)

    async def cancel(self, merchant_id: str, order_id: str) -> OrderView:
        """open -> cancelled (409 ORDER_NOT_OPEN otherwise); then the invoice is cancelled, so
        a payment held meanwhile goes back to its payer."""
        now = self._clock.now_ms()

        def op(tx: Tx) -> Order:
            order = self._owned(tx, merchant_id, order_id)
            if not store.mark_closed(tx, order.id, OrderStatus.CANCELLED, closed_at_ms=now):
                raise OrderNotOpen(f"this order is {order.status.value}, not open")
            return self._announce(tx, order.id, "order.cancelled", now)

        closed = await self._uow.write(op)
        await self._cancel_htlc(closed)
        return order_view(closed, self._public_url)

    # --- the public checkout page ------------------------------------------------------------

    async def checkout(self, order_id: str) -> CheckoutView:
        """What the checkout page shows of an order (NotFound for an unknown id)."""

        def read(tx: Tx) -> CheckoutView:
            order = store.by_id(tx, order_id) if ORDER_ID.fullmatch(order_id) else None
            if order is None:
                raise NotFound("no such order")
            merchant = users.user_by_id(tx, order.merchant_user_id)
            return checkout_view(order, merchant.username if merchant else "")

        return await self._uow.read(read)

    # --- paying from a balance ---------------------------------------------------------------

    async def pay_from_balance(
        self, payer_id: str, order_id: str, *, idempotency: tuple[str, str]
    ) -> CheckoutView:
        """Pay an open order from the payer's balance: instant, free, atomic with ``open ->
        paid``; the node invoice is cancelled after, so nobody can also pay it from outside.
        Limits, freezes and a halt apply as for withdrawals. Once per Idempotency-Key."""
        if ORDER_ID.fullmatch(order_id) is None:
            raise NotFound("no such order")
        key, req_hash = idempotency
        now = self._clock.now_ms()

        def pay(tx: Tx) -> dict[str, Any]:
            order = self._payable(tx, payer_id, order_id, now)
            self._book_balance_payment(tx, order, payer_id, now, withdrawal_id=None)
            paid = self._announce(tx, order.id, "order.paid", now)
            merchant = users.user_by_id(tx, paid.merchant_user_id)
            return checkout_view(paid, merchant.username if merchant else "").as_json()

        body = await self._uow.write(lambda tx: run_once(tx, payer_id, key, req_hash, pay))
        view = CheckoutView(**body)
        await self.finish_order_htlc(view.id)
        return await self.checkout(view.id)

    def pay_by_withdrawal(self, tx: Tx, w: Withdrawal) -> dict[str, Any]:
        """A withdrawal to an order's invoice, in the withdrawal request's transaction: the
        order is paid from the payer's balance as by ``pay_from_balance``, and the withdrawal
        is recorded as a succeeded internal one (its receipt). The caller then calls
        ``finish_invoice``."""
        now = w.created_at_ms
        order = store.by_hash(tx, w.payment_hash)
        if order is None:
            raise InvariantBroken(f"no order has the hash {w.payment_hash}")
        if order.bolt11.lower() != w.bolt11.lower():  # the exact invoice, not just its hash
            raise InvalidRequest("this invoice of our node is not the order's invoice")
        order = self._payable(tx, w.user_id, order.id, now, counted_elsewhere_msat=0)
        if w.amount_msat != order.amount_msat:
            raise InvalidRequest("the amount differs from the order's")
        note = f"paid order {order.id}"
        withdrawal_store.insert(tx, replace(w, status=WithdrawalStatus.SENDING, note=note))
        if not withdrawal_store.finish(
            tx, w.id, WithdrawalStatus.SUCCEEDED, routing_fee_msat=0, preimage_hex=None, note=note
        ):
            raise InvariantBroken(f"withdrawal {w.id} could not finish inside its transaction")
        self._book_balance_payment(tx, order, w.user_id, now, withdrawal_id=w.id)
        self._announce(tx, order.id, "order.paid", now)
        done = withdrawal_store.by_id(tx, w.id)
        if done is None:
            raise InvariantBroken(f"withdrawal {w.id} vanished inside its own transaction")
        body = withdrawal_json(done)
        events.append(tx, w.user_id, "withdrawal.succeeded", body)
        return body

    def is_order_invoice(self, tx: Tx, payment_hash_hex: str) -> bool:
        return store.is_order_hash(tx, payment_hash_hex)

    def _payable(
        self,
        tx: Tx,
        payer_id: str,
        order_id: str,
        now: int,
        *,
        counted_elsewhere_msat: int | None = None,
    ) -> Order:
        """The order, if this payer may pay it from their balance now (else the refusal)."""
        order = store.by_id(tx, order_id)
        if order is None:
            raise NotFound("no such order")
        if order.status is not OrderStatus.OPEN or now >= order.expires_at_ms:
            status = order.status.value if order.status is not OrderStatus.OPEN else "expired"
            raise OrderNotOpen(f"this order is {status}, not open")
        payer = users.user_by_id(tx, payer_id)
        if payer is None:
            raise NotFound("no such user")
        if payer.status is UserStatus.FROZEN:
            raise AccountFrozen("this account is frozen")
        if payer.id == order.merchant_user_id:
            raise InvalidRequest("a merchant cannot pay its own order")
        merchant = self._merchant(tx, order)
        if merchant.status is UserStatus.FROZEN:
            raise AccountFrozen("the merchant cannot receive payments now")
        state = halt.halted(tx)
        if state is not None:
            raise WithdrawalsHalted(f"withdrawals are halted: {state.reason}")
        withdrawal_rules.check_amount(order.amount_msat, self._withdrawals)
        withdrawal_store.take_lock(tx, "withdrawal_limits")  # check-then-write: serialise
        day = now - DAY_MS
        used = withdrawal_store.sum_since(tx, day, user_id=payer_id)
        used += store.balance_paid_since(tx, payer_id, day)
        withdrawal_rules.check_limits(order.amount_msat, used, 0, self._withdrawals)
        return order

    def _book_balance_payment(
        self, tx: Tx, order: Order, payer_id: str, now: int, *, withdrawal_id: str | None
    ) -> None:
        payer = users.user_by_id(tx, payer_id)
        merchant = self._merchant(tx, order)
        if payer is None:
            raise NotFound("no such user")
        if not store.mark_paid(
            tx,
            order.id,
            via=PaidVia.BALANCE,
            amount_paid_msat=order.amount_msat,
            htlc_state=HtlcState.TO_CANCEL,
            paid_at_ms=now,
            payer_user_id=payer_id,
            withdrawal_id=withdrawal_id,
        ):
            raise OrderNotOpen("this order is no longer open")
        credit = order.amount_msat - order.fee_msat
        if credit:
            spec = TransferSpec(
                f"order:{order.id}:pay",
                payer.account_id,
                merchant.account_id,
                credit,
                kind="order",
                memo=order.description[:200],
            )
            _require(apply_transfer(tx, spec), "the payment")
        if order.fee_msat:
            spec = TransferSpec(
                f"order:{order.id}:fee",
                payer.account_id,
                self._accounts[AccountKind.FEE_REVENUE.value],
                order.fee_msat,
                kind="order_fee",
            )
            _require(apply_transfer(tx, spec), "the merchant fee")

    # --- what the order watcher does ---------------------------------------------------------

    async def open_after(self, after_seq: int, limit: int) -> list[Order]:
        return await self._uow.read(lambda tx: store.open_after(tx, after_seq, limit))

    async def on_invoice(self, invoice: Invoice) -> None:
        """One state of an order's invoice, from the node: credit a held payment to an open
        order, fail back one to an order that is not, and finish what the node must do."""
        payment_hash = invoice.payment_hash.hex()
        order = await self._uow.read(lambda tx: store.by_hash(tx, payment_hash))
        if order is None:
            return
        if invoice.state is InvoiceState.ACCEPTED or invoice.state is InvoiceState.SETTLED:
            if order.status is OrderStatus.OPEN:
                order = await self._uow.write(self._credit_op(order.id, invoice))
            await self._finish_htlc(order)
        elif invoice.state is InvoiceState.CANCELED:
            await self._after_cancelled(order)

    def _credit_op(self, order_id: str, invoice: Invoice) -> Callable[[Tx], Order]:
        """open -> paid for a payment the node holds: the merchant (less the fee) and the fee
        revenue are credited, the webhook outbox written, and the HTLC marked to be settled, in
        one transaction. An order that cannot take it (a frozen merchant) is cancelled."""
        now = self._clock.now_ms()

        def op(tx: Tx) -> Order:
            order = store.by_id(tx, order_id)
            if order is None:
                raise InvariantBroken(f"order {order_id} vanished")
            if order.status is not OrderStatus.OPEN:
                return order  # paid or closed meanwhile: the held HTLC is failed back
            paid_msat = invoice.amount_paid_msat
            merchant = self._merchant(tx, order)
            if paid_msat < order.amount_msat or merchant.status is UserStatus.FROZEN:
                log.warning("order %s: refusing a held payment of %d msat", order.id, paid_msat)
                store.mark_closed(tx, order.id, OrderStatus.CANCELLED, closed_at_ms=now)
                return self._announce(tx, order.id, "order.cancelled", now)
            if not store.mark_paid(
                tx,
                order.id,
                via=PaidVia.LIGHTNING,
                amount_paid_msat=paid_msat,
                htlc_state=HtlcState.TO_SETTLE,
                paid_at_ms=now,
            ):
                raise InvariantBroken(f"order {order.id} changed inside its own transaction")
            node_account = self._accounts[AccountKind.NODE.value]
            # An overpayment (LND accepts up to twice the amount) is the merchant's too.
            credit = paid_msat - order.fee_msat
            if credit:
                spec = TransferSpec(
                    f"order:{order.id}:credit",
                    node_account,
                    merchant.account_id,
                    credit,
                    kind="order",
                    memo=order.description[:200],
                )
                _require(apply_transfer(tx, spec), "the merchant's credit")
            if order.fee_msat:
                spec = TransferSpec(
                    f"order:{order.id}:fee",
                    node_account,
                    self._accounts[AccountKind.FEE_REVENUE.value],
                    order.fee_msat,
                    kind="order_fee",
                )
                _require(apply_transfer(tx, spec), "the merchant fee")
            return self._announce(tx, order.id, "order.paid", now)

        return op

    async def expire_due(self, limit: int) -> int:
        """Close open orders past expiry, asking the node first: an HTLC it holds arrived in
        time, so that order is credited instead. Returns how many changed."""
        now = self._clock.now_ms()
        due = await self._uow.read(lambda tx: store.open_past_expiry(tx, now, limit))
        changed = 0
        for order in due:
            try:
                invoice = await self._node.lookup_invoice(bytes.fromhex(order.payment_hash))
            except node_errors.InvoiceNotFound:
                invoice = None
            if invoice is not None and invoice.state in (
                InvoiceState.ACCEPTED,
                InvoiceState.SETTLED,
            ):
                await self.on_invoice(invoice)
                changed += 1
                continue
            closed = await self._uow.write(self._expire_op(order.id, now))
            if closed is not None:
                changed += 1
                await self._finish_htlc(closed)
        return changed

    def _expire_op(self, order_id: str, now: int) -> Callable[[Tx], Order | None]:
        def op(tx: Tx) -> Order | None:
            if not store.mark_closed(tx, order_id, OrderStatus.EXPIRED, closed_at_ms=now):
                return None
            return self._announce(tx, order_id, "order.expired", now)

        return op

    async def finish_htlc_work(self, limit: int) -> int:
        """Settle or cancel every invoice the node still owes an answer (after a crash, or a
        node that was away). Returns how many were finished now."""
        pending = await self._uow.read(lambda tx: store.with_htlc_work(tx, limit))
        done = 0
        for order in pending:
            if await self._finish_htlc(order):
                done += 1
        return done

    async def finish_order_htlc(self, order_id: str) -> None:
        order = await self._uow.read(lambda tx: store.by_id(tx, order_id))
        if order is not None:
            await self._finish_htlc(order)

    async def finish_invoice(self, payment_hash_hex: str) -> None:
        order = await self._uow.read(lambda tx: store.by_hash(tx, payment_hash_hex))
        if order is not None:
            await self._finish_htlc(order)

    async def _finish_htlc(self, order: Order) -> bool:
        try:
            if order.htlc_state is HtlcState.TO_SETTLE:
                return await self._settle_htlc(order)
            if order.htlc_state is HtlcState.TO_CANCEL:
                return await self._cancel_htlc(order)
        except NodeError as exc:  # unreachable, slow: the watcher asks again
            log.warning("order %s: the node did not answer (%s); retried later", order.id, exc)
        return False

    async def _settle_htlc(self, order: Order) -> bool:
        try:
            await self._node.settle_invoice(self._preimage(order.id))
        except node_errors.InvalidNodeRequest:
            invoice = await self._node.lookup_invoice(bytes.fromhex(order.payment_hash))
            if invoice.state is InvoiceState.CANCELED:
                # Credited, but the node failed the HTLC back (its CLTV ran out): the books
                # now owe what the node never received; reconciliation shows it.
                log.error("order %s: credited but its HTLC was cancelled by the node", order.id)
                await self._uow.write(
                    lambda tx: self._move_htlc(tx, order.id, HtlcState.TO_SETTLE, HtlcState.LOST)
                )
                return True
            raise
        await self._uow.write(
            lambda tx: self._move_htlc(tx, order.id, HtlcState.TO_SETTLE, HtlcState.SETTLED)
        )
        return True

    async def _cancel_htlc(self, order: Order) -> bool:
        payment_hash = bytes.fromhex(order.payment_hash)
        try:
            await self._node.cancel_invoice(payment_hash)
        except node_errors.InvoiceNotFound:
            pass  # nothing on the node can be paid
        except (node_errors.InvalidNodeRequest, node_errors.AlreadyPaid):
            invoice = await self._node.lookup_invoice(payment_hash)
            if invoice.state is not InvoiceState.CANCELED:
                log.error("order %s: its invoice is %s, not cancellable", order.id, invoice.state)
                return False
        await self._uow.write(
            lambda tx: self._move_htlc(tx, order.id, HtlcState.TO_CANCEL, HtlcState.CANCELLED)
        )
        return True

    async def _after_cancelled(self, order: Order) -> None:
        """The node reports the invoice cancelled (by us, or at its expiry)."""
        if order.htlc_state is HtlcState.TO_CANCEL:
            await self._uow.write(
                lambda tx: self._move_htlc(tx, order.id, HtlcState.TO_CANCEL, HtlcState.CANCELLED)
            )
        elif order.htlc_state is HtlcState.TO_SETTLE:
            await self._settle_htlc(order)  # finds it cancelled: recorded as lost
        elif order.status is OrderStatus.OPEN:
            now = self._clock.now_ms()
            if now >= order.expires_at_ms:  # the node expired it: so does the order
                closed = await self._uow.write(self._expire_op(order.id, now))
                if closed is not None:
                    await self._after_cancelled(closed)

    # --- helpers -----------------------------------------------------------------------------

    async def _cancel_quietly(self, payment_hash: bytes) -> None:
        try:
            await self._node.cancel_invoice(payment_hash)
        except Exception:
            log.warning("could not cancel invoice %s", payment_hash.hex())

    def _move_htlc(self, tx: Tx, order_id: str, old: HtlcState, new: HtlcState) -> bool:
        return store.move_htlc(tx, order_id, old, new, at_ms=self._clock.now_ms())

    def _preimage(self, order_id: str) -> bytes:
        """Derived from the server key, never stored: the database alone cannot settle."""
        return self._key.derive(PREIMAGE_LABEL + order_id.encode())

    def _owned(self, tx: Tx, merchant_id: str, order_id: str) -> Order:
        order = store.by_id(tx, order_id) if ORDER_ID.fullmatch(order_id) else None
        if order is None or order.merchant_user_id != merchant_id:  # another's does not exist
            raise NotFound("no such order")
        return order

    def _merchant(self, tx: Tx, order: Order) -> User:
        merchant = users.user_by_id(tx, order.merchant_user_id)
        if merchant is None:
            raise InvariantBroken(f"order {order.id} belongs to no user")
        return merchant

    def _announce(self, tx: Tx, order_id: str, event_type: str, now: int) -> Order:
        order = store.by_id(tx, order_id)
        if order is None:
            raise InvariantBroken(f"order {order_id} vanished inside its own transaction")
        view = order_view(order, self._public_url)
        announce(tx, order.merchant_user_id, event_type, view.as_json(), now_ms=now)
        return order
