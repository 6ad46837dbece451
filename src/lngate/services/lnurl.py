"""Lightning Address (LUD-16) over LNURL-pay (LUD-06), with comments (LUD-12).

Every user has ``username@host``. A wallet fetches the pay request, then calls back with an
amount; each call mints a fresh invoice whose description hash commits to the metadata.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from lngate.config import Limits
from lngate.domain.errors import (
    AmountOutOfRange,
    InvalidRequest,
    LngateError,
    RateLimited,
    UnknownUser,
)
from lngate.domain.inputs import ascii_uint, check_text
from lngate.services.accounts import require_user
from lngate.services.deposits import Deposits
from lngate.services.ports import UnitOfWork
from lngate.services.rate_limits import RateLimiter

COMMENT_ALLOWED = 255


@dataclass(frozen=True, slots=True)
class PayRequest:
    """A LUD-06 payRequest (``schemas.PayRequest``); ``as_json`` is the wire body."""

    callback: str
    min_sendable_msat: int
    max_sendable_msat: int
    metadata: str
    comment_allowed: int

    def as_json(self) -> dict[str, Any]:
        return {
            "tag": "payRequest",
            "callback": self.callback,
            "minSendable": self.min_sendable_msat,
            "maxSendable": self.max_sendable_msat,
            "metadata": self.metadata,
            "commentAllowed": self.comment_allowed,
        }


@dataclass(frozen=True, slots=True)
class PayRequestInvoice:
    """A LUD-06 callback's answer (``schemas.PayRequestInvoice``): the invoice to pay."""

    pr: str

    def as_json(self) -> dict[str, Any]:
        return {"pr": self.pr, "routes": []}


def metadata(username: str, host: str) -> str:
    """The LUD-06 metadata string; must be byte-identical in both calls (its hash is signed)."""
    address = f"{username}@{host}"
    return json.dumps([["text/plain", f"Pay to {address}"], ["text/identifier", address]])


def parse_amount(raw: str | None) -> int:
    # LUD-06: amount is in millisatoshi, a decimal integer.
    if raw is None:
        raise InvalidRequest("amount must be a positive integer of millisatoshi")
    return ascii_uint(raw, name="amount (millisatoshi)")


class LightningAddresses:
    """``username@public_host`` for every account holder: the pay request behind it, and a
    fresh deposit invoice (from ``deposits``) for each callback; callbacks from the internet
    are limited to ``callbacks_per_minute`` per caller address."""

    def __init__(
        self,
        uow: UnitOfWork,
        deposits: Deposits,
        rate_limiter: RateLimiter,
        *,
        limits: Limits,
        public_url: str,
        public_host: str,
        callbacks_per_minute: int,
    ) -> None:
        self._uow = uow
        self._deposits = deposits
        self._rate_limiter = rate_limiter
        self._limits = limits
        self._public_url = public_url
        self._public_host = public_host
        self._callbacks_per_minute = callbacks_per_minute

    async def lookup(self, username: str) -> PayRequest:
        """LUD-16: the pay request of ``username`` (UnknownUser if nobody has that name)."""
        username = username.lower()
        await self._uow.read(lambda tx: require_user(tx, username))
        return PayRequest(
            callback=f"{self._public_url}/lnurlp/{username}/callback",
            min_sendable_msat=self._limits.deposit_min_msat,
            max_sendable_msat=self._limits.deposit_max_msat,
            metadata=metadata(username, self._public_host),
            comment_allowed=COMMENT_ALLOWED,
        )

    async def callback(
        self,
        username: str,
        amount_raw: str | None,
        comment: str | None,
        *,
        client_address: str | None = None,
    ) -> PayRequestInvoice:
        """Mint an invoice for ``username``. ``client_address``: the caller on the internet,
        whose callbacks are rate-limited (None for our own users paying each other)."""
        username = username.lower()
        amount_msat = parse_amount(amount_raw)
        limits = self._limits
        if not limits.deposit_min_msat <= amount_msat <= limits.deposit_max_msat:
            raise AmountOutOfRange(
                f"amount must be between {limits.deposit_min_msat} and "
                f"{limits.deposit_max_msat} msat"
            )
        if comment is not None:
            check_text(comment, name="comment")
            if len(comment) > COMMENT_ALLOWED:
                raise InvalidRequest(f"comment is longer than {COMMENT_ALLOWED} characters")
        if client_address is not None:
            bucket = f"lnurl-callback:{client_address}"
            await self._rate_limiter.take(bucket, self._callbacks_per_minute)
        description_hash = hashlib.sha256(metadata(username, self._public_host).encode()).digest()
        created = await self._deposits.create_for_username(
            username,
            amount_msat,
            memo=comment or "",
            description_hash=description_hash,
            source="lnurl",
        )
        return PayRequestInvoice(pr=created.bolt11)


def lud_error(exc: LngateError) -> tuple[int, dict[str, str]]:
    """LUD-06 error body; an unknown name is a 404 and a rate limit a 429, other refusals are
    read by wallets from the body (the reference `lnurl` client treats any non-2xx as a
    transport failure)."""
    status = 404 if isinstance(exc, UnknownUser) else 429 if isinstance(exc, RateLimited) else 200
    return status, {"status": "ERROR", "reason": exc.message}
