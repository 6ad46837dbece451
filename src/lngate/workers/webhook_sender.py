"""The webhook sender: delivers the outbox, signed per the Standard Webhooks specification.

Woken at once when this process commits (a paid order's webhook leaves within milliseconds),
and polling otherwise (other processes' commits, retries coming due). Each attempt is claimed
under a lease first, so several senders never make one attempt twice at once; a sender that
dies mid-attempt leaves a lease that runs out, and the delivery is tried again: at least once,
with the same ``webhook-id``. Redirects are not followed, answers are read up to a cap, and the
URL is checked against the SSRF rules again before every attempt.
"""

from __future__ import annotations

import asyncio
import logging
import time

import httpx
from prometheus_client import Counter, Histogram

from lngate.domain.errors import LngateError
from lngate.domain.webhooks import signed_headers
from lngate.services.ports import Wakeup
from lngate.services.webhook_delivery import AttemptOutcome, Outgoing, WebhookDispatch
from lngate.services.webhooks import check_webhook_url

log = logging.getLogger(__name__)

USER_AGENT = "lngate-webhooks/1"
BATCH = 64
CONCURRENCY = 32
ERROR_MAX_CHARS = 300
MIN_GAP_S = 0.01


class WebhookSender:
    def __init__(
        self,
        dispatch: WebhookDispatch,
        wakeup: Wakeup,
        *,
        timeout_s: float,
        max_response_bytes: int,
        allow_private_hosts: bool,
        latency: Histogram | None = None,
        disabled: Counter | None = None,
        poll_interval_s: float = 1.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._dispatch = dispatch
        self._wakeup = wakeup
        self._timeout_s = timeout_s
        self._max_response_bytes = max_response_bytes
        self._allow_private = allow_private_hosts
        self._latency = latency
        self._disabled = disabled
        self._poll_interval_s = poll_interval_s
        # An attempt outlives its HTTP timeout by its SSRF check and bookkeeping: the lease
        # leaves room for both, so it never runs out under a sender still at work.
        self._lease_ms = int((2 * timeout_s + 30) * 1000)
        self._slots = asyncio.Semaphore(CONCURRENCY)
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s),
            follow_redirects=False,
            trust_env=False,  # no proxy from the environment between us and the receiver
            transport=transport,
            headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
        )

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                try:
                    sent = await self.send_once()
                except Exception:  # a database outage: keep going
                    log.exception("webhook sending failed")
                    sent = 0
                if sent < BATCH:
                    await self._wakeup.wait(self._poll_interval_s)
                    # A busy exchange commits hundreds of times a second: look at most every
                    # MIN_GAP_S (a webhook's latency budget is far larger).
                    await asyncio.sleep(MIN_GAP_S)
        finally:
            await self._http.aclose()

    async def send_once(self) -> int:
        """One batch of due deliveries, attempted concurrently; how many were attempted."""
        claimed = await self._dispatch.claim(BATCH, lease_ms=self._lease_ms)
        if claimed:
            await asyncio.gather(*(self._deliver(outgoing) for outgoing in claimed))
        return len(claimed)

    async def _deliver(self, outgoing: Outgoing) -> None:
        async with self._slots:
            outcome = await self.attempt(outgoing)
        recorded = await self._dispatch.record(outgoing, outcome)
        delivery = outgoing.delivery
        if recorded.succeeded and not recorded.stale and self._latency is not None:
            finished_ms = outcome.started_ms + outcome.duration_ms
            self._latency.observe(max(0, finished_ms - delivery.committed_at_ms) / 1000)
        if recorded.endpoint_disabled:
            log.warning("webhook endpoint %s disabled after 24 h of failures", delivery.endpoint_id)
            if self._disabled is not None:
                self._disabled.inc()
        if not recorded.succeeded:
            log.info(
                "webhook %s attempt %d to %s failed: %s",
                delivery.id,
                delivery.attempts,
                delivery.endpoint_id,
                outcome.error or f"HTTP {outcome.status_code}",
            )

    async def attempt(self, outgoing: Outgoing) -> AttemptOutcome:
        started_ms = self._dispatch.now_ms()
        started = time.monotonic()

        def outcome(status_code: int | None, error: str | None) -> AttemptOutcome:
            duration_ms = int((time.monotonic() - started) * 1000)
            clipped = None if error is None else error[:ERROR_MAX_CHARS]
            return AttemptOutcome(started_ms, duration_ms, status_code, clipped)

        try:
            await check_webhook_url(outgoing.url, allow_private=self._allow_private)
        except LngateError as exc:
            return outcome(None, f"refused: {exc}")
        body = outgoing.delivery.body.encode()
        headers = dict(
            signed_headers(outgoing.secret, outgoing.delivery.message_id, started_ms // 1000, body)
        )
        headers["Content-Type"] = "application/json"
        try:
            async with asyncio.timeout(self._timeout_s):
                async with self._http.stream(
                    "POST", outgoing.url, content=body, headers=headers
                ) as response:
                    answer = await self._read_capped(response)
        except TimeoutError:
            return outcome(None, f"no answer within {self._timeout_s:g} s")
        except (httpx.HTTPError, httpx.InvalidURL, UnicodeError) as exc:
            return outcome(None, f"{type(exc).__name__}: {exc}")
        if 200 <= response.status_code < 300:
            return outcome(response.status_code, None)
        if response.is_redirect:
            return outcome(response.status_code, "redirects are not followed")
        excerpt = answer.decode("utf-8", "replace").strip()
        return outcome(response.status_code, f"HTTP {response.status_code}: {excerpt}")

    async def _read_capped(self, response: httpx.Response) -> bytes:
        """At most ``max_response_bytes`` of the answer: a receiver cannot make us read more."""
        kept = bytearray()
        async for chunk in response.aiter_raw():
            kept += chunk[: self._max_response_bytes - len(kept)]
            if len(kept) >= self._max_response_bytes:
                break
        return bytes(kept)
