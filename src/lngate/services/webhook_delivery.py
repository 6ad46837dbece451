"""Handing the webhook outbox to a sender: claim what is due (one attempt each, under a lease),
then record how each attempt went, schedule the next one, and disable an endpoint that has
failed for 24 hours (audited, told on the merchant's event stream)."""

from __future__ import annotations

from dataclasses import dataclass

from lngate.domain import webhooks as rules
from lngate.security.secrets import ServerKey
from lngate.services.accounts import iso_ms
from lngate.services.ports import Clock, UnitOfWork
from lngate.services.webhooks import secret_context
from lngate.store import audit, events
from lngate.store import webhooks as store
from lngate.store.db import Tx
from lngate.store.webhooks import Delivery

SENDER = "system:webhook_sender"


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One attempt to make: the delivery as claimed, where it goes and the key to sign with."""

    delivery: Delivery
    url: str
    secret: str


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    started_ms: int
    duration_ms: int
    status_code: int | None  # None: no HTTP answer (refused, timeout, connection error)
    error: str | None

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass(frozen=True, slots=True)
class Recorded:
    succeeded: bool
    next_attempt_at_ms: int | None  # None once succeeded or failed for good
    endpoint_disabled: bool
    stale: bool  # the claim was overtaken (redelivered, deleted): nothing was recorded


class WebhookDispatch:
    def __init__(self, uow: UnitOfWork, clock: Clock, server_key: ServerKey) -> None:
        self._uow = uow
        self._clock = clock
        self._key = server_key

    def now_ms(self) -> int:
        return self._clock.now_ms()

    async def claim(self, limit: int, *, lease_ms: int) -> list[Outgoing]:
        """Up to ``limit`` due deliveries, each leased to this caller for one attempt: another
        sender (process) takes none of them until the lease runs out."""
        now = self._clock.now_ms()
        # The sender looks after every commit of its process: most find nothing due, and a
        # read costs far less than the write transaction a claim is.
        if not await self._uow.read(lambda tx: store.any_due(tx, now)):
            return []

        def write(tx: Tx) -> list[Outgoing]:
            claimed = store.claim_due(tx, now, lease_ms, limit)
            outgoing = []
            for delivery in claimed:
                endpoint = store.endpoint_by_id(tx, delivery.endpoint_id)
                if endpoint is None:
                    continue
                secret = self._key.decrypt(
                    endpoint.secret_encrypted, context=secret_context(endpoint.id)
                ).decode()
                outgoing.append(Outgoing(delivery, endpoint.url, secret))
            return outgoing

        return await self._uow.write(write)

    async def record(self, outgoing: Outgoing, outcome: AttemptOutcome) -> Recorded:
        delivery = outgoing.delivery
        finished_ms = outcome.started_ms + outcome.duration_ms
        if outcome.succeeded:
            next_at: int | None = None
        else:
            # The schedule counts from each attempt's start (a slow receiver does not stretch
            # it), and never lets the next attempt start before this one ended.
            delay_s = rules.next_delay_s(delivery.attempts)
            next_at = (
                None if delay_s is None else max(outcome.started_ms + delay_s * 1000, finished_ms)
            )

        def write(tx: Tx) -> Recorded:
            recorded = store.record_attempt(
                tx,
                delivery,
                at_ms=outcome.started_ms,
                duration_ms=outcome.duration_ms,
                status_code=outcome.status_code,
                error=outcome.error,
                next_attempt_at_ms=next_at,
                succeeded=outcome.succeeded,
            )
            if not recorded:
                return Recorded(outcome.succeeded, None, endpoint_disabled=False, stale=True)
            failing_since = store.note_endpoint_health(
                tx, delivery.endpoint_id, ok=outcome.succeeded, now_ms=finished_ms
            )
            disabled = (
                failing_since is not None
                and finished_ms - failing_since >= rules.DISABLE_AFTER_FAILING_MS
                and self._disable(tx, delivery.endpoint_id, failing_since, finished_ms)
            )
            return Recorded(outcome.succeeded, next_at, endpoint_disabled=disabled, stale=False)

        return await self._uow.write(write)

    def _disable(self, tx: Tx, endpoint_id: str, failing_since_ms: int, now_ms: int) -> bool:
        if not store.disable_endpoint(tx, endpoint_id, now_ms):
            return False
        endpoint = store.endpoint_by_id(tx, endpoint_id)
        if endpoint is None:
            return False
        failing_since = iso_ms(failing_since_ms)
        audit.append(
            tx,
            actor=SENDER,
            action="webhook.disable",
            subject=f"webhook:{endpoint_id}",
            reason="every delivery failed for 24 hours",
            details={"url": endpoint.url, "failing_since": failing_since},
        )
        events.append(
            tx,
            endpoint.merchant_user_id,
            "webhook.disabled",
            {"id": endpoint_id, "url": endpoint.url, "failing_since": failing_since},
        )
        return True
