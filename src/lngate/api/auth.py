"""Authentication of ``/v1`` requests by signature (see ``lngate.security.signing``)."""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from dataclasses import dataclass

from fastapi import Request

from lngate.domain.errors import AuthError, NotAMerchant
from lngate.domain.users import Role
from lngate.security.replay_guards import SharedReplayGuard
from lngate.security.secrets import new_api_secret
from lngate.security.signing import (
    KEY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign,
    signatures_match,
)
from lngate.services.api_keys import ApiKeys
from lngate.services.clock import SYSTEM_CLOCK
from lngate.services.ports import Clock

_TIMESTAMP = re.compile(r"[0-9]{1,15}")
# One answer for an unknown key, a key of another listener and a wrong signature: which of the
# three it was would tell a prober which key names exist.
_REFUSED = "invalid API key or signature"
KEY_CACHE_TTL_S = 5.0  # a revoked key stops working within this long
KEY_CACHE_MAX = 100_000
_NO_SECRET = new_api_secret()


@dataclass(frozen=True, slots=True)
class Caller:
    user_id: str
    api_key: str
    role: Role


def require_merchant(caller: Caller) -> Caller:
    """Pay's calls (orders, refunds, webhooks) are a merchant's: another key gets 403."""
    if caller.role is not Role.MERCHANT:
        raise NotAMerchant("this call needs a merchant's API key")
    return caller


class Authenticator:
    """Checks signatures for one listener; ``roles`` are the key roles it accepts (user and
    merchant keys on the public listener, admin keys on the admin listener, never both).

    ``replays``: shared by every process on PostgreSQL (a table), this process's memory on
    SQLite (``replay_guard_for``); the listener closes it when it stops. ``window_ms``: how
    far a request's timestamp may be from ``clock``'s time."""

    def __init__(
        self,
        keys: ApiKeys,
        replays: SharedReplayGuard,
        roles: frozenset[Role],
        *,
        window_ms: int,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._api_keys = keys
        self._roles = roles
        self._window_ms = window_ms
        self._clock = clock
        self.replays = replays
        self._keys: OrderedDict[str, tuple[float, str, str, Role]] = OrderedDict()

    async def _secret_for(self, api_key: str) -> tuple[str, str, Role] | None:
        now = time.monotonic()
        cached = self._keys.get(api_key)
        if cached is not None and cached[0] > now:
            return cached[1], cached[2], cached[3]
        key = await self._api_keys.signing_key(api_key)
        if key is None:
            return None
        self._keys[api_key] = (now + KEY_CACHE_TTL_S, key.user_id, key.secret, key.role)
        if len(self._keys) > KEY_CACHE_MAX:
            self._keys.popitem(last=False)
        return key.user_id, key.secret, key.role

    async def __call__(self, request: Request) -> Caller:
        headers = request.headers
        api_key = headers.get(KEY_HEADER)
        timestamp = headers.get(TIMESTAMP_HEADER)
        signature = headers.get(SIGNATURE_HEADER)
        if not api_key or not timestamp or not signature:
            raise AuthError(
                f"sign the request: {KEY_HEADER}, {TIMESTAMP_HEADER} and {SIGNATURE_HEADER}"
            )
        if not _TIMESTAMP.fullmatch(timestamp):
            raise AuthError(f"{TIMESTAMP_HEADER} must be Unix time in milliseconds")
        now_ms = self._clock.now_ms()
        if abs(now_ms - int(timestamp)) > self._window_ms:
            raise AuthError("the request timestamp is outside the receive window")
        known = await self._secret_for(api_key)
        # An unknown key is checked against a throwaway secret: the same work, the same answer.
        user_id, secret, role = known if known is not None else ("", _NO_SECRET, Role.USER)
        body = await request.body()
        # Sign what was sent: the raw path (some servers include the query in raw_path).
        raw_path = request.scope.get("raw_path") or request.url.path.encode()
        path = raw_path.split(b"?", 1)[0].decode("latin-1")
        query = request.scope.get("query_string", b"").decode("latin-1")
        path_with_query = f"{path}?{query}" if query else path
        expected = sign(secret, timestamp, request.method, path_with_query, body)
        valid = signatures_match(expected, signature.lower())
        if not valid or known is None or role not in self._roles:
            raise AuthError(_REFUSED)
        if not await self.replays.first_use(expected, now_ms):
            raise AuthError("this signature was already used (replay)")
        request.state.user_id = user_id  # for the log lines of this request
        return Caller(user_id=user_id, api_key=api_key, role=role)
