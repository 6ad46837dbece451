"""Lightning withdrawals on simnet: the lifecycle, fees, failures, internal settlement."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator

import pytest

from lngate.bootstrap import Core
from lngate.client import AsyncClient
from lngate.config import Config
from lngate.lightning.simnet import FaultKind, SimnetNetwork
from lngate.services.reconciliation import check_ledger
from tests.conftest import LiveServer, funded_user, started_core
from tests.helpers import (
    available_msat,
    pay_from_wallet,
    payment_worker,
    wait_status,
    wallet_invoice,
)

FUNDS = 10_000_000


def client(server: LiveServer, creds: object) -> AsyncClient:
    return AsyncClient(server.url, creds.api_key, creds.api_secret)  # type: ignore[attr-defined]


async def withdraw(c: AsyncClient, **body: object) -> dict[str, object]:
    r = await c.post("/v1/withdrawals", body)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def test_a_withdrawal_pays_the_invoice_and_posts_the_right_amounts(
    live_server: LiveServer,
) -> None:
    alice = funded_user(live_server.core, "alice", FUNDS)
    simnet = live_server.core.config.simnet_dir
    before = SimnetNetwork(simnet).balances("carol").channel_local_msat
    bolt11 = wallet_invoice(simnet, "carol", 100_000)
    async with client(live_server, alice) as c:
        w = await withdraw(c, bolt11=bolt11)
        assert w["status"] == "approved" and w["amount_msat"] == 100_000
        assert w["fee_reserve_msat"] >= 10_000
        done = await wait_status(c, str(w["id"]), {"succeeded", "failed"})
        assert done["status"] == "succeeded", done
        assert 0 < done["routing_fee_msat"] <= done["fee_reserve_msat"]
        assert done["preimage"] and len(done["preimage"]) == 64
        spent = 100_000 + done["routing_fee_msat"] + done["exchange_fee_msat"]
        assert await available_msat(c) == FUNDS - spent
        assert (await c.get("/v1/account")).json()["pending_msat"] == 0
    assert SimnetNetwork(simnet).balances("carol").channel_local_msat == before + 100_000
    assert live_server.core.uow.read_sync(check_ledger).ok


async def test_a_no_route_failure_releases_the_hold(live_server: LiveServer) -> None:
    alice = funded_user(live_server.core, "alice", FUNDS)
    simnet = live_server.core.config.simnet_dir
    with SimnetNetwork(simnet) as net:
        bolt11 = net.create_invoice("dave", 50_000).bolt11
        net.faults.set(FaultKind.NO_ROUTE, node="dave")
    async with client(live_server, alice) as c:
        w = await withdraw(c, bolt11=bolt11)
        done = await wait_status(c, str(w["id"]), {"succeeded", "failed"})
        assert done["status"] == "failed" and "route" in done["note"].lower()
        assert await available_msat(c) == FUNDS
        assert (await c.get("/v1/account")).json()["pending_msat"] == 0


@pytest.mark.parametrize("succeed", [True, False])
async def test_a_stuck_payment_keeps_the_hold_until_it_resolves(
    live_server: LiveServer, succeed: bool
) -> None:
    alice = funded_user(live_server.core, "alice", FUNDS)
    simnet = live_server.core.config.simnet_dir
    with SimnetNetwork(simnet) as net:
        invoice = net.create_invoice("carol", 40_000)
        net.faults.set(
            FaultKind.STUCK, payment_hash=invoice.payment_hash, hold_ms=60_000, succeed=succeed
        )
    async with client(live_server, alice) as c:
        w = await withdraw(c, bolt11=invoice.bolt11)
        await wait_status(c, str(w["id"]), {"sending"})
        await asyncio.sleep(0.5)  # the worker asks again and again; the node says in flight
        still = (await c.get(f"/v1/withdrawals/{w['id']}")).json()
        assert still["status"] == "sending"
        held = 40_000 + still["fee_reserve_msat"] + still["exchange_fee_msat"]
        assert (await c.get("/v1/account")).json()["pending_msat"] == held
        assert await available_msat(c) == FUNDS - held
        with SimnetNetwork(simnet) as net:
            net.release_payment(invoice.payment_hash, succeed=succeed)
        done = await wait_status(c, str(w["id"]), {"succeeded", "failed"})
        assert done["status"] == ("succeeded" if succeed else "failed")
        assert (await c.get("/v1/account")).json()["pending_msat"] == 0
        expected = FUNDS - (40_000 + done["routing_fee_msat"] if succeed else 0)
        assert await available_msat(c) == expected
    assert live_server.core.uow.read_sync(check_ledger).ok


async def test_fee_drain_never_costs_more_than_the_reserve(live_server: LiveServer) -> None:
    """LNbits #440: a path demanding a huge routing fee. The fee limit sent is the reserve."""
    alice = funded_user(live_server.core, "alice", FUNDS)
    simnet = live_server.core.config.simnet_dir
    with SimnetNetwork(simnet) as net:
        bolt11 = net.create_invoice("carol", 100_000).bolt11
        net.faults.set(FaultKind.FEE_DRAIN, node="hub", fee_base_msat=5_000_000)
    async with client(live_server, alice) as c:
        w = await withdraw(c, bolt11=bolt11)
        done = await wait_status(c, str(w["id"]), {"succeeded", "failed"})
        assert done["status"] == "failed"
        assert await available_msat(c) == FUNDS
    assert live_server.core.uow.read_sync(check_ledger).ok


async def test_the_fee_limit_sent_to_the_node_is_the_reserve_held(live_server: LiveServer) -> None:
    sent: list[int] = []
    node = live_server.payments._node
    real_pay = node.pay

    async def spy(bolt11: str, **kw: object) -> object:
        sent.append(int(kw["fee_limit_msat"]))  # type: ignore[call-overload]
        return await real_pay(bolt11, **kw)  # type: ignore[arg-type]

    node.pay = spy  # type: ignore[method-assign]
    alice = funded_user(live_server.core, "alice", FUNDS)
    async with client(live_server, alice) as c:
        w = await withdraw(
            c, bolt11=wallet_invoice(live_server.core.config.simnet_dir, "carol", 300_000)
        )
        done = await wait_status(c, str(w["id"]), {"succeeded", "failed"})
    assert sent == [done["fee_reserve_msat"]]


async def test_an_invoice_of_another_user_is_settled_internally(live_server: LiveServer) -> None:
    alice = funded_user(live_server.core, "alice", FUNDS)
    bob = funded_user(live_server.core, "bob")
    async with client(live_server, bob) as b:
        deposit = (await b.post("/v1/deposits", {"amount_msat": 70_000})).json()
    async with client(live_server, alice) as c:
        w = await withdraw(c, bolt11=deposit["bolt11"])
        assert w["status"] == "succeeded" and w["internal"] is True
        assert w["routing_fee_msat"] == 0 and w["exchange_fee_msat"] == 0
        assert await available_msat(c) == FUNDS - 70_000
    async with client(live_server, bob) as b:
        assert await available_msat(b) == 70_000
        assert (await b.get(f"/v1/deposits/{deposit['id']}")).json()["status"] == "settled"
    # the invoice was cancelled on our node: nobody outside can pay it as well
    paid_again = pay_from_wallet(live_server.core.config.simnet_dir, "carol", deposit["bolt11"])
    assert paid_again.status.value == "failed"
    await asyncio.sleep(0.3)
    async with client(live_server, bob) as b:
        assert await available_msat(b) == 70_000
    assert live_server.core.uow.read_sync(check_ledger).ok


async def test_internal_settlement_is_refused_when_paid_from_outside(
    live_server: LiveServer,
) -> None:
    alice = funded_user(live_server.core, "alice", FUNDS)
    bob = funded_user(live_server.core, "bob")
    async with client(live_server, bob) as b:
        deposit = (await b.post("/v1/deposits", {"amount_msat": 30_000})).json()
    pay_from_wallet(live_server.core.config.simnet_dir, "carol", deposit["bolt11"])
    async with client(live_server, alice) as c:
        r = await c.post("/v1/withdrawals", {"bolt11": deposit["bolt11"]})
        if r.status_code == 201:  # the watcher had not yet seen the payment: the node refuses
            assert r.json()["status"] == "failed"
        else:
            assert r.json()["error"]["code"] == "INVOICE_ALREADY_PAID"
        assert await available_msat(c) == FUNDS
    async with client(live_server, bob) as b:
        for _ in range(100):
            if await available_msat(b) == 30_000:
                break
            await asyncio.sleep(0.05)
        assert await available_msat(b) == 30_000  # credited once, by the outside payment
    assert live_server.core.uow.read_sync(check_ledger).ok


async def test_fifty_concurrent_withdrawals_from_a_balance_for_five(
    live_server: LiveServer,
) -> None:
    policy = live_server.core.config.withdrawals
    amount = 20_000
    per = amount + max(
        policy.routing_reserve_min_msat, amount * policy.routing_reserve_ppm // 10**6
    )
    alice = funded_user(live_server.core, "alice", 5 * per)
    simnet = live_server.core.config.simnet_dir
    invoices = [wallet_invoice(simnet, "carol", amount) for _ in range(50)]
    async with client(live_server, alice) as c:
        responses = await asyncio.gather(
            *(c.post("/v1/withdrawals", {"bolt11": b}) for b in invoices)
        )
        accepted = [r for r in responses if r.status_code == 201]
        assert len(accepted) == 5
        refused = {r.json()["error"]["code"] for r in responses if r.status_code != 201}
        assert refused == {"INSUFFICIENT_FUNDS"}
        for r in accepted:
            await wait_status(c, r.json()["id"], {"succeeded", "failed"})
        assert await available_msat(c) >= 0
    assert live_server.core.uow.read_sync(check_ledger).ok


async def test_one_invoice_submitted_by_twenty_users_is_paid_at_most_once(
    live_server: LiveServer,
) -> None:
    users = [funded_user(live_server.core, f"user{i}", FUNDS) for i in range(20)]
    bolt11 = wallet_invoice(live_server.core.config.simnet_dir, "carol", 60_000)
    clients = [client(live_server, u) for u in users]
    try:
        responses = await asyncio.gather(
            *(c.post("/v1/withdrawals", {"bolt11": bolt11}) for c in clients)
        )
        accepted = [(c, r) for c, r in zip(clients, responses, strict=True) if r.status_code == 201]
        assert len(accepted) == 1
        codes = {r.json()["error"]["code"] for r in responses if r.status_code != 201}
        assert codes == {"DUPLICATE_PAYMENT_HASH"}
        c, r = accepted[0]
        assert (await wait_status(c, r.json()["id"], {"succeeded", "failed"}))["status"] == (
            "succeeded"
        )
        balances = [await available_msat(x) for x in clients]
        assert sum(1 for b in balances if b < FUNDS) == 1
    finally:
        for c in clients:
            await c.aclose()


async def test_the_same_idempotency_key_returns_the_first_withdrawal(
    live_server: LiveServer,
) -> None:
    alice = funded_user(live_server.core, "alice", FUNDS)
    simnet = live_server.core.config.simnet_dir
    first, second = wallet_invoice(simnet, "carol", 10_000), wallet_invoice(simnet, "carol", 11_000)
    async with client(live_server, alice) as c:
        a = await c.post("/v1/withdrawals", {"bolt11": first}, idempotency_key="w1")
        b = await c.post("/v1/withdrawals", {"bolt11": first}, idempotency_key="w1")
        assert a.status_code == b.status_code == 201 and a.json()["id"] == b.json()["id"]
        other = await c.post("/v1/withdrawals", {"bolt11": second}, idempotency_key="w1")
        assert other.status_code == 409
        assert other.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
        listed = (await c.get("/v1/withdrawals")).json()["withdrawals"]
        assert len(listed) == 1


@pytest.fixture
def griefing_core(config: Config) -> Iterator[Core]:
    policy = dataclasses.replace(config.withdrawals, user_sending_max_count=2)
    with started_core(dataclasses.replace(config, withdrawals=policy)) as c:
        yield c


async def test_payments_held_in_flight_are_capped_per_user(griefing_core: Core) -> None:
    """Hold-invoice griefing: invoices that are held and never settle can't pile up."""
    with LiveServer(griefing_core) as server:
        alice = funded_user(server.core, "alice", FUNDS)
        with SimnetNetwork(server.core.config.simnet_dir) as net:
            held = [net.create_invoice("carol", 10_000) for _ in range(3)]
            for inv in held:
                net.faults.set(FaultKind.STUCK, payment_hash=inv.payment_hash, hold_ms=600_000)
        async with client(server, alice) as c:
            ids = [str((await withdraw(c, bolt11=inv.bolt11))["id"]) for inv in held]
            await wait_status(c, ids[0], {"sending"})
            await wait_status(c, ids[1], {"sending"})
            await asyncio.sleep(0.5)
            third = (await c.get(f"/v1/withdrawals/{ids[2]}")).json()
            assert third["status"] == "approved" and "in flight" in third["note"]
            with SimnetNetwork(server.core.config.simnet_dir) as net:
                net.release_payment(held[0].payment_hash, succeed=True)
            await wait_status(c, ids[2], {"sending", "succeeded"})


async def test_two_workers_never_send_one_withdrawal_twice(core: Core) -> None:
    from lngate.lightning.simnet import SimnetNode

    with LiveServer(core, watcher=False) as server:  # no worker of its own
        users = [funded_user(core, f"u{i}", FUNDS) for i in range(8)]
        simnet = core.config.simnet_dir
        invoices = [
            wallet_invoice(simnet, "carol" if i % 2 else "dave", 10_000 + i) for i in range(40)
        ]
        ids = []
        for i, bolt11 in enumerate(invoices):
            async with client(server, users[i % 8]) as c:
                ids.append((await withdraw(c, bolt11=bolt11))["id"])
        workers = [
            payment_worker(core, SimnetNode(SimnetNetwork(simnet)), poll_s=0.02) for _ in range(2)
        ]
        stop = asyncio.Event()
        tasks = [asyncio.create_task(w.run(stop)) for w in workers]

        def unfinished() -> int:
            return int(
                core.uow.read_sync(
                    lambda tx: tx.scalar(
                        "SELECT COUNT(*) FROM withdrawals "
                        "WHERE status NOT IN ('succeeded', 'failed')"
                    )
                )
            )

        for _ in range(500):
            if unfinished() == 0:
                break
            await asyncio.sleep(0.02)
        stop.set()
        await asyncio.gather(*tasks)
        rows = core.uow.read_sync(lambda tx: tx.all("SELECT status, attempts FROM withdrawals"))
        assert [r[0] for r in rows] == ["succeeded"] * 40
        assert {int(r[1]) for r in rows} == {1}  # each claimed and sent exactly once
        from lngate.lightning.bolt11 import decode_bolt11

        with SimnetNetwork(simnet) as net:
            for i, bolt11 in enumerate(invoices):
                decoded = decode_bolt11(bolt11)
                paid = net.lookup_invoice("carol" if i % 2 else "dave", decoded.payment_hash)
                assert paid.amount_paid_msat == decoded.amount_msat  # paid once, not twice
    assert core.uow.read_sync(check_ledger).ok


async def test_a_failure_of_an_older_attempt_never_releases_the_hold(core: Core) -> None:
    """Two workers both found the payment unknown; one sent it again. The first attempt's
    failure must not void the hold: the newer attempt may still succeed."""
    from lngate.bootstrap import use_cases
    from lngate.domain.withdrawals import WithdrawalStatus
    from lngate.lightning.simnet import SimnetNode
    from lngate.services.withdrawal_settlement import fail_op
    from lngate.store import withdrawals as store

    alice = funded_user(core, "alice", FUNDS)
    simnet = core.config.simnet_dir
    requests = use_cases(core, SimnetNode(SimnetNetwork(simnet))).withdrawal_requests
    body = await requests.request(
        alice.user_id,
        bolt11=wallet_invoice(simnet, "carol", 10_000),
        lightning_address=None,
        amount_msat=None,
        idempotency=("k", "h"),
    )
    wid = body.id
    assert core.uow.write_sync(
        lambda tx: store.move(tx, wid, WithdrawalStatus.APPROVED, WithdrawalStatus.SENDING)
    )
    first = core.uow.read_sync(lambda tx: store.by_id(tx, wid))
    assert first is not None and first.attempts == 1
    assert core.uow.write_sync(lambda tx: store.next_attempt(tx, wid, 1))  # worker B wins attempt 2
    assert not core.uow.write_sync(lambda tx: store.next_attempt(tx, wid, 1))  # C loses it
    assert core.uow.write_sync(fail_op(first, "attempt 1 failed")) is False  # stale: no release
    still = core.uow.read_sync(lambda tx: store.by_id(tx, wid))
    assert still is not None and still.status is WithdrawalStatus.SENDING
    held = core.uow.read_sync(
        lambda tx: tx.scalar("SELECT hold_state FROM transfers WHERE id = :i", {"i": still.hold_id})
    )
    assert held == "pending"
    assert core.uow.write_sync(fail_op(still, "attempt 2 failed")) is True
    assert core.uow.read_sync(check_ledger).ok
