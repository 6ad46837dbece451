"""Users, their credentials, balances, history and operator adjustments.

``Accounts`` is the use case; the module's tx-level helpers (``require_user``, ``caller``,
``iso_ms``) are shared with the other use cases that name a counterparty or stamp a time.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from lngate.domain.errors import (
    AlreadyExists,
    InsufficientFunds,
    InvalidAmount,
    InvalidRequest,
    LedgerRefused,
    UnknownUser,
)
from lngate.domain.ledger import AccountKind, TransferResult, TransferSpec
from lngate.domain.money import parse_amount_msat
from lngate.security.secrets import ServerKey, new_api_key, new_api_secret
from lngate.services.ports import UnitOfWork
from lngate.store import audit, users
from lngate.store.db import IntegrityError, Tx
from lngate.store.ledger import apply_transfer, get_account
from lngate.store.users import Role
from lngate.store.users import User as User  # the record these use cases return

# LUD-16: the local part of a Lightning Address is a-z0-9-_. ; we also bound its length.
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,31}$")
HISTORY_PAGE_MAX = 200


@dataclass(frozen=True, slots=True)
class Credentials:
    user_id: str
    username: str
    api_key: str
    api_secret: str

    def as_json(self) -> dict[str, str]:
        return {
            "user_id": self.user_id,
            "username": self.username,
            "api_key": self.api_key,
            "api_secret": self.api_secret,
        }


@dataclass(frozen=True, slots=True)
class AccountView:
    """What ``GET /v1/account`` answers (``schemas.Account``)."""

    user_id: str
    username: str
    available_msat: int
    pending_msat: int  # held for withdrawals in progress
    lightning_address: str
    status: str


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    seq: int
    id: str
    kind: str
    phase: str
    hold_state: str | None
    direction: str  # "in" or "out"
    amount_msat: int
    counterparty: str | None
    memo: str
    created_at: str


@dataclass(frozen=True, slots=True)
class HistoryPage:
    entries: tuple[HistoryEntry, ...]  # newest first
    next_cursor: int | None


@dataclass(frozen=True, slots=True)
class Adjustment:
    transfer_id: str
    username: str
    amount_msat: int  # positive: credited; negative: debited

    def as_json(self) -> dict[str, str | int]:
        return {
            "transfer_id": self.transfer_id,
            "username": self.username,
            "amount_msat": self.amount_msat,
        }


def validate_username(username: str) -> str:
    if not isinstance(username, str) or not _USERNAME.match(username):
        raise InvalidRequest(
            "username must be 2-32 characters of a-z, 0-9, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return username


def require_user(tx: Tx, username: str) -> User:
    """The account holder (user or merchant) named ``username``. Admin keys are operators, not
    account holders: their names are not addresses (money sent to one would be stranded), so
    they are unknown here, on every path that names a counterparty."""
    user = users.user_by_name(tx, username) if isinstance(username, str) else None
    if user is None or user.role is Role.ADMIN:
        raise UnknownUser(f"no user named {username!r}")
    return user


def caller(tx: Tx, user_id: str) -> User:
    """The user a verified key belongs to; a user deleted since is unknown."""
    user = users.user_by_id(tx, user_id)
    if user is None:
        raise UnknownUser("the caller no longer exists")
    return user


def account_view(tx: Tx, user: User, public_host: str) -> AccountView:
    account = get_account(tx, user.account_id)
    assert account is not None, "every user has an account"
    return AccountView(
        user_id=user.id,
        username=user.username,
        available_msat=account.balance.available_msat,
        pending_msat=account.balance.debits_pending_msat,
        lightning_address=f"{user.username}@{public_host}",
        status=user.status.value,
    )


def iso_ms(at_ms: int) -> str:
    return datetime.fromtimestamp(at_ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


def history(tx: Tx, user: User, *, cursor: int | None, limit: int) -> HistoryPage:
    """The user's ledger entries, newest first; ``next_cursor`` pages further back."""
    if not 1 <= limit <= HISTORY_PAGE_MAX:
        raise InvalidRequest(f"limit must be between 1 and {HISTORY_PAGE_MAX}")
    before = cursor if cursor is not None else 2**62
    rows = tx.all(
        "SELECT t.seq, t.id, t.kind, t.flag, t.hold_state, t.amount_msat, t.memo, "
        "t.created_at_ms, t.debit_account_id, cu.username, du.username "
        "FROM transfers t "
        "LEFT JOIN users cu ON cu.account_id = t.credit_account_id "
        "LEFT JOIN users du ON du.account_id = t.debit_account_id "
        "WHERE (t.debit_account_id = :a OR t.credit_account_id = :a) AND t.seq < :b "
        "ORDER BY t.seq DESC LIMIT :l",
        {"a": user.account_id, "b": before, "l": limit + 1},  # one more: is there a next page?
    )
    has_more = len(rows) > limit
    entries = []
    for seq, tid, kind, flag, hold_state, amount, memo, at_ms, debit_id, cu, du in rows[:limit]:
        outgoing = int(debit_id) == user.account_id
        entries.append(
            HistoryEntry(
                seq=int(seq),
                id=tid,
                kind=kind,
                phase=flag,
                hold_state=hold_state,
                direction="out" if outgoing else "in",
                amount_msat=int(amount),
                counterparty=(cu if outgoing else du),
                memo=memo,
                created_at=iso_ms(int(at_ms)),
            )
        )
    next_cursor = entries[-1].seq if has_more else None
    return HistoryPage(tuple(entries), next_cursor)


class Accounts:
    """Opening accounts (a user, merchant or admin key, its credentials shown once), what an
    account holder sees of their account, and an operator's audited adjustments."""

    def __init__(
        self,
        uow: UnitOfWork,
        server_key: ServerKey,
        *,
        public_host: str,
        system_accounts: Mapping[str, int],
    ) -> None:
        self._uow = uow
        self._server_key = server_key
        self._public_host = public_host
        self._adjustments = system_accounts[AccountKind.ADJUSTMENTS.value]

    def create_user_sync(self, username: str, role: Role = Role.USER) -> Credentials:
        """A new account holder and its first API key; the secret is in the answer only."""
        op, key, secret = self._create_user_op(username, role)
        user = self._uow.write_sync(op)
        return Credentials(user.id, user.username, key, secret)

    async def create_user(self, username: str, role: Role = Role.USER) -> Credentials:
        op, key, secret = self._create_user_op(username, role)
        user = await self._uow.write(op)
        return Credentials(user.id, user.username, key, secret)

    def _create_user_op(self, username: str, role: Role) -> tuple[Callable[[Tx], User], str, str]:
        validate_username(username)
        key, secret = new_api_key(), new_api_secret()
        sealed = self._server_key.encrypt(secret.encode(), context=key.encode())

        def op(tx: Tx) -> User:
            if users.user_by_name(tx, username) is not None:
                raise AlreadyExists(f"user {username!r} already exists")
            try:
                user = users.insert_user(tx, username, role)
            except IntegrityError as exc:  # a concurrent create of the same name
                raise AlreadyExists(f"user {username!r} already exists") from exc
            users.insert_api_key(tx, key, user.id, sealed)
            return user

        return op, key, secret

    def adjust_sync(
        self, username: str, amount_msat: int, *, reason: str, actor: str
    ) -> Adjustment:
        """Credit (positive) or debit (negative) a user against the adjustments account, with
        an audit record in the same transaction."""
        return self._uow.write_sync(self._adjust_op(username, amount_msat, reason, actor))

    async def adjust(
        self, username: str, amount_msat: int, *, reason: str, actor: str
    ) -> Adjustment:
        return await self._uow.write(self._adjust_op(username, amount_msat, reason, actor))

    def _adjust_op(self, username: str, amount_msat: int, reason: str, actor: str) -> _AdjustOp:
        if isinstance(amount_msat, bool) or not isinstance(amount_msat, int) or amount_msat == 0:
            raise InvalidAmount("the adjustment must be a non-zero integer number of msat")
        parse_amount_msat(abs(amount_msat))
        if not reason or not reason.strip():
            raise InvalidRequest("an adjustment needs a reason")
        transfer_id = f"adjust:{uuid.uuid4()}"  # fixed before the op: a retried op reuses it
        return _AdjustOp(self._adjustments, transfer_id, username, amount_msat, reason, actor)

    async def view(self, user_id: str) -> AccountView:
        """The caller's balances and Lightning Address."""

        def read(tx: Tx) -> AccountView:
            return account_view(tx, caller(tx, user_id), self._public_host)

        return await self._uow.read(read)

    async def history(self, user_id: str, *, cursor: int | None, limit: int) -> HistoryPage:
        """The caller's ledger entries, newest first, ``limit`` at most, before ``cursor``."""
        return await self._uow.read(
            lambda tx: history(tx, caller(tx, user_id), cursor=cursor, limit=limit)
        )


@dataclass(frozen=True, slots=True)
class _AdjustOp:
    adjustments_account: int
    transfer_id: str
    username: str
    amount_msat: int
    reason: str
    actor: str

    def __call__(self, tx: Tx) -> Adjustment:
        user = require_user(tx, self.username)
        magnitude = abs(self.amount_msat)
        debit, credit = (
            (self.adjustments_account, user.account_id)
            if self.amount_msat > 0
            else (user.account_id, self.adjustments_account)
        )
        transfer_id = self.transfer_id
        spec = TransferSpec(
            transfer_id, debit, credit, magnitude, kind="adjustment", memo=self.reason
        )
        result = apply_transfer(tx, spec)
        if result is TransferResult.EXCEEDS_CREDITS:
            raise InsufficientFunds(f"{self.username} has less than {magnitude} msat available")
        if result is not TransferResult.OK:
            raise LedgerRefused(f"the ledger refused the adjustment: {result.value}")
        audit.append(
            tx,
            actor=self.actor,
            action="ledger.adjust",
            subject=f"user:{self.username}",
            reason=self.reason,
            details={"transfer_id": transfer_id, "amount_msat": self.amount_msat},
        )
        return Adjustment(transfer_id, self.username, self.amount_msat)
