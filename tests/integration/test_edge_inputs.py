"""What a hostile client sends gets a documented 4xx, changes nothing, and meets the limits
before any work is done (issue 10 §4)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from dataclasses import replace
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest

from lngate.api.app import create_app
from lngate.api.request_limits import RequestLimits
from lngate.bootstrap import Core, accounts_for, use_cases
from lngate.client import signed_headers
from lngate.config import Config
from lngate.lightning.simnet import SimnetNetwork, SimnetNode
from lngate.security.signing import KEY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER
from lngate.store.users import Role
from tests.conftest import LiveServer, funded_user, started_core

UNICODE_DIGITS = ["¹", "١٢٣", "𝟗", "٣"]  # noqa: RUF001 (that is the point)
NOT_PLAIN_DIGITS = [*UNICODE_DIGITS, " 12", "+12", "1_000", "12.0", "-1", "9" * 100, "0x10"]


@pytest.fixture
def server(core: Core) -> Iterator[LiveServer]:
    with LiveServer(core, watcher=False, admin=True) as s:
        yield s


def _error(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code, r.text


def _books(core: Core) -> tuple[Any, ...]:
    def read(tx: Any) -> tuple[Any, ...]:
        return (
            tx.all(
                "SELECT id, debits_pending, debits_posted, credits_pending, credits_posted "
                "FROM accounts ORDER BY id"
            ),
            tx.scalar("SELECT COUNT(*) FROM transfers"),
            tx.scalar("SELECT COUNT(*) FROM deposits"),
            tx.scalar("SELECT COUNT(*) FROM withdrawals"),
        )

    return core.uow.read_sync(read)


async def _send(
    url: str,
    method: str,
    path: str,
    creds: Any = None,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    all_headers = {"Content-Type": "application/json"} if body else {}
    if creds is not None:
        all_headers |= signed_headers(creds.api_key, creds.api_secret, method, path, body)
    all_headers |= headers or {}
    async with httpx.AsyncClient(base_url=url) as http:
        return await http.request(
            method, path, content=body, headers={k: _raw(v) for k, v in all_headers.items()}
        )


def _raw(value: str) -> bytes:
    """A header's bytes as a hostile client sends them: one byte per character where it can
    (``¹`` is 0xB9, which the server reads back as ``¹``), UTF-8 otherwise."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode()


# -- numbers are ASCII digits ------------------------------------------------------------------


@pytest.mark.parametrize("timestamp", [v for v in NOT_PLAIN_DIGITS if not v.startswith(" ")])
async def test_a_timestamp_that_is_not_ascii_digits_is_401_before_the_key_is_looked_up(
    server: LiveServer, timestamp: str
) -> None:
    headers = {KEY_HEADER: "lk_nobody", TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: "00"}
    r = await _send(server.url, "GET", "/v1/account", headers=headers)
    _error(r, 401, "UNAUTHORIZED")


@pytest.mark.parametrize("value", NOT_PLAIN_DIGITS)
@pytest.mark.parametrize(
    "path",
    ["/v1/deposits?cursor=", "/v1/withdrawals?limit=", "/v1/history?cursor=", "/v1/events?after="],
)
async def test_query_numbers_that_are_not_ascii_digits_are_400(
    server: LiveServer, path: str, value: str
) -> None:
    alice = funded_user(server.core, "alice")
    r = await _send(server.url, "GET", path + quote(value, safe=""), alice)
    _error(r, 400, "INVALID_REQUEST")


@pytest.mark.parametrize("last_event_id", [*UNICODE_DIGITS, "9" * 100, "-1", "abc", "1a"])
async def test_a_last_event_id_that_is_not_an_event_id_is_400(
    server: LiveServer, last_event_id: str
) -> None:
    alice = funded_user(server.core, "alice")
    r = await _send(
        server.url, "GET", "/v1/events", alice, headers={"Last-Event-ID": last_event_id}
    )
    _error(r, 400, "INVALID_REQUEST")


@pytest.mark.parametrize("amount", ["%C2%B9", "%D9%A1%D9%A2000", "+10000", "1_000_000", "9" * 100])
async def test_the_lnurl_callback_refuses_amounts_that_are_not_ascii_digits(
    server: LiveServer, amount: str
) -> None:
    funded_user(server.core, "alice")
    before = _books(server.core)
    async with httpx.AsyncClient(base_url=server.url) as http:
        r = await http.get(f"/lnurlp/alice/callback?amount={amount}")
    assert r.status_code == 200, r.text  # LUD-06: wallets read the refusal from the body
    assert r.json()["status"] == "ERROR"
    assert _books(server.core) == before


# -- bodies ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"amount_msat": 1000, "memo": "\xff\xfe"}', "MALFORMED_JSON"),  # not UTF-8
        (b'{"amount_msat": 1000, "memo": "\\ud800"}', "MALFORMED_JSON"),  # a lone surrogate
        (b"[" * 5000 + b"]" * 5000, "MALFORMED_JSON"),
        (b'{"amount_msat": 1e400}', "MALFORMED_JSON"),
        (b'{"amount_msat": 1000, "memo": "a\\u0000b"}', "INVALID_REQUEST"),  # PostgreSQL: no NUL
        (orjson.dumps({"amount_msat": 1000, "memo": "é" * 320}), "INVALID_REQUEST"),  # 640 bytes
    ],
    ids=["not-utf8", "lone-surrogate", "deep", "infinite", "nul", "memo-over-639-bytes"],
)
async def test_a_deposit_body_that_cannot_be_taken_is_400_and_creates_nothing(
    server: LiveServer, body: bytes, code: str
) -> None:
    alice = funded_user(server.core, "alice")
    before = _books(server.core)
    r = await _send(server.url, "POST", "/v1/deposits", alice, body)
    _error(r, 400, code)
    assert _books(server.core) == before


async def test_a_memo_of_639_bytes_fits_an_invoice(server: LiveServer) -> None:
    alice = funded_user(server.core, "alice")
    body = orjson.dumps({"amount_msat": 1000, "memo": "é" * 319 + "a"})
    r = await _send(server.url, "POST", "/v1/deposits", alice, body)
    assert r.status_code == 201, r.text


async def test_a_nul_in_the_url_is_400(server: LiveServer) -> None:
    alice = funded_user(server.core, "alice")
    r = await _send(server.url, "GET", "/v1/deposits/a%00b", alice)
    _error(r, 400, "INVALID_REQUEST")


# -- body size ---------------------------------------------------------------------------------


@pytest.mark.parametrize("listener", ["public", "admin"])
async def test_a_declared_body_over_the_limit_is_413_unread_and_unauthenticated(
    server: LiveServer, listener: str
) -> None:
    url = server.url if listener == "public" else server.admin_url
    host, port = url.removeprefix("http://").split(":")
    # Declares 100 MB and sends none of it: the answer comes without waiting for the body.
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(
            b"POST /v1/deposits HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000000\r\n\r\n"
        )
        answer = b""
        while chunk := s.recv(4096):  # the server closes the connection after its answer
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413"), answer
    assert b'"PAYLOAD_TOO_LARGE"' in answer


async def test_a_streamed_body_over_the_limit_is_413() -> None:
    """Chunked, no Content-Length: reading stops at the limit, the rest is never asked for."""
    sent = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        sent += 1024
        return {"type": "http.request", "body": b"x" * 1024, "more_body": sent < 100_000_000}

    reached_app = False

    async def app(scope: Any, receive: Any, send: Any) -> None:
        nonlocal reached_app
        reached_app = True

    answers: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        answers.append(message)

    limits = RequestLimits(app, max_body_bytes=64 * 1024)
    scope = {"type": "http", "method": "POST", "path": "/v1/transfers", "headers": []}
    await limits(scope, receive, send)
    assert answers[0]["status"] == 413
    assert orjson.loads(answers[1]["body"])["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert sent <= 65 * 1024
    assert not reached_app


async def test_a_body_at_the_limit_is_read(server: LiveServer) -> None:
    alice = funded_user(server.core, "alice")
    body = orjson.dumps({"amount_msat": 1000, "memo": "a"}).ljust(64 * 1024)
    r = await _send(server.url, "POST", "/v1/deposits", alice, body)
    assert r.status_code == 201, r.text


# -- authentication and names ------------------------------------------------------------------


async def test_an_unknown_key_a_wrong_signature_and_a_key_of_another_listener_look_the_same(
    server: LiveServer,
) -> None:
    alice = funded_user(server.core, "alice")
    ops = accounts_for(server.core).create_user_sync("ops", Role.ADMIN)
    answers = [
        await _send(server.url, "GET", "/v1/account", creds)
        for creds in (
            type(alice)("", "", "lk_unknown", alice.api_secret),
            type(alice)("", "", alice.api_key, "wrong-secret"),
            ops,
        )
    ]
    assert {r.status_code for r in answers} == {401}
    assert len({r.text for r in answers}) == 1


async def test_an_admin_key_name_is_not_an_address(server: LiveServer) -> None:
    alice = funded_user(server.core, "alice", 10_000_000)
    accounts_for(server.core).create_user_sync("ops", Role.ADMIN)
    before = _books(server.core)
    body = orjson.dumps({"to": "ops", "amount_msat": 1000})
    r = await _send(
        server.url, "POST", "/v1/transfers", alice, body, headers={"Idempotency-Key": "k1"}
    )
    _error(r, 404, "UNKNOWN_USER")
    async with httpx.AsyncClient(base_url=server.url) as http:
        assert (await http.get("/.well-known/lnurlp/ops")).status_code == 404
        assert (await http.get("/lnurlp/ops/callback?amount=1000")).status_code == 404
    body = orjson.dumps(
        {"lightning_address": f"ops@{server.core.config.public_host}", "amount_msat": 1000}
    )
    r = await _send(
        server.url, "POST", "/v1/withdrawals", alice, body, headers={"Idempotency-Key": "k2"}
    )
    assert r.status_code == 404, r.text
    assert _books(server.core) == before


# -- streams and unsigned work -----------------------------------------------------------------


async def test_one_account_cannot_take_every_event_stream(core: Core) -> None:
    with LiveServer(core, watcher=False) as server:
        alice, bob = funded_user(core, "alice"), funded_user(core, "bob")
        per_user = core.config.event_streams_per_user
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:

            async def open_stream(creds: Any) -> tuple[int, Any]:
                headers = signed_headers(creds.api_key, creds.api_secret, "GET", "/v1/events")
                cm = http.stream("GET", "/v1/events", headers=headers)
                r = await cm.__aenter__()
                return r.status_code, cm

            opened = [await open_stream(alice) for _ in range(per_user)]
            assert [status for status, _ in opened] == [200] * per_user
            status, extra = await open_stream(alice)
            assert status == 429
            await extra.__aexit__(None, None, None)
            status, bobs = await open_stream(bob)
            assert status == 200  # everyone else still gets a stream
            await bobs.__aexit__(None, None, None)
            await opened[0][1].__aexit__(None, None, None)
            for _ in range(50):  # the server sees the disconnect within its poll interval
                status, again = await open_stream(alice)
                await again.__aexit__(None, None, None)
                if status == 200:
                    break
                await asyncio.sleep(0.1)
            assert status == 200
            for _, cm in opened[1:]:
                await cm.__aexit__(None, None, None)


async def test_lnurl_callbacks_are_rate_limited_per_client_address(config: Config) -> None:
    with started_core(replace(config, lnurl_callbacks_per_minute=3)) as core:
        funded_user(core, "alice")
        network = SimnetNetwork(core.config.simnet_dir)
        app = create_app(core, use_cases(core, SimnetNode(network)))

        async def callback(client: str) -> httpx.Response:
            transport = httpx.ASGITransport(app=app, client=(client, 5000))
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                return await http.get("/lnurlp/alice/callback?amount=10000")

        try:
            answers = [await callback("203.0.113.7") for _ in range(4)]
            assert [r.status_code for r in answers] == [200, 200, 200, 429]
            assert answers[3].json()["status"] == "ERROR"
            assert "pr" in (await callback("198.51.100.1")).json()  # another address is served
            deposits = core.uow.read_sync(lambda tx: tx.scalar("SELECT COUNT(*) FROM deposits"))
            assert deposits == 4  # the refused callback minted nothing
        finally:
            network.close()
