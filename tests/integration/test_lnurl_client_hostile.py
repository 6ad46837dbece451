"""The LNURL client against a hostile LNURL-pay service: whatever the other side sends, resolving
a Lightning Address ends in a typed refusal (never a 500), within one deadline, having read at
most a bounded amount."""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import hashlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from lngate.bootstrap import Core
from lngate.client import AsyncClient
from lngate.config import Config
from lngate.domain.errors import InvalidRequest
from lngate.lightning.bolt11 import decode_bolt11
from lngate.lightning.simnet import SimnetNetwork
from lngate.services.lnurl_client import (
    JSON_MAX_DEPTH,
    DestinationNotAllowed,
    HttpLnurlResolver,
    LnurlFailed,
    check_destination,
    parse_address,
    resolve_invoice,
)
from tests.conftest import LiveServer, funded_user, started_core
from tests.helpers import available_msat

AMOUNT_MSAT = 25_000
FUNDS = 10_000_000
PAY_PATH = "/.well-known/lnurlp/carol"
HUNDRED_MB = 100_000_000

Send = Callable[[bytes], Awaitable[None]]
Answer = Callable[[Send, dict[str, list[str]]], Awaitable[None]]


def head(status: str = "200 OK", headers: dict[str, str] | None = None) -> bytes:
    lines = [
        f"HTTP/1.1 {status}",
        "Connection: close",
        *[f"{k}: {v}" for k, v in (headers or {}).items()],
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def raw(data: bytes) -> Answer:
    """Exactly these bytes on the wire, head included."""

    async def answer(send: Send, _: dict[str, list[str]]) -> None:
        await send(data)

    return answer


def body(data: bytes, status: str = "200 OK", **extra: str) -> Answer:
    headers = {"Content-Type": "application/json", "Content-Length": str(len(data))}
    headers.update({k.replace("_", "-"): v for k, v in extra.items()})
    return raw(head(status, headers) + data)


def json_body(value: object) -> Answer:
    return body(json.dumps(value).encode())


def delayed(delay_s: float, late: Answer) -> Answer:
    async def answer(send: Send, query: dict[str, list[str]]) -> None:
        await asyncio.sleep(delay_s)
        await late(send, query)

    return answer


def then(first: Answer, second: Answer) -> Answer:
    async def answer(send: Send, query: dict[str, list[str]]) -> None:
        await first(send, query)
        await second(send, query)

    return answer


def trickled(data: bytes, every_s: float = 0.05) -> Answer:
    """One byte at a time: each read is quick, the whole answer never is."""

    async def answer(send: Send, _: dict[str, list[str]]) -> None:
        for i in range(len(data)):
            await send(data[i : i + 1])
            await asyncio.sleep(every_s)

    return answer


def endless(prefix: bytes, framing: str) -> Answer:
    """A valid JSON object followed by 100 MB of (valid JSON) whitespace."""

    async def answer(send: Send, _: dict[str, list[str]]) -> None:
        headers = {"Content-Type": "application/json"}
        if framing == "content-length":
            headers["Content-Length"] = str(len(prefix) + HUNDRED_MB)
        if framing == "chunked":
            headers["Transfer-Encoding"] = "chunked"
        await send(head("200 OK", headers))
        chunk = prefix + b" " * (65_536 - len(prefix))
        for sent in range(0, HUNDRED_MB, len(chunk)):
            data = chunk if sent == 0 else b" " * len(chunk)
            await send(b"%x\r\n%s\r\n" % (len(data), data) if framing == "chunked" else data)

    return answer


class HostileLnurlService:
    """A raw HTTP/1.1 server on 127.0.0.1 for carol's Lightning Address, each answer scripted
    byte by byte. Unspoiled, it is a well-behaved LNURL-pay service minting simnet invoices."""

    def __init__(self, simnet: SimnetNetwork) -> None:
        self.simnet = simnet
        self.pay_request: dict[str, Any] = {}
        self.answers: dict[str, Answer] = {PAY_PATH: self._pay_request, "/cb": self._invoice}
        self.asked: list[str] = []
        self.bytes_sent = 0
        self._tasks: set[asyncio.Task[Any]] = set()

    async def __aenter__(self) -> HostileLnurlService:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        self.address = f"carol@127.0.0.1:{self.port}"
        self.callback = f"http://127.0.0.1:{self.port}/cb"
        self.pay_request = {
            "tag": "payRequest",
            "callback": self.callback,
            "minSendable": 1_000,
            "maxSendable": 10**9,
            "metadata": json.dumps([["text/identifier", self.address], ["text/plain", "[{"]]),
        }
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _pay_request(self, send: Send, query: dict[str, list[str]]) -> None:
        await json_body(self.pay_request)(send, query)

    async def _invoice(self, send: Send, query: dict[str, list[str]]) -> None:
        metadata = str(self.pay_request["metadata"]).encode("utf-8", "surrogatepass")
        invoice = self.simnet.create_invoice(
            "carol", int(query["amount"][0]), description_hash=hashlib.sha256(metadata).digest()
        )
        await json_body({"pr": invoice.bolt11, "routes": []})(send, query)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)

        async def send(data: bytes) -> None:
            writer.write(data)
            await writer.drain()
            self.bytes_sent += len(data)

        try:
            request = await reader.readuntil(b"\r\n\r\n")
            path, _, query = request.split(b" ")[1].decode().partition("?")
            self.asked.append(path)
            await self.answers.get(path, body(b"{}", "404 Not Found"))(send, parse_qs(query))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client hung up on us, as it should
        finally:
            writer.close()
            self._tasks.discard(task)


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[HostileLnurlService]:
    with SimnetNetwork(tmp_path / "simnet") as simnet:
        async with HostileLnurlService(simnet) as s:
            yield s


async def resolve(service: HostileLnurlService, **kw: Any) -> str:
    return await resolve_invoice(service.address, AMOUNT_MSAT, allow_private=True, **kw)


def honest_pay_request(service: HostileLnurlService) -> bytes:
    return json.dumps(service.pay_request).encode()


def nested(depth: int, inner: object = 1) -> object:
    for _ in range(depth):
        inner = [inner]
    return inner


# -- the baseline: an honest service --------------------------------------------------------------


async def test_an_honest_service_yields_its_checked_invoice(service: HostileLnurlService) -> None:
    # A field nests exactly as deep as allowed, with brackets (and a quote) in its innermost
    # string: text, not nesting.
    service.pay_request["extra"] = nested(JSON_MAX_DEPTH - 1, inner='"[{[{')
    pr = await resolve(service)
    assert decode_bolt11(pr).amount_msat == AMOUNT_MSAT
    assert service.asked == [PAY_PATH, "/cb"]


async def test_the_resolver_port_resolves_as_the_function_does(
    service: HostileLnurlService,
) -> None:
    pr = await HttpLnurlResolver(allow_private=True).resolve_invoice(service.address, AMOUNT_MSAT)
    assert decode_bolt11(pr).amount_msat == AMOUNT_MSAT


async def test_the_resolver_port_refuses_private_hosts_unless_allowed(
    service: HostileLnurlService,
) -> None:
    # Without allow_private it asks for https on a public address: loopback is not one.
    with pytest.raises(DestinationNotAllowed):
        await HttpLnurlResolver(allow_private=False).resolve_invoice(service.address, AMOUNT_MSAT)
    assert service.asked == []


# -- the address our user typed -------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "alice@example.com:99999",
        "alice@example.com:65536",
        "alice@example.com:0",
        "alice@example.com:",
        "alice@example.com:-1",
        "alice@example.com:80:80",
        "alice@example.com:\uff18\uff10",  # fullwidth digits
        "alice@" + "a" * 64 + ".com",  # a DNS label is 1-63 characters
        "alice@a..b",
        "alice@.example.com",
        "alice@example.com.",
        "alice@-example.com",
        "alice@example-.com",
        "alice@" + ".".join(["a" * 63] * 4) + ".com",  # more than 253 characters
        "alice@exa_mple.com",
        "alice@[::1]",
        "alice@\u212aelvin.com",  # the Kelvin sign lower-cases to an ASCII "k"
        "alice\n@example.com",
        "@example.com",
        "alice@",
        "alice@@example.com",
        None,
        42,
    ],
)
async def test_a_malformed_address_is_an_invalid_request(address: Any) -> None:
    with pytest.raises(InvalidRequest):
        parse_address(address)
    for allow_private in (False, True):
        with pytest.raises(InvalidRequest):
            await resolve_invoice(address, AMOUNT_MSAT, allow_private=allow_private)


@pytest.mark.parametrize(
    ("address", "parsed"),
    [
        ("alice@example.com", ("alice", "example.com")),
        (" Alice@Example.COM:8443 ", ("alice", "example.com:8443")),
        ("bob.smith+tip@pay.example.co.uk", ("bob.smith+tip", "pay.example.co.uk")),
        ("carol@127.0.0.1:65535", ("carol", "127.0.0.1:65535")),
        ("x@xn--bcher-kva.example:1", ("x", "xn--bcher-kva.example:1")),
        ("x@" + "a" * 63 + ".com", ("x", "a" * 63 + ".com")),
        (
            "x@" + ".".join(["a" * 63] * 3 + ["b" * 61]),
            ("x", ".".join(["a" * 63] * 3 + ["b" * 61])),
        ),
    ],
)
def test_a_well_formed_address_is_accepted(address: str, parsed: tuple[str, str]) -> None:
    assert parse_address(address) == parsed


# -- URLs the service gives us --------------------------------------------------------------------


@pytest.mark.parametrize(
    "callback",
    [
        "http://[::1",
        "http://[::1]:99999/cb",
        "http://127.0.0.1:99999/cb",
        "http://127.0.0.1:0/cb",
        "http://127.0.0.1:abc/cb",
        "http://127.0.0.1/c\nb",
        "http://127.0.0.1/\ud800",
        "http://" + "a" * 64 + ".com/cb",
        "http://a..b/cb",
        "CB?pad=" + "x" * 3_000,  # our own callback, padded past any sane URL length
        "http:///cb",
        "ftp://127.0.0.1/cb",
        "javascript:alert(1)",
        "",
        42,
        None,
        ["http://127.0.0.1/cb"],
        {"url": "http://127.0.0.1/cb"},
    ],
)
async def test_an_unusable_callback_url_is_refused(
    service: HostileLnurlService, callback: object
) -> None:
    service.pay_request["callback"] = (
        callback.replace("CB", service.callback) if isinstance(callback, str) else callback
    )
    with pytest.raises(LnurlFailed):
        await resolve(service)
    assert service.asked == [PAY_PATH]


@pytest.mark.parametrize("allow_private", [False, True])
@pytest.mark.parametrize(
    "url", ["https://[::1", "https://[::1]:99999/", "https://example.com:99999/", "https://h:x/", 7]
)
async def test_an_unparseable_destination_is_refused(url: Any, allow_private: bool) -> None:
    with pytest.raises(LnurlFailed):
        await check_destination(url, allow_private=allow_private)


@pytest.mark.parametrize("hostname", ["a" * 64 + ".example.com", "a..example.com", ".example.com"])
async def test_a_hostname_dns_cannot_encode_is_refused(hostname: str) -> None:
    # socket.getaddrinfo raises UnicodeError (from the idna codec), not OSError, for these.
    with pytest.raises(LnurlFailed, match="cannot resolve"):
        await check_destination(f"https://{hostname}/cb", allow_private=False)


# -- nesting --------------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", [PAY_PATH, "/cb"])
@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(b"[" * 5_000 + b"]" * 5_000, id="arrays"),
        pytest.param(b'{"a":' * 5_000 + b"1" + b"}" * 5_000, id="objects"),
        pytest.param(b"[" * 5_000, id="unclosed"),
    ],
)
async def test_an_answer_nested_5000_deep_is_refused(
    service: HostileLnurlService, endpoint: str, answer: bytes
) -> None:
    service.answers[endpoint] = body(answer)
    with pytest.raises(LnurlFailed, match="nested too deeply"):
        await resolve(service)


async def test_a_pay_request_one_level_past_the_depth_bound_is_refused(
    service: HostileLnurlService,
) -> None:
    service.pay_request["extra"] = nested(JSON_MAX_DEPTH)  # inside the object: one level too many
    with pytest.raises(LnurlFailed, match="nested too deeply"):
        await resolve(service)
    assert service.asked == [PAY_PATH]


# -- one deadline ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spoil",
    ["silent", "trickled-head", "trickled-body", "slow-pay-request-and-slow-callback"],
)
async def test_one_deadline_bounds_the_whole_resolution(
    service: HostileLnurlService, spoil: str
) -> None:
    data = honest_pay_request(service)
    full = head("200 OK", {"Content-Length": str(len(data))})
    if spoil == "silent":
        service.answers[PAY_PATH] = delayed(3_600, raw(b""))
    elif spoil == "trickled-head":
        service.answers[PAY_PATH] = trickled(full + data)
    elif spoil == "trickled-body":
        service.answers[PAY_PATH] = then(raw(full), trickled(data))
    else:  # each answer within the deadline, both together not
        service.answers[PAY_PATH] = delayed(0.6, service.answers[PAY_PATH])
        service.answers["/cb"] = delayed(0.6, service.answers["/cb"])
    started = time.monotonic()
    with pytest.raises(LnurlFailed, match="did not resolve within 1 s"):
        await resolve(service, deadline_s=1.0)
    assert time.monotonic() - started < 2.0


async def test_the_resolver_port_keeps_its_deadline(service: HostileLnurlService) -> None:
    service.answers[PAY_PATH] = delayed(3_600, raw(b""))
    resolver = HttpLnurlResolver(allow_private=True, deadline_s=0.5)
    with pytest.raises(LnurlFailed, match=r"did not resolve within 0\.5 s"):
        await resolver.resolve_invoice(service.address, AMOUNT_MSAT)


# -- size -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("framing", ["content-length", "chunked", "until-close"])
async def test_a_huge_answer_is_refused_without_reading_it(
    service: HostileLnurlService, framing: str
) -> None:
    service.answers[PAY_PATH] = endless(honest_pay_request(service), framing)
    started = time.monotonic()
    with pytest.raises(LnurlFailed, match="too large"):
        await resolve(service)
    assert time.monotonic() - started < 2.0
    await asyncio.sleep(0.2)  # let the server notice we hung up
    assert service.bytes_sent < HUNDRED_MB // 10


# -- everything else the service can get wrong ----------------------------------------------------


Spoil = Callable[[bytes], Answer]  # the honest pay request's bytes -> what is served instead


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(lambda ok: body(b"<html>" + ok + b"</html>"), id="html"),
        pytest.param(lambda ok: body(ok[:-1] + b', "x": "\xff"}'), id="invalid-utf8"),
        pytest.param(lambda ok: body(ok.decode().encode("utf-16")), id="utf16"),
        pytest.param(lambda ok: body(ok[:-1]), id="truncated"),
        pytest.param(lambda ok: body(ok + b"x"), id="trailing-garbage"),
        pytest.param(lambda ok: body(b""), id="empty"),
        pytest.param(lambda ok: body(b"[" + ok + b"]"), id="list"),
        pytest.param(lambda ok: body(json.dumps(ok.decode()).encode()), id="string"),
        pytest.param(lambda ok: body(b"null"), id="null"),
        pytest.param(lambda ok: body(ok[:-1] + b', "n": ' + b"1" * 5_000 + b"}"), id="huge-int"),
        pytest.param(lambda ok: body(b'{"status": "ERROR", "reason": "no"}'), id="lud06-error"),
        pytest.param(lambda ok: body(ok, "404 Not Found"), id="http-404"),
        pytest.param(lambda ok: body(ok, "500 Internal Server Error"), id="http-500"),
        pytest.param(lambda ok: body(gzip.compress(ok), content_encoding="gzip"), id="gzip"),
        pytest.param(lambda ok: raw(head("200 OK", {"Content-Length": "9" * 5_000})), id="cl-huge"),
        pytest.param(lambda ok: raw(head("200 OK", {"Content-Length": "x"})), id="cl-nan"),
        pytest.param(lambda ok: raw(head("200 OK", {"Content-Length": "999"}) + ok), id="cl-short"),
        pytest.param(lambda ok: raw(b"HTTP/1.1 abc\r\n\r\n" + ok), id="bad-status-line"),
        pytest.param(lambda ok: raw(b"SSH-2.0-OpenSSH_9.6\r\n"), id="not-http"),
        pytest.param(lambda ok: raw(b""), id="closed-at-once"),
    ],
)
async def test_a_broken_answer_is_refused(service: HostileLnurlService, spoil: Spoil) -> None:
    service.answers[PAY_PATH] = spoil(honest_pay_request(service))
    with pytest.raises(LnurlFailed):
        await resolve(service)
    assert service.asked == [PAY_PATH]


async def test_a_redirect_is_not_followed(service: HostileLnurlService) -> None:
    service.answers[PAY_PATH] = body(b"", "302 Found", location="http://127.0.0.1:1/x")
    with pytest.raises(DestinationNotAllowed):
        await resolve(service)


@pytest.mark.parametrize("field", ["minSendable", "maxSendable"])
@pytest.mark.parametrize(
    "value", [True, False, 1_000.0, 1e3, "1000", None, 0, -1, 10**30, [1000], float("nan")]
)
async def test_amounts_must_be_whole_msat_within_the_supply(
    service: HostileLnurlService, field: str, value: object
) -> None:
    service.pay_request[field] = value
    with pytest.raises(LnurlFailed):
        await resolve(service)
    assert service.asked == [PAY_PATH]  # refused before the callback is asked for an invoice


@pytest.mark.parametrize("metadata", ["\ud800", 42, None, ["text/plain", "x"]])
async def test_metadata_must_be_a_valid_string(
    service: HostileLnurlService, metadata: object
) -> None:
    service.pay_request["metadata"] = metadata
    with pytest.raises(LnurlFailed):
        await resolve(service)
    assert service.asked == [PAY_PATH]


# -- through the API ------------------------------------------------------------------------------


@pytest.fixture
def permissive_core(config: Config) -> Iterator[Core]:
    """Private hosts allowed (development setting), so a loopback LNURL service is reachable."""
    with started_core(dataclasses.replace(config, lnurl_allow_private_hosts=True)) as c:
        yield c


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(body(b"[" * 5_000 + b"]" * 5_000), id="deep-json"),
        pytest.param(body(b'{"status": "ERROR", "reason": "\\ud800"}'), id="unencodable-reason"),
    ],
)
async def test_a_withdrawal_to_a_hostile_service_is_refused_and_holds_nothing(
    permissive_core: Core, service: HostileLnurlService, answer: Answer
) -> None:
    service.answers[PAY_PATH] = answer
    with LiveServer(permissive_core) as server:
        alice = funded_user(server.core, "alice", FUNDS)
        async with AsyncClient(server.url, alice.api_key, alice.api_secret) as c:
            r = await c.post(
                "/v1/withdrawals",
                {"lightning_address": service.address, "amount_msat": AMOUNT_MSAT},
            )
            assert r.status_code == 400, r.text
            assert r.json()["error"]["code"] == "LNURL_FAILED"
            assert await available_msat(c) == FUNDS
            assert (await c.get("/v1/withdrawals")).json()["withdrawals"] == []


async def test_a_withdrawal_to_an_impossible_port_is_an_invalid_request(
    permissive_core: Core,
) -> None:
    with LiveServer(permissive_core) as server:
        alice = funded_user(server.core, "alice", FUNDS)
        async with AsyncClient(server.url, alice.api_key, alice.api_secret) as c:
            r = await c.post(
                "/v1/withdrawals",
                {"lightning_address": "carol@127.0.0.1:99999", "amount_msat": AMOUNT_MSAT},
            )
            assert r.status_code == 400, r.text
            assert r.json()["error"]["code"] == "INVALID_REQUEST"
            assert await available_msat(c) == FUNDS
