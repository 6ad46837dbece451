"""The user API through real HTTP, on SQLite and PostgreSQL: transfers, idempotency, bad input."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from lngate.bootstrap import accounts_for
from lngate.client import AsyncClient, signed_headers
from lngate.services.reconciliation import check_ledger
from tests.conftest import LiveServer, funded_user


def client(server: LiveServer, creds: Any) -> AsyncClient:
    return AsyncClient(server.url, creds.api_key, creds.api_secret)


async def balance(server: LiveServer, creds: Any) -> int:
    async with client(server, creds) as c:
        r = await c.get("/v1/account")
        assert r.status_code == 200, r.text
        return int(r.json()["available_msat"])


async def test_account_shows_balance_and_lightning_address(live_server: LiveServer) -> None:
    alice = funded_user(live_server.core, "alice", 5_000)
    async with client(live_server, alice) as c:
        body = (await c.get("/v1/account")).json()
    assert body["username"] == "alice"
    assert body["available_msat"] == 5_000
    assert body["pending_msat"] == 0
    assert body["lightning_address"] == f"alice@127.0.0.1:{live_server.port}"


async def test_a_transfer_moves_money_between_users_and_shows_in_history(
    live_server: LiveServer,
) -> None:
    alice = funded_user(live_server.core, "alice", 5_000)
    bob = funded_user(live_server.core, "bob")
    async with client(live_server, alice) as c:
        r = await c.post("/v1/transfers", {"to": "bob", "amount_msat": 1_500, "memo": "lunch"})
        assert r.status_code == 201, r.text
        assert r.json()["amount_msat"] == 1_500 and r.json()["to"] == "bob"
        history = (await c.get("/v1/history?limit=10")).json()
    assert await balance(live_server, alice) == 3_500
    assert await balance(live_server, bob) == 1_500
    newest = history["entries"][0]
    assert (newest["direction"], newest["amount_msat"], newest["counterparty"]) == (
        "out",
        1_500,
        "bob",
    )
    assert newest["memo"] == "lunch"


async def test_history_pages_backwards_with_a_cursor(live_server: LiveServer) -> None:
    alice = funded_user(live_server.core, "alice", 10_000)
    funded_user(live_server.core, "bob")
    async with client(live_server, alice) as c:
        for i in range(5):
            assert (await c.post("/v1/transfers", {"to": "bob", "amount_msat": i + 1})).is_success
        first = (await c.get("/v1/history?limit=3")).json()
        second = (await c.get(f"/v1/history?limit=3&cursor={first['next_cursor']}")).json()
    amounts = [e["amount_msat"] for e in first["entries"] + second["entries"]]
    assert amounts == [5, 4, 3, 2, 1, 10_000]
    assert second["next_cursor"] is None


async def test_100_concurrent_transfers_from_10_000_msat_exactly_10_succeed(
    live_server: LiveServer,
) -> None:
    alice = funded_user(live_server.core, "alice", 10_000)
    bob = funded_user(live_server.core, "bob")
    async with client(live_server, alice) as c:
        responses = await asyncio.gather(
            *(c.post("/v1/transfers", {"to": "bob", "amount_msat": 1_000}) for _ in range(100))
        )
    codes = [r.status_code for r in responses]
    assert codes.count(201) == 10
    refused = [r for r in responses if r.status_code != 201]
    assert len(refused) == 90
    assert all(r.status_code == 422 for r in refused)
    assert {r.json()["error"]["code"] for r in refused} == {"INSUFFICIENT_FUNDS"}
    assert await balance(live_server, alice) == 0
    assert await balance(live_server, bob) == 10_000
    assert live_server.core.uow.read_sync(check_ledger).ok


async def test_the_same_idempotency_key_20_times_at_once_moves_money_once(
    live_server: LiveServer,
) -> None:
    alice = funded_user(live_server.core, "alice", 10_000)
    bob = funded_user(live_server.core, "bob")
    payload = {"to": "bob", "amount_msat": 700, "memo": "once"}
    async with client(live_server, alice) as c:
        responses = await asyncio.gather(
            *(c.post("/v1/transfers", payload, idempotency_key="pay-1") for _ in range(20))
        )
        assert {r.status_code for r in responses} == {201}
        assert len({r.content for r in responses}) == 1  # byte-identical bodies
        other = await c.post(
            "/v1/transfers", {**payload, "amount_msat": 701}, idempotency_key="pay-1"
        )
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert await balance(live_server, alice) == 9_300
    assert await balance(live_server, bob) == 700


async def test_a_refused_transfer_does_not_consume_its_idempotency_key(
    live_server: LiveServer,
) -> None:
    alice = funded_user(live_server.core, "alice", 1_000)
    funded_user(live_server.core, "bob")
    payload = {"to": "bob", "amount_msat": 2_000}
    async with client(live_server, alice) as c:
        first = await c.post("/v1/transfers", payload, idempotency_key="k")
        assert first.json()["error"]["code"] == "INSUFFICIENT_FUNDS"
        accounts_for(live_server.core).adjust_sync("alice", 1_000, reason="top up", actor="test")
        retry = await c.post("/v1/transfers", payload, idempotency_key="k")
    assert retry.status_code == 201


BAD_BODIES: list[tuple[Any, str]] = [
    ({"to": "bob", "amount_msat": 0}, "INVALID_AMOUNT"),
    ({"to": "bob", "amount_msat": -5}, "INVALID_AMOUNT"),
    ({"to": "bob", "amount_msat": 1.5}, "INVALID_AMOUNT"),
    ({"to": "bob", "amount_msat": 1000.0}, "INVALID_AMOUNT"),
    ({"to": "bob", "amount_msat": "1000"}, "INVALID_AMOUNT"),
    ({"to": "bob", "amount_msat": True}, "INVALID_AMOUNT"),
    ({"to": "bob", "amount_msat": 10**30}, "INVALID_AMOUNT"),
    ({"to": "bob", "amount_msat": 2_100_000_000_000_000_001}, "INVALID_AMOUNT"),
    ({"to": "bob"}, "INVALID_AMOUNT"),
    ({"to": "nobody", "amount_msat": 1}, "UNKNOWN_USER"),
    ({"to": "alice", "amount_msat": 1}, "INVALID_REQUEST"),
    ({"to": "bob", "amount_msat": 1, "extra": 1}, "INVALID_REQUEST"),
    ({"to": "bob", "amount_msat": 1, "memo": "x" * 641}, "INVALID_REQUEST"),
    ({"to": 5, "amount_msat": 1}, "INVALID_REQUEST"),
    ([1, 2], "INVALID_REQUEST"),
]


@pytest.mark.parametrize(("body", "code"), BAD_BODIES)
async def test_bad_input_gets_a_clear_4xx_and_changes_nothing(
    live_server: LiveServer, body: Any, code: str
) -> None:
    alice = funded_user(live_server.core, "alice", 5_000)
    bob = funded_user(live_server.core, "bob")
    async with client(live_server, alice) as c:
        r = await c.post("/v1/transfers", body)
    assert 400 <= r.status_code < 500, r.text
    assert r.json()["error"]["code"] == code
    assert r.json()["error"]["message"]
    assert await balance(live_server, alice) == 5_000
    assert await balance(live_server, bob) == 0


async def test_malformed_json_and_missing_key_are_refused(live_server: LiveServer) -> None:
    alice = funded_user(live_server.core, "alice", 5_000)
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        body = b'{"to": "bob", "amount_msat": '
        headers = signed_headers(alice.api_key, alice.api_secret, "POST", "/v1/transfers", body)
        headers |= {"Idempotency-Key": "x", "Content-Type": "application/json"}
        r = await http.post("/v1/transfers", content=body, headers=headers)
        assert (r.status_code, r.json()["error"]["code"]) == (400, "MALFORMED_JSON")
        body = b'{"to": "bob", "amount_msat": 1}'
        headers = signed_headers(alice.api_key, alice.api_secret, "POST", "/v1/transfers", body)
        headers["Content-Type"] = "application/json"
        r = await http.post("/v1/transfers", content=body, headers=headers)
        assert (r.status_code, r.json()["error"]["code"]) == (400, "INVALID_REQUEST")
        assert "Idempotency-Key" in r.json()["error"]["message"]
    assert await balance(live_server, alice) == 5_000


async def test_openapi_is_served(live_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        spec = (await http.get("/openapi.json")).json()
    assert "/v1/transfers" in spec["paths"]
    assert "/v1/account" in spec["paths"]


def test_unknown_routes_are_json_404s(live_server: LiveServer) -> None:
    r = httpx.get(f"{live_server.url}/v1/{uuid.uuid4()}")
    assert r.status_code in (401, 404)
    assert "error" in r.json()


@pytest.mark.parametrize(
    "path",
    [
        "/v1/history?cursor=99999999999999999999999",
        "/v1/history?limit=100000",
        "/v1/deposits?cursor=99999999999999999999999",
        "/v1/withdrawals?cursor=-1",
        "/v1/events?after=99999999999999999999999",
        "/v1/deposits/%00%ff",
        "/v1/withdrawals/" + "x" * 5000,
    ],
)
async def test_absurd_query_values_are_4xx_not_5xx(live_server: LiveServer, path: str) -> None:
    alice = funded_user(live_server.core, "alice")
    async with client(live_server, alice) as c:
        r = await c.get(path)
    assert 400 <= r.status_code < 500, r.text
