"""The API keys a request is signed with: which user holds a key, with what role."""

from __future__ import annotations

from dataclasses import dataclass

from lngate.domain.users import Role
from lngate.store import users
from lngate.store.db import Tx


@dataclass(frozen=True, slots=True)
class ApiKeyHolder:
    user_id: str
    secret_encrypted: bytes  # sealed with the server key, the API key as its context
    role: Role


def active_key(tx: Tx, api_key: str) -> ApiKeyHolder | None:
    """The holder of a key that exists and is not revoked; None otherwise."""
    found = users.api_key(tx, api_key)
    return None if found is None else ApiKeyHolder(*found)
