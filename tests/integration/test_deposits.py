"""Lightning deposits on simnet, through HTTP: invoices, crediting exactly once, live events."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lngate.bootstrap import Core, use_cases
from lngate.client import AsyncClient
from lngate.config import Config
from lngate.lightning import errors as node_errors
from lngate.lightning.node import Node
from lngate.lightning.simnet import SimnetNetwork, SimnetNode
from lngate.services.reconciliation import check_ledger
from lngate.workers.invoice_watcher import InvoiceWatcher
from tests.conftest import LiveServer, funded_user, started_core
from tests.helpers import available_msat, eventually, pay_from_wallet, read_events


def client(server: LiveServer, creds: object) -> AsyncClient:
    return AsyncClient(server.url, creds.api_key, creds.api_secret)  # type: ignore[attr-defined]


def watcher_of(core: Core, node: Node, **kw: float) -> InvoiceWatcher:
    return InvoiceWatcher(use_cases(core, node).deposits, node, **kw)


async def test_a_paid_deposit_is_credited_once_and_announced_live(live_server: LiveServer) -> None:
    alice = funded_user(live_server.core, "alice")
    async with client(live_server, alice) as c:
        r = await c.post("/v1/deposits", {"amount_msat": 25_000, "memo": "top up"})
        assert r.status_code == 201, r.text
        deposit = r.json()
        assert deposit["status"] == "open" and deposit["amount_msat"] == 25_000
        assert deposit["bolt11"].startswith("lnbcrt")
        started = asyncio.Event()
        listener = asyncio.create_task(
            read_events(
                live_server.url,
                alice,
                started=started,
                until=lambda evs: any(e["event"] == "deposit.settled" for e in evs),
            )
        )
        await started.wait()
        payment = await asyncio.to_thread(
            pay_from_wallet, live_server.core.config.simnet_dir, "carol", deposit["bolt11"]
        )
        assert payment.status.value == "succeeded"
        received = await listener
        settled = next(e for e in received if e["event"] == "deposit.settled")
        assert settled["data"]["data"]["id"] == deposit["id"]
        assert await available_msat(c) == 25_000
        got = (await c.get(f"/v1/deposits/{deposit['id']}")).json()
        assert got["status"] == "settled" and got["amount_paid_msat"] == 25_000
        # the same invoice cannot be paid again: not by carol (her node refuses to pay a hash
        # twice), and not by dave (our node rejects an HTLC for a settled invoice)
        with pytest.raises(node_errors.AlreadyPaid):
            pay_from_wallet(live_server.core.config.simnet_dir, "carol", deposit["bolt11"])
        second = pay_from_wallet(live_server.core.config.simnet_dir, "dave", deposit["bolt11"])
        assert second.status.value == "failed"
        await asyncio.sleep(0.3)
        assert await available_msat(c) == 25_000
    assert live_server.core.uow.read_sync(check_ledger).ok


async def test_amount_limits_are_enforced_with_the_limits_in_the_message(
    live_server: LiveServer,
) -> None:
    alice = funded_user(live_server.core, "alice")
    limits = live_server.core.config.limits
    async with client(live_server, alice) as c:
        for amount in (limits.deposit_min_msat - 1, limits.deposit_max_msat + 1):
            r = await c.post("/v1/deposits", {"amount_msat": amount})
            assert r.status_code == 400
            assert r.json()["error"]["code"] == "AMOUNT_OUT_OF_RANGE"
            assert str(limits.deposit_max_msat) in r.json()["error"]["message"]
        for bad in (0, -1, 1.5, "100"):
            r = await c.post("/v1/deposits", {"amount_msat": bad})
            assert r.status_code == 400
        assert (await c.get("/v1/deposits")).json()["deposits"] == []


async def test_an_amountless_deposit_credits_what_was_paid(live_server: LiveServer) -> None:
    alice = funded_user(live_server.core, "alice")
    async with client(live_server, alice) as c:
        deposit = (await c.post("/v1/deposits", {})).json()
        assert deposit["amount_msat"] is None
        pay_from_wallet(live_server.core.config.simnet_dir, "carol", deposit["bolt11"], 12_345)

        async def credited() -> bool:
            return await available_msat(c) == 12_345

        await eventually(credited, what="the amountless deposit to be credited")
        got = (await c.get(f"/v1/deposits/{deposit['id']}")).json()
        assert got["amount_paid_msat"] == 12_345


async def test_deposits_are_listed_newest_first_and_private(live_server: LiveServer) -> None:
    alice = funded_user(live_server.core, "alice")
    mallory = funded_user(live_server.core, "mallory")
    async with client(live_server, alice) as c:
        ids = [
            (await c.post("/v1/deposits", {"amount_msat": 1_000 * (i + 1)})).json()["id"]
            for i in range(3)
        ]
        first = (await c.get("/v1/deposits?limit=2")).json()
        rest = (await c.get(f"/v1/deposits?limit=2&cursor={first['next_cursor']}")).json()
    assert [d["id"] for d in first["deposits"] + rest["deposits"]] == ids[::-1]
    assert rest["next_cursor"] is None
    async with client(live_server, mallory) as m:
        r = await m.get(f"/v1/deposits/{ids[0]}")
        assert r.status_code == 404


async def test_a_settlement_seen_twice_credits_once(live_server: LiveServer) -> None:
    alice = funded_user(live_server.core, "alice")
    async with client(live_server, alice) as c:
        deposit = (await c.post("/v1/deposits", {"amount_msat": 5_000})).json()
        pay_from_wallet(live_server.core.config.simnet_dir, "carol", deposit["bolt11"])

        async def credited() -> bool:
            return await available_msat(c) == 5_000

        await eventually(credited, what="the deposit to be credited")
        invoice = await live_server.node.lookup_invoice(bytes.fromhex(deposit["payment_hash"]))
        # a stream replay after reconnect, and the poll: the same settlement again
        await live_server.watcher.handle(invoice)
        await live_server.watcher.handle(invoice)
        assert await available_msat(c) == 5_000
    assert live_server.core.uow.read_sync(check_ledger).ok


@pytest.fixture
def short_expiry_core(config: Config) -> Iterator[Core]:
    limits = dataclasses.replace(config.limits, invoice_expiry_s=1)
    with started_core(dataclasses.replace(config, limits=limits)) as c:
        yield c


async def test_an_expired_deposit_is_never_credited(short_expiry_core: Core) -> None:
    with LiveServer(short_expiry_core) as server:
        alice = funded_user(server.core, "alice")
        async with client(server, alice) as c:
            deposit = (await c.post("/v1/deposits", {"amount_msat": 5_000})).json()
            await asyncio.sleep(2.1)  # BOLT11 time is in whole seconds: past expiry for sure
            with pytest.raises(node_errors.InvoiceExpired):
                pay_from_wallet(server.core.config.simnet_dir, "carol", deposit["bolt11"])
            server.watcher._expiry_grace_ms = 0
            await server.watcher.sweep_once()
            got = (await c.get(f"/v1/deposits/{deposit['id']}")).json()
            assert got["status"] == "expired"
            assert await available_msat(c) == 0


async def test_deposits_paid_while_the_watcher_was_down_are_credited_once(core: Core) -> None:
    with LiveServer(core, watcher=False) as server:
        alice = funded_user(core, "alice")
        async with client(server, alice) as c:
            deposits = [
                (await c.post("/v1/deposits", {"amount_msat": 1_000 * (i + 1)})).json()
                for i in range(3)
            ]
            for d in deposits:
                pay_from_wallet(core.config.simnet_dir, "carol", d["bolt11"])
            await asyncio.sleep(0.3)
            assert await available_msat(c) == 0  # nobody is watching yet
            watcher = watcher_of(core, SimnetNode(server.network))
            stop = asyncio.Event()
            task = asyncio.create_task(watcher.run(stop))

            async def all_credited() -> bool:
                return await available_msat(c) == 6_000

            await eventually(all_credited, what="the three deposits to be credited")
            stop.set()
            await task
            # a second watcher start replays nothing twice
            again = watcher_of(core, SimnetNode(server.network))
            stop2 = asyncio.Event()
            task2 = asyncio.create_task(again.run(stop2))
            await asyncio.sleep(0.5)
            stop2.set()
            await task2
            assert await available_msat(c) == 6_000
            assert again.credited == 0
    assert core.uow.read_sync(check_ledger).ok


async def test_a_settlement_found_by_the_expiry_poll_does_not_move_the_resume_point(
    config: Config,
) -> None:
    """The poll may find a later settlement first; a watcher started afterwards must still get
    the earlier one from the stream."""
    limits = dataclasses.replace(config.limits, invoice_expiry_s=1)
    with (
        started_core(dataclasses.replace(config, limits=limits)) as short,
        started_core(config) as long_lived,
    ):
        network = SimnetNetwork(config.simnet_dir)
        node = SimnetNode(network)
        alice = funded_user(long_lived, "alice")
        early = await use_cases(long_lived, node).deposits.create(alice.user_id, 5_000)
        brief = await use_cases(short, node).deposits.create(alice.user_id, 6_000)
        pay_from_wallet(config.simnet_dir, "carol", early.bolt11)
        pay_from_wallet(config.simnet_dir, "carol", brief.bolt11)
        await asyncio.sleep(2.1)  # BOLT 11 seconds: the brief one is past its expiry
        poller = watcher_of(long_lived, node, expiry_grace_s=0)
        assert await poller.sweep_once() == 1  # credits the brief deposit only
        watcher = watcher_of(long_lived, SimnetNode(network))
        stop = asyncio.Event()
        task = asyncio.create_task(watcher.run(stop))

        def balance() -> int:
            from lngate.store.ledger import get_account
            from lngate.store.users import user_by_id

            def read(tx):  # type: ignore[no-untyped-def]
                user = user_by_id(tx, alice.user_id)
                return get_account(tx, user.account_id).balance.available_msat

            return int(long_lived.uow.read_sync(read))

        for _ in range(200):
            if balance() == 11_000:
                break
            await asyncio.sleep(0.02)
        stop.set()
        await task
        assert balance() == 11_000
        network.close()


def test_the_cli_prints_the_deposit_as_the_api_shows_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lngate.cli import app

    monkeypatch.setenv("LNGATE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("LNGATE_DATABASE_URL", raising=False)
    monkeypatch.delenv("LNGATE_CONFIG", raising=False)
    runner = CliRunner()
    assert runner.invoke(app, ["user", "create", "alice"]).exit_code == 0
    result = runner.invoke(app, ["deposit", "alice", "2", "--memo", "hi"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    assert list(printed) == [
        "id",
        "bolt11",
        "payment_hash",
        "amount_msat",
        "amount_paid_msat",
        "memo",
        "source",
        "status",
        "created_at",
        "expires_at",
        "settled_at",
    ]
    assert (printed["amount_msat"], printed["memo"], printed["source"]) == (2_000, "hi", "cli")
    assert result.output == json.dumps(printed, indent=2) + "\n"
    unknown = runner.invoke(app, ["deposit", "nobody", "2"])
    assert unknown.exit_code != 0 and "UNKNOWN_USER" in unknown.output
