"""Pay's rules, pure: order and refund states, the checks of an order request, the fee.

An order is ``open`` until it is ``paid`` (over Lightning or from an lngate balance),
``expired`` or ``cancelled``; a paid one becomes ``refunded`` once its refunds reach its amount.
Only an open order is ever credited.
"""

from __future__ import annotations

import base64
import enum
import json
import re
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from lngate.domain.errors import InvalidRequest
from lngate.domain.inputs import check_invoice_description, check_text
from lngate.domain.money import parse_amount_msat

MERCHANT_ORDER_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
ORDER_ID = re.compile(r"ord_[a-z2-7]{26}")
METADATA_MAX_BYTES = 4096
REDIRECT_URL_MAX_CHARS = 2048
REASON_MAX_CHARS = 500
PPM = 1_000_000


class OrderStatus(enum.StrEnum):
    OPEN = "open"
    PAID = "paid"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"


class HtlcState(enum.StrEnum):
    """What the node still has to be told about an order's invoice (see 0011_orders.sql)."""

    NONE = "none"
    TO_SETTLE = "to_settle"
    SETTLED = "settled"
    TO_CANCEL = "to_cancel"
    CANCELLED = "cancelled"
    LOST = "lost"  # credited, but the node gave the held HTLC back: an operator must look


class PaidVia(enum.StrEnum):
    LIGHTNING = "lightning"
    BALANCE = "balance"


class RefundStatus(enum.StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class OrderTerms:
    """A checked order request: what the merchant asked for, in canonical form."""

    merchant_order_id: str
    amount_msat: int
    description: str
    expires_in_s: int
    redirect_url: str | None
    metadata: dict[str, Any]

    def canonical_json(self) -> str:
        """The body an order id is bound to: the same id with another body is refused."""
        return json.dumps(
            {
                "merchant_order_id": self.merchant_order_id,
                "amount_msat": self.amount_msat,
                "description": self.description,
                "expires_in_s": self.expires_in_s,
                "redirect_url": self.redirect_url,
                "metadata": self.metadata,
            },
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )


def new_order_id() -> str:
    """``ord_`` + 26 base32 characters: 130 bits, unguessable (the checkout page is public)."""
    return "ord_" + base64.b32encode(secrets.token_bytes(17)).decode().lower().rstrip("=")[:26]


def new_refund_id() -> str:
    return "rfd_" + base64.b32encode(secrets.token_bytes(15)).decode().lower()


def check_merchant_order_id(value: Any) -> str:
    if not isinstance(value, str) or MERCHANT_ORDER_ID.fullmatch(value) is None:
        raise InvalidRequest("merchant_order_id must be 1 to 64 of A-Z, a-z, 0-9, '_' and '-'")
    return value


def check_redirect_url(value: Any) -> str | None:
    """An absolute http(s) URL the checkout page links to once paid (never a script URL)."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > REDIRECT_URL_MAX_CHARS:
        raise InvalidRequest(
            f"redirect_url must be a URL of at most {REDIRECT_URL_MAX_CHARS} chars"
        )
    check_text(value, name="redirect_url")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest("redirect_url must be an absolute http or https URL")
    if any(ch.isspace() or ord(ch) < 0x20 for ch in value):
        raise InvalidRequest("redirect_url must not contain whitespace or control characters")
    return value


def check_metadata(value: Any) -> dict[str, Any]:
    """A JSON object of at most 4 KiB (as compact UTF-8), echoed back untouched."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequest("metadata must be a JSON object")
    try:
        encoded = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidRequest("metadata must be plain JSON") from exc
    if "\x00" in encoded or "\\u0000" in encoded:
        raise InvalidRequest("metadata must not contain NUL characters")
    if len(encoded.encode("utf-8", "surrogatepass")) > METADATA_MAX_BYTES:
        raise InvalidRequest(f"metadata must be at most {METADATA_MAX_BYTES} bytes of JSON")
    try:
        encoded.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRequest("metadata must be valid UTF-8 text") from exc
    loaded: dict[str, Any] = json.loads(encoded)
    return loaded


def check_reason(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > REASON_MAX_CHARS:
        raise InvalidRequest(f"reason must be text of at most {REASON_MAX_CHARS} characters")
    return check_text(value, name="reason")


def check_terms(
    *,
    merchant_order_id: Any,
    amount_msat: Any,
    description: Any,
    expires_in_s: Any,
    redirect_url: Any,
    metadata: Any,
    expiry_default_s: int,
    expiry_min_s: int,
    expiry_max_s: int,
) -> OrderTerms:
    """Every check of an order request that needs no database, in the order a client fixes
    them; the first failure is the error."""
    order_id = check_merchant_order_id(merchant_order_id)
    amount = parse_amount_msat(amount_msat)
    if description is None:
        description = ""
    if not isinstance(description, str):
        raise InvalidRequest("description must be text")
    check_invoice_description(description, name="description")
    try:
        description.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRequest("description must be valid UTF-8 text") from exc
    if expires_in_s is None:
        expires_in_s = expiry_default_s
    if isinstance(expires_in_s, bool) or not isinstance(expires_in_s, int):
        raise InvalidRequest("expires_in_s must be an integer number of seconds")
    if not expiry_min_s <= expires_in_s <= expiry_max_s:
        raise InvalidRequest(f"expires_in_s must be between {expiry_min_s} and {expiry_max_s}")
    return OrderTerms(
        merchant_order_id=order_id,
        amount_msat=amount,
        description=description,
        expires_in_s=expires_in_s,
        redirect_url=check_redirect_url(redirect_url),
        metadata=check_metadata(metadata),
    )


def merchant_fee_msat(amount_msat: int, fee_ppm: int) -> int:
    """The exchange's cut of an order, rounded down (never more than the amount)."""
    return min(amount_msat, amount_msat * fee_ppm // PPM)
