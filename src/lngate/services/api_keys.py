"""The API keys a request is signed with: which user holds a key, with what role."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from lngate.domain.users import Role
from lngate.security.secrets import ServerKey
from lngate.services.ports import UnitOfWork
from lngate.store import users
from lngate.store.db import Tx


@dataclass(frozen=True, slots=True)
class ApiKeyHolder:
    user_id: str
    secret_encrypted: bytes  # sealed with the server key, the API key as its context
    role: Role


@dataclass(frozen=True, slots=True)
class SigningKey:
    """An active key's holder and the secret its requests are signed with."""

    user_id: str
    secret: str
    role: Role


def active_key(tx: Tx, api_key: str) -> ApiKeyHolder | None:
    """The holder of a key that exists and is not revoked; None otherwise."""
    found = users.api_key(tx, api_key)
    return None if found is None else ApiKeyHolder(*found)


class ApiKeys:
    """Looks up the key a request names and unseals its secret with the server key."""

    def __init__(self, uow: UnitOfWork, server_key: ServerKey) -> None:
        self._uow = uow
        self._server_key = server_key

    async def signing_key(self, api_key: str) -> SigningKey | None:
        """The key's holder and secret; None for a key that does not exist or is revoked."""
        holder = await self._uow.read(functools.partial(active_key, api_key=api_key))
        if holder is None:
            return None
        sealed = holder.secret_encrypted
        secret = self._server_key.decrypt(sealed, context=api_key.encode()).decode()
        return SigningKey(holder.user_id, secret, holder.role)
