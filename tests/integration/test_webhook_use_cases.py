"""Webhooks through the use cases and the sender, with a fixed clock and a real receiver on a
loopback socket: signed per Standard Webhooks (verified with its reference library), written
in the transaction of the change, retried on a schedule with the same webhook-id, and an
endpoint that fails for 24 hours disabled."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import orjson
import pytest
from standardwebhooks import Webhook

from lngate.bootstrap import Core, UseCases, accounts_for, use_cases
from lngate.config import Config, PayPolicy
from lngate.domain import webhooks as rules
from lngate.domain.errors import DestinationNotAllowed, InsufficientFunds, InvalidRequest, NotFound
from lngate.lightning.simnet import SimnetNetwork, SimnetNode
from lngate.services.accounts import iso_ms
from lngate.services.clock import FixedClock
from lngate.store import audit, events, users
from lngate.store.users import Role, User
from lngate.workers.webhook_sender import WebhookSender
from tests.conftest import started_core
from tests.webhook_receiver import Receiver, webhook_receiver

HOUR_MS = 3600 * 1000


@dataclasses.dataclass
class Pay:
    core: Core
    clock: FixedClock
    cases: UseCases
    sender: WebhookSender
    merchant: User
    alice: User
    t0_ms: int  # the clock's start: now, to the second (receivers refuse a timestamp 5 min off)

    async def paid_order(self, merchant_order_id: str, amount_msat: int = 10_000) -> str:
        made = await self.cases.orders.create(
            self.merchant.id, merchant_order_id=merchant_order_id, amount_msat=amount_msat
        )
        await self.cases.orders.pay_from_balance(
            self.alice.id, made.order.id, idempotency=(merchant_order_id, "h")
        )
        return made.order.id

    async def deliveries(self, endpoint_id: str) -> list[dict[str, object]]:
        page = await self.cases.webhooks.deliveries(
            self.merchant.id, endpoint_id, cursor=None, limit=50
        )
        return [dataclasses.asdict(d) for d in page.deliveries]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with webhook_receiver() as r:
        yield r


@pytest.fixture
def pay(config: Config) -> Iterator[Pay]:
    config = dataclasses.replace(config, pay=PayPolicy(webhook_allow_private_hosts=True))
    with started_core(config) as core:
        t0_ms = int(time.time()) * 1000
        clock = FixedClock(t0_ms)
        core.clock = clock
        network = SimnetNetwork(config.simnet_dir, clock_ms=clock.now_ms)
        cases = use_cases(core, SimnetNode(network))
        sender = WebhookSender(
            cases.webhook_dispatch,
            core.commits,
            timeout_s=2.0,
            max_response_bytes=1024,
            allow_private_hosts=True,
            latency=core.metrics.webhook_latency,
            disabled=core.metrics.webhook_endpoints_disabled,
        )
        merchant = core.uow.write_sync(lambda tx: users.insert_user(tx, "shop", Role.MERCHANT))
        alice = core.uow.write_sync(lambda tx: users.insert_user(tx, "alice", Role.USER))
        accounts_for(core).adjust_sync("alice", 1_000_000, reason="test", actor="test")
        try:
            yield Pay(core, clock, cases, sender, merchant, alice, t0_ms)
        finally:
            network.close()


async def test_a_paid_order_is_delivered_signed_per_standard_webhooks(
    pay: Pay, receiver: Receiver
) -> None:
    made = await pay.cases.webhooks.create(pay.merchant.id, receiver.url, ["order.paid"])
    assert made.secret.startswith("whsec_")
    assert len(base64.b64decode(made.secret.removeprefix("whsec_"))) >= 24
    assert (made.endpoint.status, made.endpoint.events) == ("enabled", ("order.paid",))
    order_id = await pay.paid_order("cart-1")

    assert await pay.sender.send_once() == 1
    (got,) = receiver.received
    payload = Webhook(made.secret).verify(got.body, got.headers)  # raises if the signature is off
    assert payload["type"] == "order.paid" and payload["data"]["id"] == order_id
    assert payload["data"]["status"] == "paid" and payload["data"]["paid_via"] == "balance"
    assert payload["timestamp"] == iso_ms(pay.t0_ms)
    assert got.headers["webhook-timestamp"] == str(pay.t0_ms // 1000)
    assert got.headers["webhook-id"].startswith("msg_")
    assert got.headers["content-type"] == "application/json"
    with pytest.raises(Exception, match="signature"):  # another secret does not verify it
        Webhook(rules.new_secret()).verify(got.body, got.headers)

    (delivery,) = await pay.deliveries(made.endpoint.id)
    assert (delivery["status"], delivery["attempts"], delivery["last_status_code"]) == (
        "succeeded",
        1,
        200,
    )
    assert delivery["webhook_id"] == got.headers["webhook-id"]
    assert await pay.sender.send_once() == 0  # nothing is sent twice


async def test_the_outbox_holds_only_what_committed(pay: Pay, receiver: Receiver) -> None:
    made = await pay.cases.webhooks.create(
        pay.merchant.id, receiver.url, ["order.paid", "order.cancelled"]
    )
    order = await pay.cases.orders.create(
        pay.merchant.id, merchant_order_id="big", amount_msat=5_000_000
    )
    with pytest.raises(InsufficientFunds):  # refused: nothing changed, nothing to tell
        await pay.cases.orders.pay_from_balance(
            pay.alice.id, order.order.id, idempotency=("k", "h")
        )
    assert await pay.sender.send_once() == 0 and receiver.received == []
    await pay.cases.orders.cancel(pay.merchant.id, order.order.id)
    assert await pay.sender.send_once() == 1
    assert orjson.loads(receiver.received[0].body)["type"] == "order.cancelled"
    assert [d["event_type"] for d in await pay.deliveries(made.endpoint.id)] == ["order.cancelled"]


async def test_only_subscribed_events_of_enabled_endpoints_are_sent(
    pay: Pay, receiver: Receiver
) -> None:
    paid_only = await pay.cases.webhooks.create(pay.merchant.id, receiver.url, ["order.paid"])
    gone = await pay.cases.webhooks.create(pay.merchant.id, receiver.url, ["order.paid"])
    await pay.cases.webhooks.delete(pay.merchant.id, gone.endpoint.id)
    order = await pay.cases.orders.create(pay.merchant.id, merchant_order_id="c", amount_msat=1_000)
    await pay.cases.orders.cancel(pay.merchant.id, order.order.id)  # not subscribed
    await pay.paid_order("p")
    assert await pay.sender.send_once() == 1
    assert [e.id for e in await pay.cases.webhooks.list(pay.merchant.id)] == [paid_only.endpoint.id]
    with pytest.raises(NotFound):
        await pay.cases.webhooks.deliveries(pay.merchant.id, gone.endpoint.id, cursor=None, limit=5)


async def test_a_failing_receiver_is_retried_on_the_schedule_with_one_webhook_id(
    pay: Pay, receiver: Receiver
) -> None:
    receiver.statuses = [500, 503, 302, 200]
    made = await pay.cases.webhooks.create(pay.merchant.id, receiver.url, ["order.paid"])
    await pay.paid_order("cart-1")
    assert await pay.sender.send_once() == 1  # attempt 1, at once: 500
    (delivery,) = await pay.deliveries(made.endpoint.id)
    assert (delivery["status"], delivery["attempts"]) == ("pending", 1)
    assert str(delivery["last_error"]).startswith("HTTP 500: nope")
    assert len(str(delivery["last_error"])) <= 300  # a big answer is cut at the cap
    assert delivery["next_attempt_at"] == iso_ms(pay.t0_ms + 5_000)
    pay.clock.advance(4_999)
    assert await pay.sender.send_once() == 0  # not yet due
    pay.clock.advance(1)
    assert await pay.sender.send_once() == 1  # attempt 2: 503
    pay.clock.advance(59_999)
    assert await pay.sender.send_once() == 0
    pay.clock.advance(1)
    assert await pay.sender.send_once() == 1  # attempt 3: a redirect, not followed
    (delivery,) = await pay.deliveries(made.endpoint.id)
    assert delivery["last_error"] == "redirects are not followed"
    pay.clock.advance(600_000)
    assert await pay.sender.send_once() == 1  # attempt 4: 200
    (delivery,) = await pay.deliveries(made.endpoint.id)
    assert (delivery["status"], delivery["attempts"]) == ("succeeded", 4)
    ids = {r.headers["webhook-id"] for r in receiver.received}
    assert len(receiver.received) == 4 and len(ids) == 1
    bodies = {r.body for r in receiver.received}
    assert len(bodies) == 1  # the very bytes that were signed, every time
    timestamps = [int(r.headers["webhook-timestamp"]) for r in receiver.received]
    assert timestamps == sorted(timestamps) and timestamps[0] < timestamps[-1]
    Webhook(made.secret).verify(receiver.received[0].body, receiver.received[0].headers)
    for got in receiver.received[1:]:  # signed at their own (later) times
        at = datetime.fromtimestamp(int(got.headers["webhook-timestamp"]), tz=UTC)
        expected = Webhook(made.secret).sign(got.headers["webhook-id"], at, got.body.decode())
        assert got.headers["webhook-signature"] == expected


async def test_an_endpoint_failing_for_24_hours_is_disabled_and_can_be_redelivered_to_after(
    pay: Pay, receiver: Receiver
) -> None:
    receiver.statuses = [500]
    made = await pay.cases.webhooks.create(pay.merchant.id, receiver.url, ["order.paid"])
    await pay.paid_order("cart-1")
    elapsed_ms = 0
    for delay_s in (*rules.RETRY_DELAYS_S[1:6], None):
        assert await pay.sender.send_once() == 1
        if delay_s is None:
            break
        pay.clock.advance(delay_s * 1000)
        elapsed_ms += delay_s * 1000
    # Six attempts over 7 h 11 min: failing, not yet for 24 h.
    (endpoint,) = await pay.cases.webhooks.list(pay.merchant.id)
    assert endpoint.status == "enabled" and endpoint.failing_since is not None
    pay.clock.advance(24 * HOUR_MS)
    assert await pay.sender.send_once() == 1  # the 7th and last attempt, 30 h after the first
    (endpoint,) = await pay.cases.webhooks.list(pay.merchant.id)
    assert endpoint.status == "disabled" and endpoint.disabled_at is not None
    (delivery,) = await pay.deliveries(made.endpoint.id)
    assert (delivery["status"], delivery["attempts"]) == ("failed", 7)
    assert len(receiver.received) == 7

    told = pay.core.uow.read_sync(lambda tx: events.after(tx, pay.merchant.id, 0))
    assert [e.type for e in told][-1] == "webhook.disabled"
    records = pay.core.uow.read_sync(lambda tx: audit.records(tx))
    assert [r.action for r in records if r.subject == f"webhook:{made.endpoint.id}"] == [
        "webhook.create",
        "webhook.disable",
    ]
    assert pay.core.metrics.webhook_endpoints_disabled._value.get() == 1
    await pay.paid_order("cart-2")  # a disabled endpoint is sent nothing new
    assert await pay.sender.send_once() == 0
    with pytest.raises(InvalidRequest, match="disabled"):
        await pay.cases.webhooks.redeliver(pay.merchant.id, made.endpoint.id, str(delivery["id"]))


async def test_a_delivered_webhook_can_be_sent_again_with_its_webhook_id(
    pay: Pay, receiver: Receiver
) -> None:
    made = await pay.cases.webhooks.create(pay.merchant.id, receiver.url, ["order.paid"])
    await pay.paid_order("cart-1")
    await pay.sender.send_once()
    (delivery,) = await pay.deliveries(made.endpoint.id)
    again = await pay.cases.webhooks.redeliver(
        pay.merchant.id, made.endpoint.id, str(delivery["id"])
    )
    assert (again.status, again.attempts) == ("pending", 0)
    assert await pay.sender.send_once() == 1
    first, second = receiver.received
    assert first.headers["webhook-id"] == second.headers["webhook-id"] and first.body == second.body
    with pytest.raises(NotFound):
        await pay.cases.webhooks.redeliver(pay.merchant.id, made.endpoint.id, "dlv_nope")
    other = await pay.cases.webhooks.create(pay.merchant.id, receiver.url, ["order.paid"])
    with pytest.raises(NotFound):  # a delivery of another endpoint
        await pay.cases.webhooks.redeliver(pay.merchant.id, other.endpoint.id, str(delivery["id"]))


async def test_concurrent_senders_never_claim_one_attempt_twice(
    pay: Pay, receiver: Receiver
) -> None:
    made = await pay.cases.webhooks.create(pay.merchant.id, receiver.url, ["order.paid"])
    for n in range(40):
        await pay.paid_order(f"cart-{n}", amount_msat=1_000)
    claims = await asyncio.gather(
        *(pay.cases.webhook_dispatch.claim(8, lease_ms=60_000) for _ in range(8))
    )
    claimed = [o.delivery.id for batch in claims for o in batch]
    assert len(claimed) == len(set(claimed)) == 40
    assert await pay.cases.webhook_dispatch.claim(8, lease_ms=60_000) == []  # all leased
    pay.clock.advance(60_000)  # a sender that died: its leases run out, the rows are due again
    assert len(await pay.cases.webhook_dispatch.claim(64, lease_ms=60_000)) == 40
    assert len(await pay.deliveries(made.endpoint.id)) == 40


@pytest.mark.parametrize(
    ("url", "events", "error"),
    [
        ("", ["order.paid"], InvalidRequest),
        ("ftp://shop.example/hook", ["order.paid"], InvalidRequest),
        ("https://user:pw@shop.example/hook", ["order.paid"], InvalidRequest),
        ("https://shop.example/hook#x", ["order.paid"], InvalidRequest),
        ("https://shop.example/ hook", ["order.paid"], InvalidRequest),
        ("https://shop.example:99999/hook", ["order.paid"], InvalidRequest),
        ("https://" + "a" * 3000 + ".example/", ["order.paid"], InvalidRequest),
        ("https://shop.example/hook", [], InvalidRequest),
        ("https://shop.example/hook", ["order.paid", "order.paid"], InvalidRequest),
        ("https://shop.example/hook", ["order.shipped"], InvalidRequest),
        ("https://shop.example/hook", "order.paid", InvalidRequest),
        ("https://shop.example/hook", [7], InvalidRequest),
    ],
)
async def test_a_bad_endpoint_is_refused_and_changes_nothing(
    pay: Pay, url: str, events: object, error: type[Exception]
) -> None:
    with pytest.raises(error):
        await pay.cases.webhooks.create(pay.merchant.id, url, events)
    assert await pay.cases.webhooks.list(pay.merchant.id) == ()


@pytest.mark.parametrize(
    "url",
    [
        "http://shop.example/hook",  # not https
        "https://127.0.0.1/hook",
        "https://[::1]/hook",
        "https://10.0.0.7/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://localhost/hook",
    ],
)
async def test_webhook_urls_follow_the_ssrf_rules_of_lightning_addresses(
    config: Config, url: str
) -> None:
    with started_core(config) as core:  # webhook_allow_private_hosts is false by default
        merchant = core.uow.write_sync(lambda tx: users.insert_user(tx, "shop", Role.MERCHANT))
        network = SimnetNetwork(config.simnet_dir)
        try:
            cases = use_cases(core, SimnetNode(network))
            with pytest.raises(DestinationNotAllowed):
                await cases.webhooks.create(merchant.id, url, ["order.paid"])
        finally:
            network.close()


async def test_a_merchant_has_a_bounded_number_of_endpoints(pay: Pay, receiver: Receiver) -> None:
    for _ in range(rules.ENDPOINTS_PER_MERCHANT_MAX):
        await pay.cases.webhooks.create(pay.merchant.id, receiver.url, ["order.paid"])
    with pytest.raises(InvalidRequest, match="at most"):
        await pay.cases.webhooks.create(pay.merchant.id, receiver.url, ["order.paid"])


async def test_a_receiver_that_does_not_answer_in_time_is_a_failed_attempt(
    pay: Pay, receiver: Receiver
) -> None:
    receiver.delay_s = 3.0  # the sender's timeout is 2 s
    made = await pay.cases.webhooks.create(pay.merchant.id, receiver.url, ["order.paid"])
    await pay.paid_order("cart-1")
    assert await pay.sender.send_once() == 1
    (delivery,) = await pay.deliveries(made.endpoint.id)
    assert delivery["status"] == "pending" and delivery["last_status_code"] is None
    assert "no answer within 2 s" in str(delivery["last_error"])
