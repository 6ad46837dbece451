"""Signed requests: missing, wrong, expired and replayed signatures fail; users stay apart."""

from __future__ import annotations

import time

import httpx

from lngate.client import AsyncClient, signed_headers
from lngate.security.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from tests.conftest import LiveServer, funded_user


async def _get(
    server: LiveServer, headers: dict[str, str], path: str = "/v1/account"
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url) as http:
        return await http.get(path, headers=headers)


def _assert_unauthorized(r: httpx.Response) -> None:
    assert r.status_code == 401, r.text
    assert r.json()["error"]["code"] == "UNAUTHORIZED"


async def test_a_correctly_signed_request_is_accepted(live_server: LiveServer) -> None:
    alice = funded_user(live_server.core, "alice")
    r = await _get(
        live_server, signed_headers(alice.api_key, alice.api_secret, "GET", "/v1/account")
    )
    assert r.status_code == 200


async def test_missing_signature_headers_are_refused(live_server: LiveServer) -> None:
    alice = funded_user(live_server.core, "alice")
    _assert_unauthorized(await _get(live_server, {}))
    headers = signed_headers(alice.api_key, alice.api_secret, "GET", "/v1/account")
    del headers[SIGNATURE_HEADER]
    _assert_unauthorized(await _get(live_server, headers))


async def test_a_wrong_signature_or_key_is_refused(live_server: LiveServer) -> None:
    alice = funded_user(live_server.core, "alice")
    _assert_unauthorized(
        await _get(
            live_server, signed_headers(alice.api_key, "not-the-secret", "GET", "/v1/account")
        )
    )
    _assert_unauthorized(
        await _get(
            live_server, signed_headers("lk_unknown", alice.api_secret, "GET", "/v1/account")
        )
    )
    # signed for another path
    _assert_unauthorized(
        await _get(
            live_server, signed_headers(alice.api_key, alice.api_secret, "GET", "/v1/history")
        )
    )


async def test_an_expired_timestamp_is_refused(live_server: LiveServer) -> None:
    alice = funded_user(live_server.core, "alice")
    old_ms = int(time.time() * 1000) - 6_000
    headers = {
        "X-Lngate-Key": alice.api_key,
        TIMESTAMP_HEADER: str(old_ms),
        SIGNATURE_HEADER: sign(alice.api_secret, old_ms, "GET", "/v1/account", b""),
    }
    _assert_unauthorized(await _get(live_server, headers))


async def test_a_replayed_request_is_refused(live_server: LiveServer) -> None:
    alice = funded_user(live_server.core, "alice")
    headers = signed_headers(alice.api_key, alice.api_secret, "GET", "/v1/account")
    assert (await _get(live_server, headers)).status_code == 200
    _assert_unauthorized(await _get(live_server, headers))


async def test_a_tampered_body_is_refused_and_moves_nothing(live_server: LiveServer) -> None:
    alice = funded_user(live_server.core, "alice", 5_000)
    funded_user(live_server.core, "bob")
    signed_body = b'{"to": "bob", "amount_msat": 1}'
    headers = signed_headers(alice.api_key, alice.api_secret, "POST", "/v1/transfers", signed_body)
    headers |= {"Idempotency-Key": "t", "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        r = await http.post(
            "/v1/transfers", content=b'{"to": "bob", "amount_msat": 4000}', headers=headers
        )
    _assert_unauthorized(r)
    async with AsyncClient(live_server.url, alice.api_key, alice.api_secret) as c:
        assert (await c.get("/v1/account")).json()["available_msat"] == 5_000


async def test_a_user_cannot_read_or_move_another_users_money(live_server: LiveServer) -> None:
    alice = funded_user(live_server.core, "alice", 5_000)
    mallory = funded_user(live_server.core, "mallory")
    async with AsyncClient(live_server.url, mallory.api_key, mallory.api_secret) as c:
        account = (await c.get("/v1/account")).json()
        assert account["username"] == "mallory" and account["available_msat"] == 0
        history = (await c.get("/v1/history")).json()
        assert history["entries"] == []
        # there is no parameter that names the payer: mallory can only spend her own balance
        r = await c.post("/v1/transfers", {"to": "mallory", "amount_msat": 1})
        assert r.status_code == 400
        r = await c.post("/v1/transfers", {"to": "alice", "amount_msat": 1})
        assert r.json()["error"]["code"] == "INSUFFICIENT_FUNDS"
    # mallory's key with alice's name in a header does nothing either
    headers = signed_headers(mallory.api_key, alice.api_secret, "GET", "/v1/account")
    _assert_unauthorized(await _get(live_server, headers))
    async with AsyncClient(live_server.url, alice.api_key, alice.api_secret) as c:
        assert (await c.get("/v1/account")).json()["available_msat"] == 5_000
