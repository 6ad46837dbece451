"""The webhook outbox: an event a merchant is told about is written in the transaction of the
change it announces, so nothing is sent for a change that did not commit and nothing committed
goes untold. ``workers.webhook_sender`` delivers the rows."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from lngate.domain.errors import InvariantBroken
from lngate.domain.webhooks import EVENTS as WEBHOOK_EVENTS
from lngate.store import events, webhooks
from lngate.store.db import Tx


def new_message_id() -> str:
    """The ``webhook-id`` of one event to one endpoint: the same on every attempt."""
    return "msg_" + secrets.token_urlsafe(18)


def iso_timestamp(at_ms: int) -> str:
    return datetime.fromtimestamp(at_ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


def announce(
    tx: Tx, merchant_user_id: str, event_type: str, data: Mapping[str, Any], *, now_ms: int
) -> None:
    """In the caller's transaction: the merchant's account event (``GET /v1/events``) and one
    delivery per enabled endpoint subscribed to ``event_type``, its body serialized once (the
    bytes signed and sent on every attempt), due now."""
    if event_type not in WEBHOOK_EVENTS:
        raise InvariantBroken(f"not a webhook event: {event_type}")
    events.append(tx, merchant_user_id, event_type, dict(data))
    body: str | None = None
    for endpoint_id in webhooks.subscribed_endpoints(tx, merchant_user_id, event_type):
        if body is None:
            payload = {"type": event_type, "timestamp": iso_timestamp(now_ms), "data": data}
            body = orjson.dumps(payload).decode()
        webhooks.insert_delivery(
            tx,
            delivery_id="dlv_" + secrets.token_urlsafe(12),
            endpoint_id=endpoint_id,
            message_id=new_message_id(),
            event_type=event_type,
            body=body,
            now_ms=now_ms,
        )
