"""Webhooks as the Standard Webhooks specification defines them (standardwebhooks.com): the
endpoint secret, the signature of one message, and when a failed delivery is tried again.

A secret is ``whsec_`` + base64 of random bytes; the HMAC key is those bytes. A message is
signed over ``{webhook-id}.{webhook-timestamp}.{body}`` (the timestamp in integer seconds) with
HMAC-SHA256, sent as ``webhook-signature: v1,<base64>``: receivers verify it with the
specification's reference libraries.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping

from lngate.domain.errors import InvalidRequest

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # the specification asks for 24 to 64
ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"

EVENTS = (
    "order.paid",
    "order.expired",
    "order.cancelled",
    "refund.succeeded",
    "refund.failed",
)

# Seconds from the commit to each attempt's start, after the one before it failed: seven tries
# over about 31 hours, then the delivery has failed for good (a merchant may redeliver it).
RETRY_DELAYS_S = (0, 5, 60, 600, 3600, 6 * 3600, 24 * 3600)
DISABLE_AFTER_FAILING_MS = 24 * 3600 * 1000  # an endpoint failing this long is disabled

URL_MAX_CHARS = 2048
ENDPOINTS_PER_MERCHANT_MAX = 16


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("not a whsec_ secret")
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)


def signature(secret: str, message_id: str, timestamp_s: int, body: bytes) -> str:
    """The ``webhook-signature`` header value of one message."""
    signed = f"{message_id}.{timestamp_s}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(
    secret: str, message_id: str, timestamp_s: int, body: bytes
) -> Mapping[str, str]:
    return {
        ID_HEADER: message_id,
        TIMESTAMP_HEADER: str(timestamp_s),
        SIGNATURE_HEADER: signature(secret, message_id, timestamp_s, body),
    }


def next_delay_s(attempts_made: int) -> int | None:
    """The wait before the next attempt once ``attempts_made`` have failed; None: no more."""
    if attempts_made < 1:
        raise ValueError("attempts_made counts from 1")
    if attempts_made >= len(RETRY_DELAYS_S):
        return None
    return RETRY_DELAYS_S[attempts_made]


def check_events(events: object) -> tuple[str, ...]:
    """The subscribed event types: a non-empty list of known ones, each once, in order given."""
    if not isinstance(events, list | tuple) or not events:
        raise InvalidRequest(f"events must be a non-empty list of: {', '.join(EVENTS)}")
    seen: list[str] = []
    for event in events:
        if not isinstance(event, str) or event not in EVENTS:
            raise InvalidRequest(
                f"unknown event {str(event)[:64]!r}; events are: {', '.join(EVENTS)}"
            )
        if event in seen:
            raise InvalidRequest(f"event {event!r} is listed twice")
        seen.append(event)
    return tuple(seen)
