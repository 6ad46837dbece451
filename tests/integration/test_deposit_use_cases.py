"""Deposits, Lightning Addresses and rate limits as use cases: no HTTP server, SQLite and
simnet, one fixed clock for both (so expiry is a statement, not a sleep)."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from lngate.bootstrap import Core, open_core
from lngate.config import Config, Limits
from lngate.domain.errors import (
    AccountFrozen,
    AmountOutOfRange,
    IdempotencyConflict,
    InvalidRequest,
    NodeUnreachable,
    NotFound,
    RateLimited,
    UnknownUser,
)
from lngate.domain.ledger import AccountKind
from lngate.lightning.bolt11 import decode_bolt11
from lngate.lightning.node import InvoiceState
from lngate.lightning.simnet import SimnetNetwork, SimnetNode
from lngate.lightning.simnet.faults import FaultKind
from lngate.services.clock import FixedClock
from lngate.services.deposits import DepositRecord, Deposits
from lngate.services.lnurl import COMMENT_ALLOWED, LightningAddresses, metadata
from lngate.services.rate_limits import WINDOW_MS, RateLimiter
from lngate.store import deposits as deposit_rows
from lngate.store import events, users
from lngate.store.ledger import get_account
from lngate.store.unit_of_work import DirectUnitOfWork
from lngate.store.users import Role, User, UserStatus
from lngate.workers.invoice_watcher import InvoiceWatcher

T0_MS = 1_700_000_000_000  # a whole second: BOLT 11 times are in seconds
HOUR_MS = 3_600_000
FEE_LIMIT_MSAT = 50_000
PUBLIC_URL = "https://pay.example.com"


@dataclasses.dataclass
class World:
    core: Core
    uow: DirectUnitOfWork
    clock: FixedClock
    network: SimnetNetwork
    node: SimnetNode
    deposits: Deposits
    limiter: RateLimiter
    addresses: LightningAddresses

    def user(self, name: str, role: Role = Role.USER) -> User:
        return self.uow.write_sync(lambda tx: users.insert_user(tx, name, role))

    def available_msat(self, user: User) -> int:
        account = self.uow.read_sync(lambda tx: get_account(tx, user.account_id))
        assert account is not None
        return account.balance.available_msat

    def event_types(self, user: User) -> list[str]:
        return [e.type for e in self.uow.read_sync(lambda tx: events.after(tx, user.id, 0))]

    def pay(self, bolt11: str, amount_msat: int | None = None) -> None:
        self.network.pay("carol", bolt11, amount_msat=amount_msat, fee_limit_msat=FEE_LIMIT_MSAT)

    def status(self, record: DepositRecord) -> str:
        found = self.uow.read_sync(lambda tx: deposit_rows.by_hash(tx, record.payment_hash))
        assert found is not None
        return found.status.value


def build(tmp_path: Path, limits: Limits) -> Iterator[World]:
    config = Config(
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path / 'lngate.sqlite3'}",
        public_url=PUBLIC_URL,
        limits=limits,
        lnurl_callbacks_per_minute=3,
    )
    core = open_core(config)
    clock = FixedClock(T0_MS)
    network = SimnetNetwork(config.simnet_dir, clock_ms=clock.now_ms)
    node = SimnetNode(network)
    uow = DirectUnitOfWork(core.db)
    deposits = Deposits(uow, node, limits, core.system_accounts, clock)
    limiter = RateLimiter(uow, clock)
    addresses = LightningAddresses(
        uow,
        deposits,
        limiter,
        limits=limits,
        public_url=PUBLIC_URL,
        public_host=config.public_host,
        callbacks_per_minute=config.lnurl_callbacks_per_minute,
    )
    try:
        yield World(core, uow, clock, network, node, deposits, limiter, addresses)
    finally:
        uow.close()
        network.close()
        core.close()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from build(tmp_path, Limits())


@pytest.fixture
def no_amountless(tmp_path: Path) -> Iterator[World]:
    yield from build(tmp_path, Limits(allow_amountless_deposits=False))


# -- creating a deposit ---------------------------------------------------------------------------


async def test_a_deposit_is_an_open_invoice_of_our_node_recorded_at_the_clocks_time(
    world: World,
) -> None:
    alice = world.user("alice")
    d = await world.deposits.create(alice.id, 25_000, memo="top up")
    assert (d.status, d.amount_msat, d.amount_paid_msat, d.memo, d.source) == (
        "open",
        25_000,
        None,
        "top up",
        "api",
    )
    assert d.created_at == "2023-11-14T22:13:20.000+00:00"  # T0_MS
    assert d.expires_at == "2023-11-14T23:13:20.000+00:00"  # the default hour later
    assert d.settled_at is None
    invoice = await world.node.lookup_invoice(bytes.fromhex(d.payment_hash))
    assert invoice.state is InvoiceState.OPEN and invoice.bolt11 == d.bolt11
    assert await world.deposits.get(alice.id, d.id) == d


async def test_the_record_has_exactly_the_json_fields_of_the_api(world: World) -> None:
    from lngate.api import schemas

    alice = world.user("alice")
    d = await world.deposits.create(alice.id, 1_000)
    assert list(d.as_json()) == list(schemas.Deposit.model_fields)
    assert schemas.Deposit.model_validate(d).model_dump() == d.as_json()
    page = await world.deposits.page(alice.id, cursor=None, limit=1)
    assert schemas.DepositPage.model_validate(page).model_dump() == {
        "deposits": [d.as_json()],
        "next_cursor": None,
    }


async def test_amounts_outside_the_limits_are_refused_before_the_node_is_asked(
    world: World,
) -> None:
    alice = world.user("alice")
    limits = Limits()
    for amount in (limits.deposit_min_msat - 1, limits.deposit_max_msat + 1):
        with pytest.raises(AmountOutOfRange, match=str(limits.deposit_max_msat)):
            await world.deposits.create(alice.id, amount)
    assert (await world.deposits.page(alice.id, cursor=None, limit=10)).deposits == ()


async def test_amountless_deposits_can_be_turned_off(no_amountless: World) -> None:
    with pytest.raises(InvalidRequest, match="amountless"):
        await no_amountless.deposits.create(no_amountless.user("alice").id, None)


async def test_a_frozen_or_unknown_account_gets_no_invoice(world: World) -> None:
    alice = world.user("alice")
    world.uow.write_sync(lambda tx: users.set_status(tx, alice.id, UserStatus.FROZEN))
    with pytest.raises(AccountFrozen):
        await world.deposits.create(alice.id, 1_000)
    with pytest.raises(NotFound):
        await world.deposits.create("no-such-user", 1_000)


async def test_an_unreachable_node_is_node_unreachable_and_records_nothing(world: World) -> None:
    # A watch-only LND whose remote signer is away answers the same way (a 503 at the API).
    alice = world.user("alice")
    world.network.faults.set(FaultKind.OFFLINE, node="exchange")
    with pytest.raises(NodeUnreachable):
        await world.deposits.create(alice.id, 1_000)
    world.network.faults.clear()
    assert (await world.deposits.page(alice.id, cursor=None, limit=10)).deposits == ()


async def test_an_idempotency_key_answers_the_first_deposit_again(world: World) -> None:
    alice = world.user("alice")
    first = await world.deposits.create(alice.id, 2_000, idempotency=("k1", "hash-a"))
    again = await world.deposits.create(alice.id, 2_000, idempotency=("k1", "hash-a"))
    assert again == first
    with pytest.raises(IdempotencyConflict):
        await world.deposits.create(alice.id, 3_000, idempotency=("k1", "hash-b"))
    assert len((await world.deposits.page(alice.id, cursor=None, limit=10)).deposits) == 1


async def test_deposits_are_paged_newest_first_and_private(world: World) -> None:
    alice, mallory = world.user("alice"), world.user("mallory")
    made = [await world.deposits.create(alice.id, 1_000 * (i + 1)) for i in range(3)]
    first = await world.deposits.page(alice.id, cursor=None, limit=2)
    assert first.next_cursor is not None
    rest = await world.deposits.page(alice.id, cursor=first.next_cursor, limit=2)
    assert [d.id for d in first.deposits + rest.deposits] == [d.id for d in made[::-1]]
    assert rest.next_cursor is None
    with pytest.raises(NotFound):
        await world.deposits.get(mallory.id, made[0].id)
    for limit in (0, 201):
        with pytest.raises(InvalidRequest):
            await world.deposits.page(alice.id, cursor=None, limit=limit)


# -- crediting and closing ------------------------------------------------------------------------


async def test_a_settled_invoice_credits_its_deposit_once(world: World) -> None:
    alice = world.user("alice")
    d = await world.deposits.create(alice.id, 5_000)
    world.pay(d.bolt11)
    invoice = await world.node.lookup_invoice(bytes.fromhex(d.payment_hash))
    assert await world.deposits.credit_settled(invoice, from_stream=True) is True
    assert await world.deposits.credit_settled(invoice, from_stream=True) is False  # a replay
    assert await world.deposits.credit_settled(invoice, from_stream=False) is False
    assert world.available_msat(alice) == 5_000
    assert world.status(d) == "settled"
    assert world.event_types(alice) == ["deposit.settled"]
    assert await world.deposits.settle_cursor() == invoice.settle_index


async def test_an_amountless_deposit_credits_what_was_paid(world: World) -> None:
    alice = world.user("alice")
    d = await world.deposits.create(alice.id, None)
    world.pay(d.bolt11, 12_345)
    invoice = await world.node.lookup_invoice(bytes.fromhex(d.payment_hash))
    await world.deposits.credit_settled(invoice, from_stream=True)
    assert world.available_msat(alice) == 12_345
    assert (await world.deposits.get(alice.id, d.id)).amount_paid_msat == 12_345


async def test_only_the_stream_moves_the_resume_point(world: World) -> None:
    alice = world.user("alice")
    d = await world.deposits.create(alice.id, 5_000)
    world.pay(d.bolt11)
    invoice = await world.node.lookup_invoice(bytes.fromhex(d.payment_hash))
    assert await world.deposits.credit_settled(invoice, from_stream=False) is True
    assert await world.deposits.settle_cursor() == 0


async def test_a_cancelled_invoice_closes_as_cancelled_before_expiry_and_expired_after(
    world: World,
) -> None:
    alice = world.user("alice")
    early = await world.deposits.create(alice.id, 1_000)
    late = await world.deposits.create(alice.id, 1_000)
    for d in (early, late):
        await world.node.cancel_invoice(bytes.fromhex(d.payment_hash))
    cancelled = await world.node.lookup_invoice(bytes.fromhex(early.payment_hash))
    assert await world.deposits.close_cancelled(cancelled) is True
    assert await world.deposits.close_cancelled(cancelled) is False  # once
    world.clock.advance(HOUR_MS)  # the invoice's expiry, to the millisecond
    past = await world.node.lookup_invoice(bytes.fromhex(late.payment_hash))
    assert await world.deposits.close_cancelled(past) is True
    assert (world.status(early), world.status(late)) == ("cancelled", "expired")
    assert world.event_types(alice) == ["deposit.cancelled", "deposit.expired"]


async def test_the_expiry_poll_closes_what_is_due_and_credits_what_the_stream_missed(
    world: World,
) -> None:
    alice = world.user("alice")
    unpaid = await world.deposits.create(alice.id, 1_000)
    paid = await world.deposits.create(alice.id, 2_000)
    world.pay(paid.bolt11)
    assert await world.deposits.expire_due(T0_MS + HOUR_MS, 10) == 0  # nothing expired before
    world.clock.advance(HOUR_MS + 1_000)
    assert await world.deposits.expire_due(world.clock.now_ms(), 10) == 2
    assert (world.status(unpaid), world.status(paid)) == ("expired", "settled")
    assert world.available_msat(alice) == 2_000
    assert await world.deposits.settle_cursor() == 0  # found by the poll, not the stream
    assert await world.deposits.expire_due(world.clock.now_ms(), 10) == 0


async def test_the_watcher_sweeps_by_its_clock_less_the_grace(world: World) -> None:
    alice = world.user("alice")
    d = await world.deposits.create(alice.id, 1_000)
    watcher = InvoiceWatcher(world.deposits, world.node, clock=world.clock, expiry_grace_s=10)
    world.clock.advance(HOUR_MS + 5_000)  # expired 5 s ago: within the grace
    assert await watcher.sweep_once() == 0
    world.clock.advance(6_000)
    assert await watcher.sweep_once() == 1
    assert world.status(d) == "expired"


async def test_the_watcher_credits_from_the_stream_and_counts(world: World) -> None:
    alice = world.user("alice")
    d = await world.deposits.create(alice.id, 3_000)
    world.pay(d.bolt11)
    watcher = InvoiceWatcher(world.deposits, world.node, clock=world.clock)
    invoice = await world.node.lookup_invoice(bytes.fromhex(d.payment_hash))
    await watcher.handle(invoice)
    await watcher.handle(invoice)
    assert watcher.credited == 1 and world.available_msat(alice) == 3_000


def test_the_node_account_is_the_system_node_account(world: World) -> None:
    node_account = world.core.system_accounts[AccountKind.NODE.value]
    assert world.deposits.node_account_id == node_account


# -- rate limits ----------------------------------------------------------------------------------


async def test_a_bucket_takes_per_minute_requests_in_one_clock_minute(world: World) -> None:
    world.clock.advance(WINDOW_MS - T0_MS % WINDOW_MS)  # the start of a minute
    for _ in range(2):
        await world.limiter.take("b", 2)
    with pytest.raises(RateLimited, match="at most 2 a minute"):
        await world.limiter.take("b", 2)
    await world.limiter.take("other", 2)  # buckets are counted apart
    world.clock.advance(WINDOW_MS - 1)
    with pytest.raises(RateLimited):
        await world.limiter.take("b", 2)  # still the same minute
    world.clock.advance(1)
    await world.limiter.take("b", 2)  # a new minute


# -- Lightning Addresses ----------------------------------------------------------------------


async def test_a_lightning_address_serves_its_pay_request(world: World) -> None:
    world.user("alice")
    found = await world.addresses.lookup("Alice")
    limits = Limits()
    assert found.as_json() == {
        "tag": "payRequest",
        "callback": f"{PUBLIC_URL}/lnurlp/alice/callback",
        "minSendable": limits.deposit_min_msat,
        "maxSendable": limits.deposit_max_msat,
        "metadata": metadata("alice", "pay.example.com"),
        "commentAllowed": COMMENT_ALLOWED,
    }


async def test_unknown_names_and_operators_have_no_address(world: World) -> None:
    world.user("root", Role.ADMIN)
    for name in ("nobody", "root"):
        with pytest.raises(UnknownUser):
            await world.addresses.lookup(name)
        with pytest.raises(UnknownUser):
            await world.addresses.callback(name, "5000", None)


async def test_a_callback_mints_an_invoice_that_commits_to_the_metadata(world: World) -> None:
    alice = world.user("alice")
    answer = await world.addresses.callback("alice", "21000", "thanks!", client_address="1.2.3.4")
    assert answer.as_json() == {"pr": answer.pr, "routes": []}
    invoice = decode_bolt11(answer.pr)
    assert invoice.amount_msat == 21_000
    # LUD-06: the description hash is the SHA-256 of the metadata string, as served
    assert (
        invoice.description_hash
        == hashlib.sha256(metadata("alice", "pay.example.com").encode()).digest()
    )
    (d,) = (await world.deposits.page(alice.id, cursor=None, limit=10)).deposits
    assert (d.source, d.memo, d.bolt11) == ("lnurl", "thanks!", answer.pr)


@pytest.mark.parametrize("amount", [None, "0", "999", "-5", "abc", "1.5", "", "99999999999999999"])
async def test_bad_callback_amounts_are_refused_and_mint_nothing(
    world: World, amount: str | None
) -> None:
    alice = world.user("alice")
    with pytest.raises((InvalidRequest, AmountOutOfRange)):
        await world.addresses.callback("alice", amount, None)
    with pytest.raises(InvalidRequest, match="comment"):
        await world.addresses.callback("alice", "5000", "x" * (COMMENT_ALLOWED + 1))
    assert (await world.deposits.page(alice.id, cursor=None, limit=10)).deposits == ()


async def test_callbacks_from_the_internet_are_rate_limited_per_address(world: World) -> None:
    world.user("alice")
    for _ in range(3):  # lnurl_callbacks_per_minute
        await world.addresses.callback("alice", "1000", None, client_address="1.2.3.4")
    with pytest.raises(RateLimited):
        await world.addresses.callback("alice", "1000", None, client_address="1.2.3.4")
    await world.addresses.callback("alice", "1000", None, client_address="5.6.7.8")
    await world.addresses.callback("alice", "1000", None)  # our own users: not limited
