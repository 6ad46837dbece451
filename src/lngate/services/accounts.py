"""Users, their credentials, balances, history and operator adjustments."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lngate.bootstrap import Core
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
from lngate.security.secrets import new_api_key, new_api_secret
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


def validate_username(username: str) -> str:
    if not isinstance(username, str) or not _USERNAME.match(username):
        raise InvalidRequest(
            "username must be 2-32 characters of a-z, 0-9, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return username


def create_user(core: Core, username: str, role: Role = Role.USER) -> Credentials:
    validate_username(username)
    key, secret = new_api_key(), new_api_secret()
    encrypted = core.server_key.encrypt(secret.encode(), context=key.encode())

    def op(tx: Tx) -> User:
        if users.user_by_name(tx, username) is not None:
            raise AlreadyExists(f"user {username!r} already exists")
        try:
            user = users.insert_user(tx, username, role)
        except IntegrityError as exc:  # a concurrent create of the same name
            raise AlreadyExists(f"user {username!r} already exists") from exc
        users.insert_api_key(tx, key, user.id, encrypted)
        return user

    user = core.write_sync(op)
    return Credentials(user.id, user.username, key, secret)


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


def account_view(tx: Tx, user: User, public_host: str) -> dict[str, Any]:
    account = get_account(tx, user.account_id)
    assert account is not None, "every user has an account"
    return {
        "user_id": user.id,
        "username": user.username,
        "available_msat": account.balance.available_msat,
        "pending_msat": account.balance.debits_pending_msat,
        "lightning_address": f"{user.username}@{public_host}",
        "status": user.status.value,
    }


def iso_ms(at_ms: int) -> str:
    return datetime.fromtimestamp(at_ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


def history(tx: Tx, user: User, *, cursor: int | None, limit: int) -> dict[str, Any]:
    """The caller's ledger entries, newest first; ``next_cursor`` pages further back."""
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
            {
                "seq": int(seq),
                "id": tid,
                "kind": kind,
                "phase": flag,
                "hold_state": hold_state,
                "direction": "out" if outgoing else "in",
                "amount_msat": int(amount),
                "counterparty": (cu if outgoing else du),
                "memo": memo,
                "created_at": iso_ms(int(at_ms)),
            }
        )
    next_cursor = entries[-1]["seq"] if has_more else None
    return {"entries": entries, "next_cursor": next_cursor}


def adjust(core: Core, username: str, amount_msat: int, *, reason: str, actor: str) -> str:
    """Credit (positive) or debit (negative) a user against the adjustments account, with an
    audit record in the same transaction. Returns the transfer id."""
    if isinstance(amount_msat, bool) or not isinstance(amount_msat, int) or amount_msat == 0:
        raise InvalidAmount("the adjustment must be a non-zero integer number of msat")
    magnitude = parse_amount_msat(abs(amount_msat))
    if not reason or not reason.strip():
        raise InvalidRequest("an adjustment needs a reason")
    adjustments = core.system_accounts[AccountKind.ADJUSTMENTS.value]
    transfer_id = f"adjust:{uuid.uuid4()}"

    def op(tx: Tx) -> str:
        user = require_user(tx, username)
        debit, credit = (
            (adjustments, user.account_id) if amount_msat > 0 else (user.account_id, adjustments)
        )
        spec = TransferSpec(transfer_id, debit, credit, magnitude, kind="adjustment", memo=reason)
        result = apply_transfer(tx, spec)
        if result is TransferResult.EXCEEDS_CREDITS:
            raise InsufficientFunds(f"{username} has less than {magnitude} msat available")
        if result is not TransferResult.OK:
            raise LedgerRefused(f"the ledger refused the adjustment: {result.value}")
        audit.append(
            tx,
            actor=actor,
            action="ledger.adjust",
            subject=f"user:{username}",
            reason=reason,
            details={"transfer_id": transfer_id, "amount_msat": amount_msat},
        )
        return transfer_id

    return core.write_sync(op)
