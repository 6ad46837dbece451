"""Users, their ledger accounts and their API keys."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from lngate.domain.ledger import AccountFlags, AccountKind
from lngate.domain.users import Role, UserStatus
from lngate.store.db import Row, Tx
from lngate.store.ledger import create_account, now_ms

__all__ = ["Role", "User", "UserStatus"]  # the enums live in the domain; kept here for callers


@dataclass(frozen=True, slots=True)
class User:
    id: str
    username: str
    role: Role
    account_id: int
    status: UserStatus


_USER_COLUMNS = "id, username, role, account_id, status"


def _user(row: Row) -> User:
    return User(str(row[0]), str(row[1]), Role(row[2]), int(row[3]), UserStatus(row[4]))


def insert_user(tx: Tx, username: str, role: Role) -> User:
    user_id = str(uuid.uuid4())
    kind = AccountKind.MERCHANT if role is Role.MERCHANT else AccountKind.USER
    account_id = create_account(
        tx, f"{kind.value}:{user_id}", kind, AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
    )
    tx.execute(
        "INSERT INTO users (id, username, role, account_id, status, created_at_ms) "
        "VALUES (:id, :u, :r, :a, :s, :t)",
        {
            "id": user_id,
            "u": username,
            "r": role.value,
            "a": account_id,
            "s": UserStatus.ACTIVE.value,
            "t": now_ms(),
        },
    )
    return User(user_id, username, role, account_id, UserStatus.ACTIVE)


def user_by_name(tx: Tx, username: str) -> User | None:
    row = tx.one(f"SELECT {_USER_COLUMNS} FROM users WHERE username = :u", {"u": username})
    return None if row is None else _user(row)


def user_by_id(tx: Tx, user_id: str) -> User | None:
    row = tx.one(f"SELECT {_USER_COLUMNS} FROM users WHERE id = :id", {"id": user_id})
    return None if row is None else _user(row)


def holders_by_prefix(tx: Tx, prefix: str, limit: int) -> list[User]:
    """Users and merchants (not admin keys) whose name starts with ``prefix``, by name."""
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    rows = tx.all(
        f"SELECT {_USER_COLUMNS} FROM users WHERE username LIKE :p ESCAPE '\\' "
        "AND role <> 'admin' ORDER BY username LIMIT :n",
        {"p": escaped + "%", "n": limit},
    )
    return [_user(row) for row in rows]


def set_status(tx: Tx, user_id: str, status: UserStatus) -> bool:
    return (
        tx.execute(
            "UPDATE users SET status = :s WHERE id = :id", {"s": status.value, "id": user_id}
        )
        == 1
    )


def insert_api_key(tx: Tx, key: str, user_id: str, secret_encrypted: bytes) -> None:
    tx.execute(
        "INSERT INTO api_keys (key, user_id, secret_encrypted, created_at_ms) "
        "VALUES (:k, :u, :s, :t)",
        {"k": key, "u": user_id, "s": secret_encrypted, "t": now_ms()},
    )


def api_key(tx: Tx, key: str) -> tuple[str, bytes, Role] | None:
    """(user_id, encrypted secret, role) of a key that is not revoked."""
    row = tx.one(
        "SELECT k.user_id, k.secret_encrypted, u.role FROM api_keys k "
        "JOIN users u ON u.id = k.user_id WHERE k.key = :k AND k.revoked_at_ms IS NULL",
        {"k": key},
    )
    return None if row is None else (str(row[0]), bytes(row[1]), Role(row[2]))
