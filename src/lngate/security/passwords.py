"""Passwords of the wallet and the console: argon2id (RFC 9106), never stored or logged.

The parameters are argon2-cffi's defaults (RFC 9106's second recommended option: 64 MiB,
3 passes, 4 lanes); a stored hash made with older ones is rehashed at the next sign-in.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

PASSWORD_MIN_CHARS = 10
PASSWORD_MAX_BYTES = 1_024  # argon2 takes anything; a megabyte "password" is only work

_HASHER = PasswordHasher()
# Verified against when the username is unknown, so that the answer takes as long.
_DUMMY_HASH = _HASHER.hash("lngate: no such user")


def password_problem(password: str) -> str | None:
    """What is wrong with a new password, or None."""
    if len(password) < PASSWORD_MIN_CHARS:
        return f"a password needs at least {PASSWORD_MIN_CHARS} characters"
    if len(password.encode()) > PASSWORD_MAX_BYTES:
        return f"a password has at most {PASSWORD_MAX_BYTES} bytes"
    return None


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches; a missing hash costs the same time and is False."""
    if len(password.encode()) > PASSWORD_MAX_BYTES:
        return False
    try:
        return _HASHER.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    return _HASHER.check_needs_rehash(stored_hash)
