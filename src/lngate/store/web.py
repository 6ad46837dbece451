"""Sign-in credentials and server-side sessions of the wallet and the console."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lngate.store.db import Row, Tx


@dataclass(frozen=True, slots=True)
class Login:
    user_id: str
    password_hash: str
    totp_secret_encrypted: bytes | None
    totp_pending_encrypted: bytes | None
    totp_last_step: int
    failed_logins: int
    locked_until_ms: int


@dataclass(frozen=True, slots=True)
class Session:
    token_hash: str
    user_id: str
    realm: str
    csrf_token: str
    created_at_ms: int
    seen_at_ms: int
    expires_at_ms: int


_LOGIN_COLUMNS = (
    "user_id, password_hash, totp_secret_encrypted, totp_pending_encrypted, totp_last_step, "
    "failed_logins, locked_until_ms"
)
_SESSION_COLUMNS = (
    "token_hash, user_id, realm, csrf_token, created_at_ms, seen_at_ms, expires_at_ms"
)


def _blob(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


def _login(row: Row) -> Login:
    return Login(
        str(row[0]),
        str(row[1]),
        _blob(row[2]),
        _blob(row[3]),
        int(row[4]),
        int(row[5]),
        int(row[6]),
    )


def login(tx: Tx, user_id: str) -> Login | None:
    row = tx.one(f"SELECT {_LOGIN_COLUMNS} FROM web_logins WHERE user_id = :u", {"u": user_id})
    return None if row is None else _login(row)


def set_password(tx: Tx, user_id: str, password_hash: str, now_ms: int) -> None:
    """A new password also clears the failures and the wait (an operator's reset)."""
    changed = tx.execute(
        "UPDATE web_logins SET password_hash = :h, failed_logins = 0, locked_until_ms = 0, "
        "updated_at_ms = :t WHERE user_id = :u",
        {"h": password_hash, "t": now_ms, "u": user_id},
    )
    if changed == 0:
        tx.execute(
            "INSERT INTO web_logins (user_id, password_hash, updated_at_ms) VALUES (:u, :h, :t)",
            {"u": user_id, "h": password_hash, "t": now_ms},
        )


def rehash(tx: Tx, user_id: str, password_hash: str) -> None:
    tx.execute(
        "UPDATE web_logins SET password_hash = :h WHERE user_id = :u",
        {"h": password_hash, "u": user_id},
    )


def claim_attempt(tx: Tx, user_id: str, now_ms: int, max_failures: int) -> bool:
    """Count an attempt (a password or a code) as failed until it succeeds, before it is
    checked: so attempts in flight at once are bounded too. False when the account waits
    (locked, or ``max_failures`` attempts failed or in flight)."""
    return (
        tx.execute(
            "UPDATE web_logins SET failed_logins = failed_logins + 1 "
            "WHERE user_id = :u AND locked_until_ms <= :now AND failed_logins < :max",
            {"u": user_id, "now": now_ms, "max": max_failures},
        )
        == 1
    )


def lock_if_due(tx: Tx, user_id: str, max_failures: int, lock_until_ms: int) -> bool:
    """After a failed attempt: at ``max_failures`` the account waits until ``lock_until_ms``
    and the count starts again. True when this call locked it."""
    return (
        tx.execute(
            "UPDATE web_logins SET failed_logins = 0, locked_until_ms = :l "
            "WHERE user_id = :u AND failed_logins >= :max",
            {"l": lock_until_ms, "u": user_id, "max": max_failures},
        )
        == 1
    )


def attempt_succeeded(tx: Tx, user_id: str, now_ms: int) -> bool:
    """The count starts again; False when the account was locked meanwhile (by attempts that
    failed while this one was checked)."""
    return (
        tx.execute(
            "UPDATE web_logins SET failed_logins = 0 "
            "WHERE user_id = :u AND locked_until_ms <= :now",
            {"u": user_id, "now": now_ms},
        )
        == 1
    )


def reset_totp(tx: Tx, user_id: str) -> None:
    """An operator's reset: no TOTP secret, none pending (the user enrols again)."""
    tx.execute(
        "UPDATE web_logins SET totp_secret_encrypted = NULL, totp_pending_encrypted = NULL "
        "WHERE user_id = :u",
        {"u": user_id},
    )


def use_totp_step(tx: Tx, user_id: str, step: int) -> bool:
    """Mark ``step`` used; False when it (or a later one) was used already (a replay)."""
    return (
        tx.execute(
            "UPDATE web_logins SET totp_last_step = :s WHERE user_id = :u AND totp_last_step < :s",
            {"s": step, "u": user_id},
        )
        == 1
    )


def set_totp_pending(tx: Tx, user_id: str, secret_encrypted: bytes | None) -> None:
    tx.execute(
        "UPDATE web_logins SET totp_pending_encrypted = :p WHERE user_id = :u",
        {"p": secret_encrypted, "u": user_id},
    )


def enable_totp(tx: Tx, user_id: str, secret_encrypted: bytes, step: int) -> bool:
    """The pending secret becomes the account's (its first code used up); False when none was
    pending (a second confirmation)."""
    return (
        tx.execute(
            "UPDATE web_logins SET totp_secret_encrypted = :s, totp_pending_encrypted = NULL, "
            "totp_last_step = :step WHERE user_id = :u AND totp_pending_encrypted IS NOT NULL",
            {"s": secret_encrypted, "step": step, "u": user_id},
        )
        == 1
    )


def _session(row: Row) -> Session:
    return Session(
        str(row[0]), str(row[1]), str(row[2]), str(row[3]), int(row[4]), int(row[5]), int(row[6])
    )


def insert_session(tx: Tx, s: Session) -> None:
    tx.execute(
        f"INSERT INTO web_sessions ({_SESSION_COLUMNS}) "
        "VALUES (:h, :u, :r, :c, :created, :seen, :expires)",
        {
            "h": s.token_hash,
            "u": s.user_id,
            "r": s.realm,
            "c": s.csrf_token,
            "created": s.created_at_ms,
            "seen": s.seen_at_ms,
            "expires": s.expires_at_ms,
        },
    )


def session(tx: Tx, token_hash: str) -> Session | None:
    row = tx.one(
        f"SELECT {_SESSION_COLUMNS} FROM web_sessions WHERE token_hash = :h", {"h": token_hash}
    )
    return None if row is None else _session(row)


def touch_session(tx: Tx, token_hash: str, seen_at_ms: int) -> None:
    tx.execute(
        "UPDATE web_sessions SET seen_at_ms = :t WHERE token_hash = :h AND seen_at_ms < :t",
        {"t": seen_at_ms, "h": token_hash},
    )


def delete_session(tx: Tx, token_hash: str) -> bool:
    return tx.execute("DELETE FROM web_sessions WHERE token_hash = :h", {"h": token_hash}) == 1


def delete_user_sessions(tx: Tx, user_id: str) -> int:
    return tx.execute("DELETE FROM web_sessions WHERE user_id = :u", {"u": user_id})


def delete_expired_sessions(tx: Tx, before_ms: int) -> int:
    return tx.execute("DELETE FROM web_sessions WHERE expires_at_ms < :t", {"t": before_ms})
