"""Lightning Address (LUD-16) over LNURL-pay (LUD-06), with comments (LUD-12).

Every user has ``username@host``. A wallet fetches the pay request, then calls back with an
amount; each call mints a fresh invoice whose description hash commits to the metadata.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from lngate.bootstrap import Core
from lngate.config import Config
from lngate.domain.errors import (
    AmountOutOfRange,
    InvalidRequest,
    LngateError,
    RateLimited,
    UnknownUser,
)
from lngate.domain.inputs import ascii_uint, check_text
from lngate.lightning.node import Node
from lngate.services import deposits, rate_limits
from lngate.services.accounts import require_user

COMMENT_ALLOWED = 255


def metadata(username: str, host: str) -> str:
    """The LUD-06 metadata string; must be byte-identical in both calls (its hash is signed)."""
    address = f"{username}@{host}"
    return json.dumps([["text/plain", f"Pay to {address}"], ["text/identifier", address]])


def pay_request(config: Config, username: str) -> dict[str, Any]:
    limits = config.limits
    return {
        "tag": "payRequest",
        "callback": f"{config.effective_public_url}/lnurlp/{username}/callback",
        "minSendable": limits.deposit_min_msat,
        "maxSendable": limits.deposit_max_msat,
        "metadata": metadata(username, config.public_host),
        "commentAllowed": COMMENT_ALLOWED,
    }


async def lookup(core: Core, username: str) -> dict[str, Any]:
    await core.read(lambda tx: require_user(tx, username.lower()))
    return pay_request(core.config, username.lower())


def parse_amount(raw: str | None) -> int:
    # LUD-06: amount is in millisatoshi, a decimal integer.
    if raw is None:
        raise InvalidRequest("amount must be a positive integer of millisatoshi")
    return ascii_uint(raw, name="amount (millisatoshi)")


async def callback(
    core: Core,
    node: Node,
    username: str,
    amount_raw: str | None,
    comment: str | None,
    *,
    client_address: str | None = None,
) -> dict[str, Any]:
    """Mint an invoice for ``username``. ``client_address``: the caller on the internet, whose
    callbacks are rate-limited (None for our own users paying each other)."""
    username = username.lower()
    amount_msat = parse_amount(amount_raw)
    limits = core.config.limits
    if not limits.deposit_min_msat <= amount_msat <= limits.deposit_max_msat:
        raise AmountOutOfRange(
            f"amount must be between {limits.deposit_min_msat} and {limits.deposit_max_msat} msat"
        )
    if comment is not None:
        check_text(comment, name="comment")
        if len(comment) > COMMENT_ALLOWED:
            raise InvalidRequest(f"comment is longer than {COMMENT_ALLOWED} characters")
    if client_address is not None:
        bucket = f"lnurl-callback:{client_address}"
        await rate_limits.take(core, bucket, core.config.lnurl_callbacks_per_minute)
    user = await core.read(lambda tx: require_user(tx, username))
    description_hash = hashlib.sha256(metadata(username, core.config.public_host).encode()).digest()
    created = await deposits.create_deposit(
        core,
        node,
        user.id,
        amount_msat,
        memo=comment or "",
        description_hash=description_hash,
        source="lnurl",
    )
    return {"pr": created["bolt11"], "routes": []}


def lud_error(exc: LngateError) -> tuple[int, dict[str, str]]:
    """LUD-06 error body; an unknown name is a 404 and a rate limit a 429, other refusals are
    read by wallets from the body (the reference `lnurl` client treats any non-2xx as a
    transport failure)."""
    status = 404 if isinstance(exc, UnknownUser) else 429 if isinstance(exc, RateLimited) else 200
    return status, {"status": "ERROR", "reason": exc.message}
