"""The webhooks' HTTP contract (see ``api.schemas``' conventions: responses validate from the
use cases' frozen records and refuse undeclared keys)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from lngate.api.schemas import _Request, _Response, _timestamp
from lngate.domain.webhooks import URL_MAX_CHARS

WebhookEvent = Literal[
    "order.paid", "order.expired", "order.cancelled", "refund.succeeded", "refund.failed"
]


class WebhookRequest(_Request):
    # Shapes are checked by the use case (one message per mistake) and shown here.
    url: str = Field(
        max_length=URL_MAX_CHARS,
        description="an https URL of a public host",
        examples=["https://shop.example/lngate-webhook"],
    )
    events: list[str] = Field(
        min_length=1,
        description="order.paid, order.expired, order.cancelled, refund.succeeded, "
        "refund.failed (each at most once)",
        examples=[["order.paid", "refund.succeeded"]],
    )


class WebhookEndpoint(_Response):
    id: str
    url: str
    events: list[WebhookEvent]
    status: Literal["enabled", "disabled"]
    created_at: str = _timestamp()
    failing_since: str | None = _timestamp("when its current run of failed deliveries began")
    disabled_at: str | None = _timestamp()


class CreatedWebhookEndpoint(WebhookEndpoint):
    secret: str = Field(
        description="whsec_ + base64: the Standard Webhooks signing secret, shown only now"
    )


class WebhookEndpointList(_Response):
    webhooks: list[WebhookEndpoint]


class WebhookDelivery(_Response):
    id: str
    webhook_id: str = Field(description="the webhook-id header, the same on every attempt")
    event_type: WebhookEvent
    status: Literal["pending", "succeeded", "failed"]
    attempts: int
    created_at: str = _timestamp()
    next_attempt_at: str | None = _timestamp()
    delivered_at: str | None = _timestamp()
    last_status_code: int | None
    last_error: str | None


class WebhookDeliveryPage(_Response):
    deliveries: list[WebhookDelivery]
    next_cursor: str | None
