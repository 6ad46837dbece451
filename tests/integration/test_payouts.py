"""The payouts use case step by step, without the worker loop (simnet, on both databases):

- a claim commits ``sending`` before anything is paid, and only once, even when two workers race;
- a claim waits, saying why in the note, while withdrawals are halted, the signer is away, the
  node lacks outbound liquidity, or the user is at their in-flight cap;
- a final answer of the node finishes a withdrawal exactly once (posted or voided); an answer
  that is not final changes nothing;
- only the latest attempt can be failed, and each attempt number is won by one worker only.
"""

from __future__ import annotations

import ast
import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import lngate.workers.payment_sender
from lngate.bootstrap import Core, administration_for
from lngate.domain.ledger import Balance
from lngate.domain.withdrawals import WithdrawalStatus
from lngate.lightning.lnd.signer import SignerHealth, SignerProbe
from lngate.lightning.node import FailureReason, Payment, PaymentStatus
from lngate.lightning.simnet import SimnetNetwork, SimnetNode
from lngate.services.accounts import Credentials
from lngate.services.payouts import IN_FLIGHT_CAP_NOTE, LIQUIDITY_NOTE, SIGNER_AWAY_NOTE, Payouts
from lngate.services.reconciliation import check_ledger
from lngate.store import users
from lngate.store import withdrawals as store
from lngate.store.db import Tx
from lngate.store.ledger import get_account
from lngate.store.withdrawals import Withdrawal
from tests.conftest import funded_user
from tests.helpers import request_withdrawal

FUNDS = 100_000_000
AMOUNT_MSAT = 10_000


@pytest.fixture
def net(core: Core) -> Iterator[SimnetNetwork]:
    network = SimnetNetwork(core.config.simnet_dir)
    yield network
    network.close()


@pytest.fixture
def node(net: SimnetNetwork) -> SimnetNode:
    return SimnetNode(net)


async def approved(
    core: Core, node: SimnetNode, user: Credentials, amount_msat: int = AMOUNT_MSAT
) -> Withdrawal:
    """A new approved withdrawal of ``user`` to carol (no worker runs: it stays approved)."""
    bolt11 = node.network.create_invoice("carol", amount_msat).bolt11
    body = await request_withdrawal(core, node, user, bolt11)
    assert body["status"] == "approved", body
    return stored(core, str(body["id"]))


def stored(core: Core, withdrawal_id: str) -> Withdrawal:
    w = core.uow.read_sync(lambda tx: store.by_id(tx, withdrawal_id))
    assert w is not None
    return w


def balance(core: Core, user: Credentials) -> Balance:
    def read(tx: Tx) -> Balance:
        found = users.user_by_id(tx, user.user_id)
        assert found is not None
        account = get_account(tx, found.account_id)
        assert account is not None
        return account.balance

    return core.uow.read_sync(read)


def payouts_over(core: Core, node: SimnetNode, signer: SignerProbe | None = None) -> Payouts:
    """The use case over ``node``, as bootstrap builds it for a payment worker."""
    policy = core.config.withdrawals
    return Payouts(core.uow, node, policy, core.system_accounts, core.clock, signer=signer)


async def claimed(payouts: Payouts, w: Withdrawal) -> Withdrawal:
    """``w`` claimed (``sending``), as the worker does before it pays."""
    record = await payouts.claim(w)
    assert record is not None
    return record


class Signer(SignerProbe):
    """A remote signer that is reachable or not, as the test says (no socket is opened)."""

    def __init__(self) -> None:
        super().__init__("127.0.0.1:10019", Path("/nonexistent/tls.cert"))
        self.reachable = False
        self.checks = 0

    async def acheck(self, max_age_s: float = 0.0) -> SignerHealth:
        self.checks += 1
        return SignerHealth(self.rpc_host, self.reachable, "test", time.time())


def test_the_payment_worker_imports_nothing_from_the_store() -> None:
    """Workers call services: every read, write and lock of the worker is in ``Payouts``."""
    source = Path(lngate.workers.payment_sender.__file__).read_text()
    imported = []
    for n in ast.walk(ast.parse(source)):
        if isinstance(n, ast.ImportFrom) and n.module:
            imported.append(n.module)
        elif isinstance(n, ast.Import):
            imported += [a.name for a in n.names]
    assert [m for m in imported if m.startswith("lngate.store")] == []
    assert "lngate.bootstrap" not in imported  # given its use case, not the core
    assert "lambda tx" not in source


async def test_a_claim_commits_sending_before_anything_is_paid_and_only_once(
    core: Core, node: SimnetNode
) -> None:
    alice = funded_user(core, "alice", FUNDS)
    w = await approved(core, node, alice)
    payouts = payouts_over(core, node)
    work = await payouts.next_round()
    assert [x.id for x in work.claimable] == [w.id] and work.in_flight == ()
    claimed = await payouts.claim(w)
    assert claimed is not None and claimed.id == w.id
    assert claimed.status is WithdrawalStatus.SENDING and claimed.attempts == 1
    assert claimed.sent_at_ms is not None and claimed.note == ""
    assert stored(core, w.id) == claimed  # committed
    # nothing was asked of the node: the worker pays only after this
    untouched = await node.track_payment(bytes.fromhex(w.payment_hash))
    assert untouched.status is PaymentStatus.UNKNOWN
    work = await payouts.next_round()
    assert work.claimable == () and [x.id for x in work.in_flight] == [w.id]
    assert await payouts.claim(w) is None  # a stale view claims nothing
    assert stored(core, w.id).attempts == 1


async def test_two_workers_racing_never_claim_the_same_withdrawal(
    core: Core, net: SimnetNetwork
) -> None:
    """Two use cases (two workers, each with its own node) claim every withdrawal at once,
    round after round: each withdrawal is claimed by one of them, once, and a user's later
    withdrawal never before an earlier one."""
    people = [funded_user(core, f"u{i}", FUNDS) for i in range(6)]
    first, second = payouts_over(core, SimnetNode(net)), payouts_over(core, SimnetNode(net))
    made = [await approved(core, SimnetNode(net), people[i % 6]) for i in range(18)]
    waiting, won = made, []
    for _ in range(20):
        results = await asyncio.gather(
            *(payouts.claim(w) for w in waiting for payouts in (first, second))
        )
        won += [c for c in results if c is not None]
        ids = [c.id for c in won]
        assert len(ids) == len(set(ids)), "one withdrawal was claimed twice"
        for person in people:  # what is claimed of a user is always their oldest
            theirs = [w.seq for w in made if w.user_id == person.user_id]
            taken = sorted(c.seq for c in won if c.user_id == person.user_id)
            assert taken == theirs[: len(taken)]
        waiting = [w for w in waiting if w.id not in ids]
        if not waiting:
            break
    assert waiting == [] and {c.attempts for c in won} == {1}
    assert {stored(core, w.id).attempts for w in made} == {1}


async def test_a_claim_waits_while_withdrawals_are_halted(core: Core, node: SimnetNode) -> None:
    alice = funded_user(core, "alice", FUNDS)
    w = await approved(core, node, alice)
    payouts = payouts_over(core, node)
    administration_for(core).halt_sync(reason="drill", actor="test")
    assert await payouts.claim(w) is None
    waiting = stored(core, w.id)
    assert waiting.status is WithdrawalStatus.APPROVED
    assert waiting.note == "waiting: withdrawals are halted (drill)"
    administration_for(core).resume_sync(reason="drill over", actor="test")
    claimed = await payouts.claim(waiting)
    assert claimed is not None and claimed.status is WithdrawalStatus.SENDING
    assert claimed.note == ""  # the reason it waited is gone


async def test_a_claim_waits_while_the_remote_signer_is_away(core: Core, node: SimnetNode) -> None:
    alice = funded_user(core, "alice", FUNDS)
    w = await approved(core, node, alice)
    signer = Signer()
    payouts = payouts_over(core, node, signer)
    assert await payouts.claim(w) is None
    assert signer.checks == 1
    waiting = stored(core, w.id)
    assert (waiting.status, waiting.note) == (WithdrawalStatus.APPROVED, SIGNER_AWAY_NOTE)
    signer.reachable = True
    assert await payouts.claim(waiting) is not None


async def test_a_claim_waits_for_outbound_liquidity(
    core: Core, net: SimnetNetwork, node: SimnetNode
) -> None:
    alice = funded_user(core, "alice", FUNDS)
    w = await approved(core, node, alice, amount_msat=100_000)
    local = net.balances("exchange").channel_local_msat
    net.faults.lose_funds("exchange", channel_msat=local - 50_000)  # 50 sat left to send
    assert await payouts_over(core, node).claim(w) is None
    waiting = stored(core, w.id)
    assert (waiting.status, waiting.note) == (WithdrawalStatus.APPROVED, LIQUIDITY_NOTE)


async def test_a_claim_waits_while_the_user_is_at_their_in_flight_cap(
    core: Core, node: SimnetNode
) -> None:
    cap = core.config.withdrawals.user_sending_max_count
    alice = funded_user(core, "alice", FUNDS)
    ws = [await approved(core, node, alice) for _ in range(cap + 1)]
    payouts = payouts_over(core, node)
    for w in ws[:cap]:
        assert await payouts.claim(w) is not None
    assert await payouts.claim(ws[cap]) is None
    waiting = stored(core, ws[cap].id)
    assert (waiting.status, waiting.note) == (WithdrawalStatus.APPROVED, IN_FLIGHT_CAP_NOTE)
    assert (await payouts.next_round()).claimable == ()  # not offered until one lands


async def test_a_success_posts_the_hold_once(core: Core, node: SimnetNode) -> None:
    alice = funded_user(core, "alice", FUNDS)
    payouts = payouts_over(core, node)
    w = await claimed(payouts, await approved(core, node, alice))
    payment = await node.pay(w.bolt11, fee_limit_msat=w.fee_reserve_msat)
    assert payment.status is PaymentStatus.SUCCEEDED and payment.preimage is not None
    assert await payouts.record_outcome(w, payment) is WithdrawalStatus.SUCCEEDED
    assert await payouts.record_outcome(w, payment) is None  # a second report moves nothing
    done = stored(core, w.id)
    assert done.status is WithdrawalStatus.SUCCEEDED
    assert done.preimage == payment.preimage.hex()
    assert done.routing_fee_msat == payment.fee_msat
    after = balance(core, alice)
    assert after.debits_pending_msat == 0
    assert after.available_msat == FUNDS - AMOUNT_MSAT - payment.fee_msat
    assert core.uow.read_sync(check_ledger).ok


async def test_an_answer_that_is_not_final_keeps_the_hold(core: Core, node: SimnetNode) -> None:
    alice = funded_user(core, "alice", FUNDS)
    payouts = payouts_over(core, node)
    w = await claimed(payouts, await approved(core, node, alice))
    held = balance(core, alice).debits_pending_msat
    assert held == AMOUNT_MSAT + w.fee_reserve_msat
    for status in (PaymentStatus.IN_FLIGHT, PaymentStatus.UNKNOWN):
        answer = Payment(bytes.fromhex(w.payment_hash), status)
        assert await payouts.record_outcome(w, answer) is None
    assert stored(core, w.id).status is WithdrawalStatus.SENDING
    assert balance(core, alice).debits_pending_msat == held


async def test_a_failure_voids_the_hold_once(core: Core, node: SimnetNode) -> None:
    alice = funded_user(core, "alice", FUNDS)
    payouts = payouts_over(core, node)
    w = await claimed(payouts, await approved(core, node, alice))
    failed = Payment(
        bytes.fromhex(w.payment_hash), PaymentStatus.FAILED, failure_reason=FailureReason.NO_ROUTE
    )
    assert await payouts.record_outcome(w, failed) is WithdrawalStatus.FAILED
    assert await payouts.record_outcome(w, failed) is None
    done = stored(core, w.id)
    assert (done.status, done.note) == (WithdrawalStatus.FAILED, "payment failed: no_route")
    assert balance(core, alice) == Balance(credits_posted_msat=FUNDS)
    assert core.uow.read_sync(check_ledger).ok


async def test_only_the_latest_attempt_can_fail_and_one_worker_wins_each_attempt(
    core: Core, node: SimnetNode
) -> None:
    alice = funded_user(core, "alice", FUNDS)
    payouts = payouts_over(core, node)
    w = await claimed(payouts, await approved(core, node, alice))
    # two workers found it unknown to the node: only one may send it again
    again = await asyncio.gather(payouts.next_attempt(w), payouts_over(core, node).next_attempt(w))
    winners = [a for a in again if a is not None]
    assert len(winners) == 1 and winners[0].attempts == 2
    assert stored(core, w.id).attempts == 2
    # the first attempt's view is stale: failing it must not release the newer attempt's hold
    assert await payouts.fail_unsent(w, "refused") is False
    assert stored(core, w.id).status is WithdrawalStatus.SENDING
    assert await payouts.fail_unsent(winners[0], "no route to the payee") is True
    done = stored(core, w.id)
    assert (done.status, done.note) == (WithdrawalStatus.FAILED, "no route to the payee")
    assert balance(core, alice) == Balance(credits_posted_msat=FUNDS)
