"""A merchant's webhook endpoints: create (the secret shown once), list, delete, the delivery
log and redelivery. Deliveries themselves: ``services.webhook_delivery``."""

from __future__ import annotations

import secrets
from typing import TypeVar
from urllib.parse import urlsplit

from lngate.config import PayPolicy
from lngate.domain import webhooks as rules
from lngate.domain.errors import (
    DestinationNotAllowed,
    InvalidRequest,
    LnurlFailed,
    NotAMerchant,
    NotFound,
)
from lngate.domain.users import Role
from lngate.security.secrets import ServerKey
from lngate.services.accounts import require_user
from lngate.services.lnurl_client import check_destination
from lngate.services.ports import Clock, UnitOfWork
from lngate.services.webhook_records import (
    CreatedEndpoint,
    DeliveryPage,
    DeliveryView,
    EndpointView,
    delivery_view,
    endpoint_view,
)
from lngate.store import audit
from lngate.store import webhooks as store
from lngate.store.db import Tx
from lngate.store.webhooks import Endpoint

DELIVERY_PAGE_MAX = 200
T = TypeVar("T")


def secret_context(endpoint_id: str) -> bytes:
    """The AEAD context of an endpoint's stored secret: a blob moved to another row fails."""
    return b"webhook-secret:" + endpoint_id.encode()


async def check_webhook_url(url: str, *, allow_private: bool) -> None:
    """An https URL of a public host, as for Lightning Addresses (any http(s) when
    ``allow_private``, for development and tests). Checked on creation and before every attempt
    (the name may point elsewhere by then)."""
    if not url or len(url) > rules.URL_MAX_CHARS:
        raise InvalidRequest(f"url must be 1 to {rules.URL_MAX_CHARS} characters")
    if not url.isascii() or not url.isprintable() or " " in url:
        raise InvalidRequest("url must be printable ASCII without spaces")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise InvalidRequest(f"url is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest("url must be an http(s) URL with a host")
    if parts.username is not None or parts.password is not None:
        raise InvalidRequest("url must not carry credentials: verify the signature instead")
    if parts.fragment:
        raise InvalidRequest("url must not have a #fragment")
    if not allow_private and parts.scheme != "https":
        raise DestinationNotAllowed("webhook URLs must be https")
    try:
        await check_destination(url, allow_private=allow_private)
    except DestinationNotAllowed as exc:
        raise DestinationNotAllowed(f"webhook url: {exc}") from None
    except LnurlFailed:
        raise InvalidRequest(f"webhook url: cannot resolve {parts.hostname!r}") from None


class WebhookEndpoints:
    def __init__(
        self, uow: UnitOfWork, clock: Clock, server_key: ServerKey, policy: PayPolicy
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._key = server_key
        self._policy = policy

    async def create(self, merchant_id: str, url: str, events: object) -> CreatedEndpoint:
        subscribed = rules.check_events(events)
        await check_webhook_url(url, allow_private=self._policy.webhook_allow_private_hosts)
        endpoint_id = "whe_" + secrets.token_urlsafe(12)
        secret = rules.new_secret()
        sealed = self._key.encrypt(secret.encode(), context=secret_context(endpoint_id))
        now = self._clock.now_ms()

        def write(tx: Tx) -> EndpointView:
            if len(store.endpoints_of(tx, merchant_id)) >= rules.ENDPOINTS_PER_MERCHANT_MAX:
                raise InvalidRequest(
                    f"a merchant has at most {rules.ENDPOINTS_PER_MERCHANT_MAX} webhook "
                    "endpoints; delete one first"
                )
            store.insert_endpoint(
                tx,
                endpoint_id=endpoint_id,
                merchant_user_id=merchant_id,
                url=url,
                events=subscribed,
                secret_encrypted=sealed,
                now_ms=now,
            )
            audit.append(
                tx,
                actor=f"user:{merchant_id}",
                action="webhook.create",
                subject=f"webhook:{endpoint_id}",
                reason="created by the merchant",
                details={"url": url, "events": list(subscribed)},
            )
            return endpoint_view(_found(store.endpoint_by_id(tx, endpoint_id)))

        return CreatedEndpoint(endpoint=await self._uow.write(write), secret=secret)

    async def list(self, merchant_id: str) -> tuple[EndpointView, ...]:
        def read(tx: Tx) -> tuple[EndpointView, ...]:
            return tuple(endpoint_view(e) for e in store.endpoints_of(tx, merchant_id))

        return await self._uow.read(read)

    def list_sync(self, username: str) -> tuple[EndpointView, ...]:
        """``lngate merchant webhooks USERNAME``."""

        def read(tx: Tx) -> tuple[EndpointView, ...]:
            merchant = require_user(tx, username)
            if merchant.role is not Role.MERCHANT:
                raise NotAMerchant(f"{username} is not a merchant")
            return tuple(endpoint_view(e) for e in store.endpoints_of(tx, merchant.id))

        return self._uow.read_sync(read)

    async def delete(self, merchant_id: str, endpoint_id: str) -> None:
        """Nothing more is sent to it; what was still due is dropped (failed)."""

        def write(tx: Tx) -> None:
            _owned(tx, merchant_id, endpoint_id)
            store.delete_endpoint(tx, endpoint_id)
            audit.append(
                tx,
                actor=f"user:{merchant_id}",
                action="webhook.delete",
                subject=f"webhook:{endpoint_id}",
                reason="deleted by the merchant",
            )

        await self._uow.write(write)

    async def deliveries(
        self, merchant_id: str, endpoint_id: str, *, cursor: int | None, limit: int
    ) -> DeliveryPage:
        """The endpoint's deliveries, newest first."""
        if not 1 <= limit <= DELIVERY_PAGE_MAX:
            raise InvalidRequest(f"limit must be between 1 and {DELIVERY_PAGE_MAX}")

        def read(tx: Tx) -> DeliveryPage:
            _owned(tx, merchant_id, endpoint_id)
            rows = store.deliveries_of(tx, endpoint_id, before_seq=cursor, limit=limit + 1)
            more = len(rows) > limit
            rows = rows[:limit]
            return DeliveryPage(
                deliveries=tuple(delivery_view(d) for d in rows),
                next_cursor=str(rows[-1].seq) if more and rows else None,
            )

        return await self._uow.read(read)

    async def redeliver(self, merchant_id: str, endpoint_id: str, delivery_id: str) -> DeliveryView:
        """Due again now with a fresh schedule, the same ``webhook-id`` and body. One that is
        still pending is left as it is (it is tried anyway)."""
        now = self._clock.now_ms()

        def write(tx: Tx) -> DeliveryView:
            endpoint = _owned(tx, merchant_id, endpoint_id)
            if endpoint.status != "enabled":
                raise InvalidRequest("this endpoint is disabled: create a new one")
            delivery = store.delivery_by_id(tx, delivery_id)
            if delivery is None or delivery.endpoint_id != endpoint_id:
                raise NotFound("no such delivery of this endpoint")
            store.redeliver(tx, delivery_id, now)
            return delivery_view(_found(store.delivery_by_id(tx, delivery_id)))

        return await self._uow.write(write)


def _owned(tx: Tx, merchant_id: str, endpoint_id: str) -> Endpoint:
    endpoint = store.endpoint_by_id(tx, endpoint_id)
    if endpoint is None or endpoint.merchant_user_id != merchant_id or endpoint.status == "deleted":
        raise NotFound("no such webhook endpoint")
    return endpoint


def _found(value: T | None) -> T:
    if value is None:
        raise NotFound("it vanished inside its own transaction")
    return value
