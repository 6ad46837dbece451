"""The use cases of accounts, transfers, administration and solvency, without an HTTP server:
SQLite (and PostgreSQL when configured), simnet, a fixed clock. Each test states a rule."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from lngate.api import schemas
from lngate.bootstrap import Core
from lngate.domain.errors import (
    AccountFrozen,
    AlreadyExists,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidAmount,
    InvalidRequest,
    UnknownUser,
)
from lngate.domain.users import Role
from lngate.lightning.simnet import SimnetNetwork, SimnetNode
from lngate.services.accounts import Accounts, Credentials
from lngate.services.admin import Administration
from lngate.services.clock import FixedClock
from lngate.services.solvency import ReconciliationReport, Solvency
from lngate.services.transfers import Transfers

T0_MS = 1_800_000_000_000  # 2027-01-15T08:00:00Z
TRANSFER_MAX_MSAT = 1_000_000


class Nudges:
    """A Wakeup that counts how often it was fired."""

    def __init__(self) -> None:
        self.fired = 0

    def fire(self) -> None:
        self.fired += 1

    async def wait(self, timeout_s: float) -> None:
        return None


@dataclass
class World:
    core: Core
    clock: FixedClock
    nudges: Nudges
    accounts: Accounts
    transfers: Transfers
    admin: Administration
    solvency: Solvency

    def user(self, name: str, amount_msat: int = 0) -> Credentials:
        creds = self.accounts.create_user_sync(name)
        if amount_msat:
            self.accounts.adjust_sync(name, amount_msat, reason="funding", actor="test")
        return creds

    async def send(
        self, sender: Credentials, to: str, amount_msat: int, *, key: str, memo: str = ""
    ) -> schemas.Transfer:
        receipt = await self.transfers.transfer(
            sender.user_id,
            to,
            amount_msat,
            memo,
            idempotency_key=key,
            request_hash=f"{to}:{amount_msat}:{memo}",
        )
        return schemas.Transfer.model_validate(receipt)

    async def available_msat(self, creds: Credentials) -> int:
        return (await self.accounts.view(creds.user_id)).available_msat


@pytest.fixture
def world(core: Core) -> Iterator[World]:
    clock, nudges = FixedClock(T0_MS), Nudges()
    network = SimnetNetwork(core.config.simnet_dir)
    try:
        yield World(
            core,
            clock,
            nudges,
            Accounts(
                core.uow,
                core.server_key,
                public_host="pay.example",
                system_accounts=core.system_accounts,
            ),
            Transfers(core.uow, max_amount_msat=TRANSFER_MAX_MSAT, clock=clock),
            Administration(
                core.uow, clock, public_host="pay.example", withdrawal_work=nudges, signer=None
            ),
            Solvency(
                core.uow,
                SimnetNode(network),
                tolerance_msat=0,
                inbound_floor_msat=0,
                clock=clock,
            ),
        )
    finally:
        network.close()


# -- accounts ----------------------------------------------------------------------------------


async def test_a_new_user_has_an_empty_account_and_a_lightning_address(world: World) -> None:
    alice = world.user("alice")

    view = schemas.Account.model_validate(await world.accounts.view(alice.user_id))

    assert view.username == "alice" and view.status == "active"
    assert view.available_msat == 0 and view.pending_msat == 0
    assert view.lightning_address == "alice@pay.example"


def test_a_name_is_taken_once_and_must_be_a_valid_address(world: World) -> None:
    world.user("alice")

    with pytest.raises(AlreadyExists):
        world.accounts.create_user_sync("alice", Role.MERCHANT)
    with pytest.raises(InvalidRequest):
        world.accounts.create_user_sync("Alice!")


async def test_an_adjustment_credits_or_debits_and_is_audited(world: World) -> None:
    alice = world.user("alice")

    credit = await world.accounts.adjust("alice", 5_000, reason="goodwill", actor="ops")
    debit = world.accounts.adjust_sync("alice", -2_000, reason="correction", actor="ops")

    assert credit.amount_msat == 5_000 and debit.amount_msat == -2_000
    assert credit.transfer_id != debit.transfer_id
    assert await world.available_msat(alice) == 3_000
    page = await world.admin.audit_page(after=0, limit=10)
    adjusts = [r for r in page.records if r.action == "ledger.adjust"]
    assert [r.details["amount_msat"] for r in adjusts] == [5_000, -2_000]
    assert {r.actor for r in adjusts} == {"ops"}


async def test_an_adjustment_never_overdraws_and_needs_an_amount_and_a_reason(
    world: World,
) -> None:
    alice = world.user("alice", 1_000)

    with pytest.raises(InsufficientFunds):
        await world.accounts.adjust("alice", -1_001, reason="too much", actor="ops")
    with pytest.raises(InvalidAmount):
        await world.accounts.adjust("alice", 0, reason="nothing", actor="ops")
    with pytest.raises(InvalidRequest):
        await world.accounts.adjust("alice", 1, reason=" ", actor="ops")
    with pytest.raises(UnknownUser):
        await world.accounts.adjust("nobody", 1, reason="who", actor="ops")

    assert await world.available_msat(alice) == 1_000


async def test_history_is_newest_first_in_pages(world: World) -> None:
    alice = world.user("alice", 10_000)
    world.user("bob")
    for i in range(3):
        await world.send(alice, "bob", 100 + i, key=f"k{i}")

    first = await world.accounts.history(alice.user_id, cursor=None, limit=2)
    rest = await world.accounts.history(alice.user_id, cursor=first.next_cursor, limit=2)

    page = schemas.HistoryPage.model_validate(first)
    assert [e.amount_msat for e in page.entries] == [102, 101]
    assert {e.direction for e in page.entries} == {"out"}
    assert [e.counterparty for e in page.entries] == ["bob", "bob"]
    assert [(e.amount_msat, e.direction) for e in rest.entries] == [(100, "out"), (10_000, "in")]
    assert rest.next_cursor is None


# -- transfers ---------------------------------------------------------------------------------


async def test_a_transfer_moves_money_at_once_stamped_by_the_clock(world: World) -> None:
    alice, bob = world.user("alice", 5_000), world.user("bob")

    receipt = await world.send(alice, "bob", 1_500, key="k", memo="rent")

    assert receipt.from_ == "alice" and receipt.to == "bob" and receipt.memo == "rent"
    assert receipt.status == "completed"
    assert receipt.created_at == "2027-01-15T08:00:00.000+00:00"
    assert await world.available_msat(alice) == 3_500
    assert await world.available_msat(bob) == 1_500


async def test_a_replayed_key_answers_the_first_receipt_and_moves_nothing(
    world: World,
) -> None:
    alice, bob = world.user("alice", 5_000), world.user("bob")
    first = await world.send(alice, "bob", 1_000, key="k")
    world.clock.advance(60_000)

    again = await world.send(alice, "bob", 1_000, key="k")

    assert again == first
    assert await world.available_msat(bob) == 1_000
    with pytest.raises(IdempotencyConflict):
        await world.send(alice, "bob", 2_000, key="k")


async def test_a_transfer_is_refused_when_it_cannot_happen(world: World) -> None:
    alice = world.user("alice", 5_000)
    world.user("bob")

    with pytest.raises(InvalidRequest):
        await world.send(alice, "bob", TRANSFER_MAX_MSAT + 1, key="big")
    with pytest.raises(InsufficientFunds):
        await world.send(alice, "bob", 5_001, key="over")
    with pytest.raises(InvalidRequest):
        await world.send(alice, "alice", 1, key="self")
    with pytest.raises(UnknownUser):
        await world.send(alice, "nobody", 1, key="who")

    assert await world.available_msat(alice) == 5_000


# -- administration ----------------------------------------------------------------------------


async def test_freezing_stops_transfers_out_and_is_audited_once(world: World) -> None:
    alice = world.user("alice", 5_000)
    world.user("bob")

    first = await world.admin.freeze("alice", reason="kyc", actor="ops")
    again = await world.admin.freeze("alice", reason="kyc", actor="ops")

    assert (first.frozen, first.changed, again.changed) == (True, True, False)
    assert (await world.admin.user("alice")).status == "frozen"
    with pytest.raises(AccountFrozen):
        await world.send(alice, "bob", 1, key="k")
    thawed = world.admin.set_frozen_sync("alice", False, reason="cleared", actor="ops")
    assert thawed.changed and (await world.send(alice, "bob", 1, key="k")).amount_msat == 1
    actions = [r.action for r in (await world.admin.audit_page(after=0, limit=100)).records]
    assert actions.count("user.freeze") == 1 and actions.count("user.unfreeze") == 1


async def test_an_admin_sees_a_user_with_its_role(world: World) -> None:
    world.user("alice", 7)

    view = schemas.AdminUser.model_validate(await world.admin.user("alice"))

    assert (view.role, view.available_msat) == ("user", 7)
    with pytest.raises(InvalidRequest):
        await world.admin.freeze("alice", reason="", actor="ops")


async def test_a_halt_is_stamped_by_the_clock_and_a_resume_wakes_the_payment_worker(
    world: World,
) -> None:
    halted = await world.admin.halt(reason="drill", actor="ops")
    again = world.admin.halt_sync(reason="another", actor="ops")

    status = schemas.AdminStatus.model_validate(await world.admin.status())
    assert (halted.changed, again.changed) == (True, False)
    assert status.withdrawals_halted is not None and status.signer is None
    assert status.withdrawals_halted.reason == "drill"  # the first reason stands
    assert status.withdrawals_halted.at_ms == T0_MS

    resumed = await world.admin.resume(reason="over", actor="ops")

    assert (resumed.halted, resumed.changed) == (False, True)
    assert world.nudges.fired == 1
    assert (await world.admin.status()).withdrawals_halted is None


async def test_the_audit_chain_verifies_and_counts_every_record(world: World) -> None:
    world.user("alice", 1_000)
    await world.admin.halt(reason="drill", actor="ops")

    verification = world.admin.verify_audit_sync()

    assert verification.ok and verification.problems == ()
    assert verification.records == 2  # the adjustment and the halt
    page = schemas.AuditPage.model_validate(await world.admin.audit_page(after=0, limit=1))
    assert len(page.records) == 1 and page.next_after == page.records[0].seq


# -- solvency ----------------------------------------------------------------------------------


async def test_a_reconciliation_is_stored_and_read_back_as_it_was(world: World) -> None:
    world.user("alice", 5_000)

    report = await world.solvency.reconcile(actor="ops")

    checked = schemas.Reconciliation.model_validate(report)
    assert checked.ok and not checked.withdrawals_halted
    assert checked.liabilities_msat == 5_000 and checked.ledger.ok
    assert checked.shortfall_msat == checked.required_msat - checked.assets_msat
    stored = await world.admin.reconciliation_reports(10)
    assert [s.id for s in stored] == [report.id]
    schemas.StoredReconciliation.model_validate(stored[0])
    assert stored[0].report.as_json() == ReconciliationReport.as_json(report)
    assert world.admin.check_ledger_sync().ok


async def test_a_shortfall_halts_withdrawals_at_the_clocks_time(world: World) -> None:
    node_msat = (await world.solvency.reconcile()).assets_msat
    world.user("alice", node_msat + 1)  # owed more than the node holds
    world.clock.advance(1_000)

    report = await world.solvency.reconcile(actor="ops")

    assert not report.ok and report.shortfall_msat == 1 and report.withdrawals_halted
    halt = (await world.admin.status()).withdrawals_halted
    assert halt is not None and halt.by == "ops" and halt.at_ms == T0_MS + 1_000
    assert "shortfall of 1 msat" in halt.reason
    # an operator who accepts the shortfall resumes; the next check passes
    await world.admin.resume(reason="known", actor="ops", acknowledge_shortfall_msat=1)
    assert (await world.solvency.reconcile()).ok
