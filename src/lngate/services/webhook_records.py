"""What the webhook use cases answer: frozen records named field for field as the API's JSON
(``api.webhook_schemas`` validates them as they are)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from lngate.services.accounts import iso_ms
from lngate.store.webhooks import Delivery, Endpoint


@dataclass(frozen=True, slots=True)
class EndpointView:
    id: str
    url: str
    events: tuple[str, ...]
    status: str  # enabled | disabled
    created_at: str
    failing_since: str | None
    disabled_at: str | None

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"events": list(self.events)}


@dataclass(frozen=True, slots=True)
class CreatedEndpoint:
    """A new endpoint and its signing secret: shown this once, stored only encrypted."""

    endpoint: EndpointView
    secret: str


@dataclass(frozen=True, slots=True)
class DeliveryView:
    id: str
    webhook_id: str  # the webhook-id header: the same on every attempt
    event_type: str
    status: str  # pending | succeeded | failed
    attempts: int
    created_at: str
    next_attempt_at: str | None
    delivered_at: str | None
    last_status_code: int | None
    last_error: str | None


@dataclass(frozen=True, slots=True)
class DeliveryPage:
    deliveries: tuple[DeliveryView, ...]
    next_cursor: str | None


def endpoint_view(e: Endpoint) -> EndpointView:
    return EndpointView(
        id=e.id,
        url=e.url,
        events=e.events,
        status=e.status,
        created_at=iso_ms(e.created_at_ms),
        failing_since=None if e.failing_since_ms is None else iso_ms(e.failing_since_ms),
        disabled_at=None if e.disabled_at_ms is None else iso_ms(e.disabled_at_ms),
    )


def delivery_view(d: Delivery) -> DeliveryView:
    return DeliveryView(
        id=d.id,
        webhook_id=d.message_id,
        event_type=d.event_type,
        status=d.status,
        attempts=d.attempts,
        created_at=iso_ms(d.committed_at_ms),
        next_attempt_at=(
            None
            if d.status != "pending" or d.next_attempt_at_ms is None
            else iso_ms(d.next_attempt_at_ms)
        ),
        delivered_at=None if d.delivered_at_ms is None else iso_ms(d.delivered_at_ms),
        last_status_code=d.last_status_code,
        last_error=d.last_error,
    )
