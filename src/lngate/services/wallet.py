"""The web wallet's use cases: what a signed-in user does on ``/app/``, over the same use cases
as the API (the same limits, holds, review and audit), with the wallet's own second factor.

Every form that moves money carries a key of its own, minted when the form is rendered, and
is run once per key (``web:`` + the key, in the user's idempotency namespace): a form sent twice
(a double click, a reload that re-posts) moves nothing the second time and shows the first
answer. Withdrawals and orders paid from the balance need the user's TOTP code once they have
enrolled one, above ``[web] withdrawal_totp_above_msat``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from lngate.domain.errors import InvalidRequest
from lngate.services.accounts import Accounts, AccountView, HistoryPage
from lngate.services.deposits import DepositRecord, Deposits
from lngate.services.idempotent import replayed
from lngate.services.order_records import CheckoutView
from lngate.services.orders import Orders
from lngate.services.ports import UnitOfWork
from lngate.services.transfers import TransferReceipt, Transfers
from lngate.services.web_logins import WebLogins, WebSession
from lngate.services.withdrawal_records import WithdrawalPage, WithdrawalPreview, WithdrawalView
from lngate.services.withdrawals import WithdrawalRequests

FORM_KEY_MAX_CHARS = 64
HISTORY_PAGE = 20


@dataclass(frozen=True, slots=True)
class WithdrawTo:
    """A withdrawal as the form gives it: exactly one of an invoice or an address."""

    bolt11: str | None
    lightning_address: str | None
    amount_msat: int | None  # for an address, or an invoice without an amount


def _once(form_key: str, *fields: object) -> tuple[str, str]:
    """The idempotency key and request hash of one form submission."""
    if not form_key or len(form_key) > FORM_KEY_MAX_CHARS or not form_key.isascii():
        raise InvalidRequest("this form has expired: open it again")
    digest = hashlib.sha256(orjson.dumps(list(fields), default=str)).hexdigest()
    return f"web:{form_key}", digest


class Wallet:
    def __init__(
        self,
        uow: UnitOfWork,
        logins: WebLogins,
        accounts: Accounts,
        deposits: Deposits,
        withdrawals: WithdrawalRequests,
        transfers: Transfers,
        orders: Orders,
    ) -> None:
        self._uow = uow
        self._logins = logins
        self._accounts = accounts
        self._deposits = deposits
        self._withdrawals = withdrawals
        self._transfers = transfers
        self._orders = orders

    async def account(self, session: WebSession) -> AccountView:
        return await self._accounts.view(session.user_id)

    async def history(self, session: WebSession, cursor: int | None) -> HistoryPage:
        return await self._accounts.history(session.user_id, cursor=cursor, limit=HISTORY_PAGE)

    async def withdrawal_page(self, session: WebSession, cursor: int | None) -> WithdrawalPage:
        return await self._withdrawals.page(session.user_id, cursor=cursor, limit=HISTORY_PAGE)

    async def _previous(self, session: WebSession, once: tuple[str, str]) -> dict[str, Any] | None:
        """The first answer to this form, when it was sent before (checked before the second
        factor: a code is used once, and the repeat needs none)."""
        return await self._uow.read(lambda tx: replayed(tx, session.user_id, *once))

    # --- deposits ----------------------------------------------------------------------------

    async def deposit(
        self, session: WebSession, amount_msat: int | None, memo: str, form_key: str
    ) -> DepositRecord:
        once = _once(form_key, "deposit", amount_msat, memo)
        return await self._deposits.create(
            session.user_id, amount_msat, memo=memo, source="web", idempotency=once
        )

    async def deposit_status(self, session: WebSession, deposit_id: str) -> DepositRecord:
        return await self._deposits.get(session.user_id, deposit_id)

    # --- withdrawals -------------------------------------------------------------------------

    async def preview(self, session: WebSession, to: WithdrawTo) -> WithdrawalPreview:
        return await self._withdrawals.preview(
            session.user_id,
            bolt11=to.bolt11,
            lightning_address=to.lightning_address,
            amount_msat=to.amount_msat,
        )

    async def withdraw(
        self, session: WebSession, to: WithdrawTo, code: str, form_key: str
    ) -> WithdrawalView:
        """Checked again from the start (the preview was only a look), the code checked, then
        requested once for ``form_key``."""
        once = _once(form_key, "withdraw", to.bolt11, to.lightning_address, to.amount_msat)
        previous = await self._previous(session, once)
        if previous is not None:  # the same form again: its withdrawal as it is now
            return await self._withdrawals.get(session.user_id, str(previous["id"]))
        preview = await self.preview(session, to)
        if self._logins.totp_needed(preview.amount_msat):
            await self._logins.check_code(session, code)
        return await self._withdrawals.request(
            session.user_id,
            bolt11=to.bolt11,
            lightning_address=to.lightning_address,
            amount_msat=to.amount_msat,
            idempotency=once,
        )

    async def withdrawal(self, session: WebSession, withdrawal_id: str) -> WithdrawalView:
        return await self._withdrawals.get(session.user_id, withdrawal_id)

    # --- transfers and orders ----------------------------------------------------------------

    async def send(
        self, session: WebSession, to_username: str, amount_msat: int, memo: str, form_key: str
    ) -> TransferReceipt:
        key, req_hash = _once(form_key, "send", to_username, amount_msat, memo)
        return await self._transfers.transfer(
            session.user_id,
            to_username,
            amount_msat,
            memo,
            idempotency_key=key,
            request_hash=req_hash,
        )

    async def order(self, order_id: str) -> CheckoutView:
        return await self._orders.checkout(order_id)

    async def pay_order(
        self, session: WebSession, order_id: str, code: str, form_key: str
    ) -> CheckoutView:
        once = _once(form_key, "pay", order_id)
        if await self._previous(session, once) is not None:
            return await self._orders.checkout(order_id)
        order = await self._orders.checkout(order_id)
        if self._logins.totp_needed(order.amount_msat):
            await self._logins.check_code(session, code)
        return await self._orders.pay_from_balance(session.user_id, order_id, idempotency=once)
