"""The LND adapter against recorded LND REST answers (tests/fixtures/lnd), served through
``httpx.MockTransport``; one test runs a real local HTTPS server to check TLS pinning.

The fixture bodies have LND's exact JSON shapes (lnd 0.19: int64 as strings, bytes as base64,
enums by name). The decode fixtures describe examples of the BOLT 11 spec
(lightning/bolts 11-payment-encoding.md, CC-BY 4.0), whose strings are in
``bolt11_vectors.json``.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import dataclasses
import datetime
import hashlib
import json
import socket
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from lngate.domain.errors import NodeError
from lngate.lightning.errors import (
    AlreadyPaid,
    InsufficientBalance,
    InvalidInvoice,
    InvalidNodeRequest,
    InvoiceExpired,
    InvoiceNotFound,
    NodeTimeout,
    NodeUnreachable,
    NoRoute,
    PermissionDenied,
)
from lngate.lightning.lnd import LndNode, ReconnectPolicy
from lngate.lightning.lnd._errors import (
    RpcStatus,
    node_error,
    parse_error_body,
    transport_error,
)
from lngate.lightning.lnd._mapping import (
    NodeBadResponse,
    map_closed_channel,
    map_payment,
    network_from_bolt11,
)
from lngate.lightning.lnd.signer import SignerProbe
from lngate.lightning.node import (
    CloseType,
    FailureReason,
    Invoice,
    InvoiceState,
    Network,
    Node,
    PaymentStatus,
)
from lngate.services.onchain_books import funding_fee_sat

FIXTURES = Path(__file__).parents[1] / "fixtures" / "lnd"
MACAROON_HEX = "0201036c6e6402f801030a10" + "ab" * 20
KEYS = json.loads((FIXTURES / "_fixture_keys.json").read_text())
VECTORS = json.loads((FIXTURES / "bolt11_vectors.json").read_text())
CAROL_INVOICE = (FIXTURES / "carol_invoice.txt").read_text().strip()
FAST = ReconnectPolicy(
    initial_delay_s=0.001, max_delay_s=0.002, attempts_max=3, healthy_after_s=60.0
)


def preimage(i: int) -> bytes:
    return bytes.fromhex(KEYS["preimages"][str(i)])


def payment_hash(i: int) -> bytes:
    return hashlib.sha256(preimage(i)).digest()


def body(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def stream_lines(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (FIXTURES / name).read_text().splitlines()]


# --- a scripted LND REST proxy ---------------------------------------------------------------

Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]


class ScriptedStream(httpx.AsyncByteStream):
    """Lines as LND's REST proxy streams them, then an ending: the server closes the stream
    ("close"), the connection drops ("drop"), nothing more comes ("hang"), or our read
    timeout fires ("idle")."""

    def __init__(self, messages: list[dict[str, Any]], end: str) -> None:
        self._chunks = [json.dumps(m).encode() + b"\n" for m in messages]
        self._end = end

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk
        if self._end == "drop":
            raise httpx.ReadError("connection reset by peer")
        if self._end == "idle":
            raise httpx.ReadTimeout("timed out")
        if self._end == "hang":
            await asyncio.Event().wait()


def json_answer(payload: Any, status: int = 200) -> Handler:
    async def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=payload)

    return answer


def stream_answer(messages: list[dict[str, Any]], end: str = "close") -> Handler:
    async def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=ScriptedStream(messages, end))

    return answer


def failing(exc: Exception) -> Handler:
    async def answer(request: httpx.Request) -> httpx.Response:
        raise exc

    return answer


class FakeLnd:
    """Answers each (method, path) from a queue of handlers (the last one repeats) and
    records every request."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], list[Handler]] = {}
        self.requests: list[httpx.Request] = []
        self.transport = httpx.MockTransport(self._handle)

    def on(self, method: str, path: str, *handlers: Handler) -> None:
        self.routes[(method, path)] = list(handlers)

    def sent(self, method: str, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and r.url.path == path]

    async def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        queue = self.routes.get((request.method, request.url.path))
        if not queue:
            return httpx.Response(404, json={"code": 5, "message": "Not Found", "details": []})
        handler = queue.pop(0) if len(queue) > 1 else queue[0]
        return await handler(request)


@pytest.fixture
async def lnd() -> AsyncIterator[tuple[FakeLnd, LndNode]]:
    fake = FakeLnd()
    node = LndNode(
        "https://127.0.0.1:8080", None, MACAROON_HEX, transport=fake.transport, reconnect=FAST
    )
    yield fake, node
    await node.close()


def sent_json(request: httpx.Request) -> Any:
    return json.loads(request.content)


# --- node ------------------------------------------------------------------------------------


async def test_lnd_node_is_a_node(lnd: tuple[FakeLnd, LndNode]) -> None:
    assert isinstance(lnd[1], Node)


async def test_get_info_maps_pubkey_network_height_and_alias(
    lnd: tuple[FakeLnd, LndNode],
) -> None:
    fake, node = lnd
    fake.on("GET", "/v1/getinfo", json_answer(body("getinfo.json")))

    info = await node.get_info()

    assert info.pubkey == KEYS["alice"]
    assert info.network is Network.REGTEST
    assert info.block_height == 1207
    assert info.alias == "alice"


async def test_the_macaroon_goes_with_every_request(lnd: tuple[FakeLnd, LndNode]) -> None:
    fake, node = lnd
    fake.on("GET", "/v1/getinfo", json_answer(body("getinfo.json")))
    fake.on("GET", "/v1/balance/blockchain", json_answer(body("balance_blockchain.json")))
    fake.on("GET", "/v1/balance/channels", json_answer(body("balance_channels.json")))
    fake.on("GET", f"/v1/payreq/{CAROL_INVOICE}", json_answer(body("payreq_carol.json")))
    fake.on("POST", "/v2/router/send", stream_answer(stream_lines("send_succeeded.jsonl")))
    track_path = f"/v2/router/track/{base64.urlsafe_b64encode(payment_hash(6)).decode()}"
    fake.on("GET", track_path, stream_answer(stream_lines("send_succeeded.jsonl")[-1:]))
    fake.on(
        "GET",
        "/v1/invoices/subscribe",
        stream_answer(stream_lines("subscribe_invoices_1.jsonl")[1:2], end="hang"),
    )

    await node.get_info()
    await node.balances()
    await node.pay(CAROL_INVOICE, fee_limit_msat=2_000)
    await node.track_payment(payment_hash(6))
    invoices = node.subscribe_invoices(4)
    await anext(invoices)
    await invoices.aclose()

    assert len(fake.requests) == 7
    assert {r.headers.get("Grpc-Metadata-macaroon") for r in fake.requests} == {MACAROON_HEX}


async def test_from_files_sends_the_binary_macaroon_as_hex(tmp_path: Path) -> None:
    macaroon = bytes.fromhex(MACAROON_HEX)
    (tmp_path / "invoice.macaroon").write_bytes(macaroon)
    fake = FakeLnd()
    fake.on("GET", "/v1/getinfo", json_answer(body("getinfo.json")))
    node = LndNode.from_files(
        "https://127.0.0.1:8080", None, tmp_path / "invoice.macaroon", transport=fake.transport
    )
    try:
        await node.get_info()
    finally:
        await node.close()

    assert fake.requests[0].headers["Grpc-Metadata-macaroon"] == MACAROON_HEX


def test_a_macaroon_that_is_not_hex_is_refused_at_construction() -> None:
    with pytest.raises(ValueError):
        LndNode("https://127.0.0.1:8080", None, "not hex")


async def test_close_closes_the_http_client() -> None:
    node = LndNode("https://127.0.0.1:8080", None, MACAROON_HEX)
    await node.close()
    with pytest.raises(RuntimeError):
        await node._client.get("/v1/getinfo")


# --- invoices --------------------------------------------------------------------------------


async def test_create_invoice_sends_msat_memo_expiry_and_reads_the_invoice_back(
    lnd: tuple[FakeLnd, LndNode],
) -> None:
    fake, node = lnd
    fake.on("POST", "/v1/invoices", json_answer(body("addinvoice.json")))
    fake.on("GET", f"/v1/invoice/{payment_hash(1).hex()}", json_answer(body("invoice_open.json")))

    invoice = await node.create_invoice(150_000_000, memo="deposit alice", expiry_s=3600)

    assert sent_json(fake.sent("POST", "/v1/invoices")[0]) == {
        "value_msat": "150000000",
        "memo": "deposit alice",
        "expiry": "3600",
    }
    assert invoice.payment_hash == payment_hash(1)
    assert invoice.bolt11 == body("addinvoice.json")["payment_request"]
    assert invoice.amount_msat == 150_000_000
    assert invoice.state is InvoiceState.OPEN
    assert invoice.add_index == 7
    assert invoice.settle_index == 0
    assert invoice.created_at == KEYS["now"] - 60
    assert invoice.expiry_s == 3600
    assert invoice.memo == "deposit alice"
    assert invoice.preimage is None  # a secret of the node until the invoice is paid


async def test_create_amountless_invoice_with_description_hash(
    lnd: tuple[FakeLnd, LndNode],
) -> None:
    fake, node = lnd
    fake.on("POST", "/v1/invoices", json_answer(body("addinvoice.json")))
    fake.on("GET", f"/v1/invoice/{payment_hash(1).hex()}", json_answer(body("invoice_open.json")))
    description_hash = hashlib.sha256(b'[["text/plain","pay alice"]]').digest()

    await node.create_invoice(None, description_hash=description_hash, expiry_s=600)

    sent = sent_json(fake.sent("POST", "/v1/invoices")[0])
    assert sent == {
        "expiry": "600",
        "description_hash": base64.b64encode(description_hash).decode(),
    }


@pytest.mark.parametrize(
    "kwargs",
    [{"amount_msat": -5}, {"amount_msat": 0}, {"amount_msat": 1_000, "expiry_s": 0}],
)
async def test_create_invoice_refuses_bad_amounts_without_asking_lnd(
    lnd: tuple[FakeLnd, LndNode], kwargs: dict[str, Any]
) -> None:
    fake, node = lnd

    with pytest.raises(InvalidNodeRequest):
        await node.create_invoice(**kwargs)

    assert fake.requests == []


async def test_lookup_of_a_settled_invoice_has_its_preimage_and_settle_index(
    lnd: tuple[FakeLnd, LndNode],
) -> None:
    fake, node = lnd
    fake.on(
        "GET", f"/v1/invoice/{payment_hash(1).hex()}", json_answer(body("invoice_settled.json"))
    )

    invoice = await node.lookup_invoice(payment_hash(1))

    assert invoice.state is InvoiceState.SETTLED
    assert invoice.settle_index == 5
    assert invoice.amount_paid_msat == 150_000_000
    assert invoice.preimage == preimage(1)
    assert invoice.settled_at == KEYS["now"] - 60 + 21


async def test_lookup_of_an_unknown_invoice_raises_invoice_not_found(
    lnd: tuple[FakeLnd, LndNode],
) -> None:
    fake, node = lnd
    missing = {"code": 5, "message": "unable to locate invoice", "details": []}
    fake.on("GET", f"/v1/invoice/{payment_hash(7).hex()}", json_answer(missing, status=404))

    with pytest.raises(InvoiceNotFound):
        await node.lookup_invoice(payment_hash(7))


async def test_cancel_invoice_posts_the_hash_in_base64(lnd: tuple[FakeLnd, LndNode]) -> None:
    fake, node = lnd
    fake.on("POST", "/v2/invoices/cancel", json_answer({}))

    await node.cancel_invoice(payment_hash(4))

    sent = sent_json(fake.sent("POST", "/v2/invoices/cancel")[0])
    assert sent == {"payment_hash": base64.b64encode(payment_hash(4)).decode()}


async def test_cancel_of_a_settled_invoice_is_refused_as_invalid(
    lnd: tuple[FakeLnd, LndNode],
) -> None:
    fake, node = lnd
    settled = {"code": 2, "message": "invoice already settled", "details": []}
    fake.on("POST", "/v2/invoices/cancel", json_answer(settled, status=500))

    with pytest.raises(InvalidNodeRequest, match="already settled"):  # the port's contract
        await node.cancel_invoice(payment_hash(1))


# --- decode ----------------------------------------------------------------------------------


async def test_decode_an_invoice_with_an_amount(lnd: tuple[FakeLnd, LndNode]) -> None:
    fake, node = lnd
    bolt11 = VECTORS["coffee"]
    fake.on("GET", f"/v1/payreq/{bolt11}", json_answer(body("payreq_coffee.json")))

    decoded = await node.decode(bolt11)

    assert decoded.bolt11 == bolt11
    assert decoded.payment_hash == bytes.fromhex(
        "0001020304050607080900010203040506070809000102030405060708090102"
    )
    assert decoded.payee == "03e7156ae33b0a208d0744199163177e909e80176e55d97a2f221ede0f934dd9ad"
    assert decoded.amount_msat == 250_000_000
    assert decoded.created_at == 1496314658
    assert decoded.expiry_s == 60
    assert decoded.expires_at == 1496314718
    assert decoded.network is Network.MAINNET
    assert decoded.description == "1 cup coffee"
    assert decoded.description_hash is None
    assert decoded.min_final_cltv_expiry == 18
    assert decoded.payment_secret == bytes([0x11]) * 32
    assert decoded.route_hints == ()


async def test_decode_an_amountless_invoice(lnd: tuple[FakeLnd, LndNode]) -> None:
    fake, node = lnd
    bolt11 = VECTORS["donation"]
    fake.on("GET", f"/v1/payreq/{bolt11}", json_answer(body("payreq_donation.json")))

    decoded = await node.decode(bolt11)

    assert decoded.amount_msat is None
    assert decoded.description == "Please consider supporting this project"


async def test_decode_description_hash_and_route_hints(lnd: tuple[FakeLnd, LndNode]) -> None:
    fake, node = lnd
    bolt11 = VECTORS["hashed_route_hints"]
    fake.on("GET", f"/v1/payreq/{bolt11}", json_answer(body("payreq_hashed_route_hints.json")))

    decoded = await node.decode(bolt11)

    assert decoded.description is None
    assert decoded.description_hash == bytes.fromhex(
        "3925b6f67e2c340036ed12093dd44e0368df1b6ea26c53dbe4811f58fd5db8c1"
    )
    (hint,) = decoded.route_hints
    assert [(h.pubkey[:6], h.short_channel_id) for h in hint] == [
        ("029e03", "66051x263430x1800"),  # 0x0102030405060708, as the spec writes it
        ("039e03", "197637x395016x2314"),  # 0x030405060708090a
    ]
    assert [
        (h.fee_base_msat, h.fee_proportional_millionths, h.cltv_expiry_delta) for h in hint
    ] == [
        (1, 20, 3),
        (2, 30, 4),
    ]


@pytest.mark.parametrize(
    ("bolt11", "network"),
    [
        (VECTORS["coffee"], Network.MAINNET),
        (VECTORS["testnet"], Network.TESTNET),
        (CAROL_INVOICE, Network.REGTEST),
        ("LNBCRT10U1P4SD2FS", Network.REGTEST),
        ("lntbs1p4sd2fs", Network.SIGNET),
        ("lnsb1p4sd2fs", Network.SIMNET),
    ],
)
def test_network_comes_from_the_bolt11_prefix(bolt11: str, network: Network) -> None:
    assert network_from_bolt11(bolt11) is network


@pytest.mark.parametrize("bolt11", ["", "lnbc1/../../v1/getinfo", "lnbc1 space", "lnbc?x=1"])
async def test_decode_refuses_what_is_not_bech32_without_asking_lnd(
    lnd: tuple[FakeLnd, LndNode], bolt11: str
) -> None:
    fake, node = lnd
    with pytest.raises(InvalidInvoice):
        await node.decode(bolt11)
    assert fake.requests == []


async def test_decode_error_from_lnd_is_invalid_invoice(lnd: tuple[FakeLnd, LndNode]) -> None:
    fake, node = lnd
    bolt11 = VECTORS["coffee"][:-1] + "q"
    refusal = {"code": 2, "message": "checksum failed. Expected 9lfyql, got ...", "details": []}
    fake.on("GET", f"/v1/payreq/{bolt11}", json_answer(refusal, status=500))

    with pytest.raises(InvalidInvoice):
        await node.decode(bolt11)


# --- invoice subscription --------------------------------------------------------------------


async def take(invoices: AsyncGenerator[Invoice, None], count: int) -> list[Invoice]:
    taken = [await anext(invoices) for _ in range(count)]
    await invoices.aclose()
    return taken


async def test_subscribe_yields_settled_invoices_and_resumes_after_a_drop(
    lnd: tuple[FakeLnd, LndNode],
) -> None:
    fake, node = lnd
    fake.on(
        "GET",
        "/v1/invoices/subscribe",
        stream_answer(stream_lines("subscribe_invoices_1.jsonl"), end="drop"),
        stream_answer(stream_lines("subscribe_invoices_2.jsonl"), end="hang"),
    )

    invoices = await take(node.subscribe_invoices(after_settle_index=4), 3)

    # The add event (OPEN) is not yielded; settle 6, replayed after the reconnect, only once.
    assert [(i.payment_hash, i.settle_index) for i in invoices] == [
        (payment_hash(1), 5),
        (payment_hash(2), 6),
        (payment_hash(3), 7),
    ]
    assert invoices[2].amount_paid_msat == 43_000
    assert invoices[2].preimage == preimage(3)
    requests = fake.sent("GET", "/v1/invoices/subscribe")
    assert [r.url.params["settle_index"] for r in requests] == ["4", "6"]


async def test_subscribe_reconnects_after_an_error_line_from_a_shutting_down_node(
    lnd: tuple[FakeLnd, LndNode],
) -> None:
    fake, node = lnd
    fake.on(
        "GET",
        "/v1/invoices/subscribe",
        stream_answer(stream_lines("subscribe_invoices_shutdown.jsonl")),
        failing(httpx.ConnectError("connection refused")),  # lnd restarting
        stream_answer(stream_lines("subscribe_invoices_2.jsonl"), end="hang"),
    )

    invoices = await take(node.subscribe_invoices(after_settle_index=4), 3)

    assert [i.settle_index for i in invoices] == [5, 6, 7]
    requests = fake.sent("GET", "/v1/invoices/subscribe")
    assert [r.url.params["settle_index"] for r in requests] == ["4", "5", "5"]


async def test_subscribe_reconnects_while_a_restarting_lnd_is_still_locked(
    lnd: tuple[FakeLnd, LndNode],
) -> None:
    # What lnd 0.21 answers (HTTP 500) in the moments after it restarts (regtest).
    locked = {"code": 2, "message": "wallet locked, unlock it to enable full RPC access"}
    starting = {
        "code": 2,
        "message": "the RPC server is in the process of starting up, but not yet ready to "
        "accept calls",
    }
    fake, node = lnd
    fake.on(
        "GET",
        "/v1/invoices/subscribe",
        stream_answer(stream_lines("subscribe_invoices_shutdown.jsonl")),
        json_answer({**locked, "details": []}, status=500),
        json_answer({"error": {**starting, "details": []}}, status=500),
        stream_answer(stream_lines("subscribe_invoices_2.jsonl"), end="hang"),
    )

    invoices = await take(node.subscribe_invoices(after_settle_index=4), 3)

    assert [i.settle_index for i in invoices] == [5, 6, 7]
    assert len(fake.sent("GET", "/v1/invoices/subscribe")) == 4


async def test_subscribe_stops_on_a_refused_macaroon(lnd: tuple[FakeLnd, LndNode]) -> None:
    fake, node = lnd
    fake.on(
        "GET",
        "/v1/invoices/subscribe",
        stream_answer(stream_lines("subscribe_invoices_permission_denied.jsonl")),
    )

    with pytest.raises(PermissionDenied):
        await anext(node.subscribe_invoices(4))
    assert len(fake.requests) == 1


async def test_subscribe_gives_up_after_bounded_reconnects(lnd: tuple[FakeLnd, LndNode]) -> None:
    fake, node = lnd
    fake.on("GET", "/v1/invoices/subscribe", failing(httpx.ConnectError("connection refused")))

    with pytest.raises(NodeUnreachable):
        await anext(node.subscribe_invoices(4))
    assert len(fake.requests) == FAST.attempts_max + 1


async def test_an_idle_stream_is_replaced_without_counting_as_a_failure(
    lnd: tuple[FakeLnd, LndNode],
) -> None:
    fake, node = lnd
    idle = stream_answer([], end="idle")
    fake.on(
        "GET",
        "/v1/invoices/subscribe",
        *([idle] * (FAST.attempts_max + 2)),
        stream_answer(stream_lines("subscribe_invoices_2.jsonl"), end="hang"),
    )

    invoices = await take(node.subscribe_invoices(5), 2)

    assert [i.settle_index for i in invoices] == [6, 7]


async def test_subscribe_from_zero_catches_up_from_the_invoice_list(
    lnd: tuple[FakeLnd, LndNode],
) -> None:
    fake, node = lnd
    fake.on("GET", "/v1/invoices", json_answer(body("listinvoices.json")))
    third = stream_lines("subscribe_invoices_1.jsonl")[1]
    third["result"]["settle_index"] = "3"
    fake.on("GET", "/v1/invoices/subscribe", stream_answer([third], end="hang"))

    invoices = await take(node.subscribe_invoices(), 3)

    # LND replays nothing for settle_index=0: the list supplies 1 and 2, in settle order.
    assert [(i.payment_hash, i.settle_index) for i in invoices] == [
        (payment_hash(5), 1),
        (payment_hash(2), 2),
        (payment_hash(1), 3),
    ]
    (listing,) = fake.sent("GET", "/v1/invoices")
    assert listing.url.params["index_offset"] == "0"
    (subscription,) = fake.sent("GET", "/v1/invoices/subscribe")
    assert subscription.url.params["settle_index"] == "2"


async def test_a_gap_in_settle_indexes_makes_lnd_replay_it(lnd: tuple[FakeLnd, LndNode]) -> None:
    fake, node = lnd
    five, six, seven = (
        line["result"]
        for line in stream_lines("subscribe_invoices_1.jsonl")[1:]
        + stream_lines("subscribe_invoices_2.jsonl")[1:]
    )
    fake.on(
        "GET",
        "/v1/invoices/subscribe",
        stream_answer([{"result": five}, {"result": seven}], end="hang"),
        stream_answer([{"result": six}, {"result": seven}], end="hang"),
    )

    invoices = await take(node.subscribe_invoices(4), 3)

    assert [i.settle_index for i in invoices] == [5, 6, 7]
    requests = fake.sent("GET", "/v1/invoices/subscribe")
    assert [r.url.params["settle_index"] for r in requests] == ["4", "5"]


async def test_a_gap_that_survives_the_replay_is_accepted(lnd: tuple[FakeLnd, LndNode]) -> None:
    fake, node = lnd
    seven = stream_lines("subscribe_invoices_2.jsonl")[1]
    fake.on("GET", "/v1/invoices/subscribe", stream_answer([seven], end="hang"))

    invoices = await take(node.subscribe_invoices(5), 1)

    assert [i.settle_index for i in invoices] == [7]
    assert len(fake.sent("GET", "/v1/invoices/subscribe")) == 2


async def test_a_canceled_invoice_in_the_stream_is_yielded(lnd: tuple[FakeLnd, LndNode]) -> None:
    fake, node = lnd
    fake.on(
        "GET",
        "/v1/invoices/subscribe",
        stream_answer([{"result": body("invoice_canceled.json")}], end="hang"),
    )

    (invoice,) = await take(node.subscribe_invoices(5), 1)

    assert invoice.state is InvoiceState.CANCELED
    assert invoice.settle_index == 0


# --- payments --------------------------------------------------------------------------------


def on_decode_carol(fake: FakeLnd) -> None:
    fake.on("GET", f"/v1/payreq/{CAROL_INVOICE}", json_answer(body("payreq_carol.json")))


async def test_pay_streams_to_success_with_preimage_and_fee(lnd: tuple[FakeLnd, LndNode]) -> None:
    fake, node = lnd
    on_decode_carol(fake)
    fake.on("POST", "/v2/router/send", stream_answer(stream_lines("send_succeeded.jsonl")))

    payment = await node.pay(CAROL_INVOICE, fee_limit_msat=2_000, timeout_s=45)

    assert payment.status is PaymentStatus.SUCCEEDED
    assert payment.payment_hash == payment_hash(6)
    assert payment.preimage == preimage(6)
    assert payment.amount_msat == 100_000_000
    assert payment.fee_msat == 1_005
    assert sent_json(fake.sent("POST", "/v2/router/send")[0]) == {
        "payment_request": CAROL_INVOICE,
        "fee_limit_msat": "2000",
        "timeout_seconds": 45,
    }


async def test_pay_an_amountless_invoice_sends_the_amount(lnd: tuple[FakeLnd, LndNode]) -> None:
    fake, node = lnd
    on_decode_carol(fake)
    fake.on("POST", "/v2/router/send", stream_answer(stream_lines("send_succeeded.jsonl")))

    await node.pay(CAROL_INVOICE, amount_msat=100_000_000, fee_limit_msat=0)

    sent = sent_json(fake.sent("POST", "/v2/router/send")[0])
    assert sent["amt_msat"] == "100000000"
    assert sent["fee_limit_msat"] == "0"


async def test_pay_without_a_route_raises_no_route(lnd: tuple[FakeLnd, LndNode]) -> None:
    # LND records it FAILED (NO_ROUTE) without a single HTLC: a refusal, as the port has it.
    fake, node = lnd
    on_decode_carol(fake)
    fake.on("POST", "/v2/router/send", stream_answer(stream_lines("send_no_route.jsonl")))

    with pytest.raises(NoRoute):
        await node.pay(CAROL_INVOICE, fee_limit_msat=2_000)


async def test_pay_beyond_the_local_balance_raises_insufficient_balance(
    lnd: tuple[FakeLnd, LndNode],
) -> None:
    fake, node = lnd
    on_decode_carol(fake)
    lines = stream_lines("send_no_route.jsonl")
    lines[1]["result"]["failure_reason"] = "FAILURE_REASON_INSUFFICIENT_BALANCE"
    fake.on("POST", "/v2/router/send", stream_answer(lines))

    with pytest.raises(InsufficientBalance):
        await node.pay(CAROL_INVOICE, fee_limit_msat=2_000)


async def test_no_route_after_htlcs_were_tried_is_a_failed_payment(
    lnd: tuple[FakeLnd, LndNode],
) -> None:
    fake, node = lnd
    on_decode_carol(fake)
    lines = stream_lines("send_failed_htlc_in_flight.jsonl")
    for htlc in lines[1]["result"]["htlcs"]:
        htlc["status"] = "FAILED"
    lines[1]["result"]["failure_reason"] = "FAILURE_REASON_NO_ROUTE"
    fake.on("POST", "/v2/router/send", stream_answer(lines))

    payment = await node.pay(CAROL_INVOICE, fee_limit_msat=2_000)

    assert payment.status is PaymentStatus.FAILED
    assert payment.failure_reason is FailureReason.NO_ROUTE
    assert payment.preimage is None


async def test_failed_with_an_htlc_still_in_flight_is_in_flight(
    lnd: tuple[FakeLnd, LndNode],
) -> None:
    fake, node = lnd
    on_decode_carol(fake)
    fake.on(
        "POST", "/v2/router/send", stream_answer(stream_lines("send_failed_htlc_in_flight.jsonl"))
    )

    payment = await node.pay(CAROL_INVOICE, fee_limit_msat=2_000)

    assert payment.status is PaymentStatus.IN_FLIGHT
    assert payment.failure_reason is None


async def test_pay_answers_in_flight_when_our_timeout_passes(
    lnd: tuple[FakeLnd, LndNode],
) -> None:
    fake, node = lnd
    on_decode_carol(fake)
    fake.on(
        "POST",
        "/v2/router/send",
        stream_answer(stream_lines("send_in_flight.jsonl"), end="hang"),
    )

    payment = await node.pay(CAROL_INVOICE, fee_limit_msat=2_000, timeout_s=1)

    assert payment.status is PaymentStatus.IN_FLIGHT
    assert payment.payment_hash == payment_hash(6)
    assert payment.amount_msat == 100_000_000


async def test_pay_with_no_time_to_wait_answers_once_lnd_has_the_payment(
    lnd: tuple[FakeLnd, LndNode],
) -> None:
    fake, node = lnd
    on_decode_carol(fake)
    fake.on(
        "POST",
        "/v2/router/send",
        stream_answer(stream_lines("send_in_flight.jsonl"), end="hang"),
    )

    payment = await node.pay(CAROL_INVOICE, fee_limit_msat=2_000, timeout_s=0)

    assert payment.status is PaymentStatus.IN_FLIGHT
    assert payment.payment_hash == payment_hash(6)
    # LND reads timeout_seconds 0 as no bound on path finding: it gets its usual 60 s.
    assert sent_json(fake.sent("POST", "/v2/router/send")[0])["timeout_seconds"] == 60


async def test_pay_waits_for_lnd_to_take_the_payment_even_when_slow(
    lnd: tuple[FakeLnd, LndNode],
) -> None:
    fake, node = lnd
    on_decode_carol(fake)

    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.2)  # longer than timeout_s=0, shorter than the request timeout
        # Only a read of LND's first update can answer SUCCEEDED; a guess would be IN_FLIGHT.
        final = stream_lines("send_succeeded.jsonl")[-1:]
        return httpx.Response(200, stream=ScriptedStream(final, "close"))

    fake.on("POST", "/v2/router/send", slow)

    payment = await node.pay(CAROL_INVOICE, fee_limit_msat=2_000, timeout_s=0)

    assert payment.status is PaymentStatus.SUCCEEDED


async def test_a_stream_lost_after_lnd_took_the_payment_is_in_flight(
    lnd: tuple[FakeLnd, LndNode],
) -> None:
    fake, node = lnd
    on_decode_carol(fake)
    fake.on(
        "POST", "/v2/router/send", stream_answer(stream_lines("send_in_flight.jsonl"), end="drop")
    )

    payment = await node.pay(CAROL_INVOICE, fee_limit_msat=2_000)

    assert payment.status is PaymentStatus.IN_FLIGHT


async def test_pay_of_a_paid_hash_raises_already_paid(lnd: tuple[FakeLnd, LndNode]) -> None:
    fake, node = lnd
    on_decode_carol(fake)
    fake.on("POST", "/v2/router/send", json_answer(body("error_already_paid.json"), status=409))

    with pytest.raises(AlreadyPaid):
        await node.pay(CAROL_INVOICE, fee_limit_msat=2_000)


async def test_pay_of_a_hash_in_flight_raises_already_paid(lnd: tuple[FakeLnd, LndNode]) -> None:
    fake, node = lnd
    on_decode_carol(fake)
    # lnd 0.21 answers HTTP 409 with the error line as the body (recorded).
    (refusal,) = stream_lines("send_in_transition.jsonl")
    fake.on("POST", "/v2/router/send", json_answer(refusal, status=409))

    with pytest.raises(AlreadyPaid):
        await node.pay(CAROL_INVOICE, fee_limit_msat=2_000)


async def test_pay_with_an_invoice_only_macaroon_raises_permission_denied(
    lnd: tuple[FakeLnd, LndNode],
) -> None:
    fake, node = lnd
    on_decode_carol(fake)
    denied = body("error_permission_denied.json")
    fake.on("POST", "/v2/router/send", json_answer(denied, status=500))

    with pytest.raises(PermissionDenied):
        await node.pay(CAROL_INVOICE, fee_limit_msat=2_000)


async def test_a_bad_macaroon_raises_permission_denied(lnd: tuple[FakeLnd, LndNode]) -> None:
    fake, node = lnd
    fake.on("GET", "/v1/getinfo", json_answer(body("error_macaroon_signature.json"), status=500))

    with pytest.raises(PermissionDenied):
        await node.get_info()


async def test_track_of_a_hash_lnd_never_saw_is_unknown(lnd: tuple[FakeLnd, LndNode]) -> None:
    fake, node = lnd
    path = f"/v2/router/track/{base64.urlsafe_b64encode(payment_hash(7)).decode()}"
    fake.on("GET", path, stream_answer(stream_lines("track_not_initiated.jsonl")))

    payment = await node.track_payment(payment_hash(7))

    assert payment.status is PaymentStatus.UNKNOWN
    assert payment.payment_hash == payment_hash(7)


async def test_track_returns_the_current_state_in_url_safe_base64(
    lnd: tuple[FakeLnd, LndNode],
) -> None:
    fake, node = lnd
    encoded = base64.urlsafe_b64encode(payment_hash(6)).decode()
    fake.on(
        "GET",
        f"/v2/router/track/{encoded}",
        stream_answer(stream_lines("send_in_flight.jsonl"), end="hang"),
    )

    payment = await node.track_payment(payment_hash(6))

    assert payment.status is PaymentStatus.IN_FLIGHT
    (request,) = fake.requests
    assert request.url.params["no_inflight_updates"] == "false"
    assert "+" not in encoded and "/" not in encoded  # fixture hash needs the URL-safe alphabet


def payment_update(name: str, index: int) -> dict[str, Any]:
    return copy.deepcopy(stream_lines(name)[index]["result"])


def test_a_settled_htlc_on_a_failed_payment_means_the_money_left() -> None:
    update = payment_update("send_succeeded.jsonl", 2)
    update["status"] = "FAILED"
    update["payment_preimage"] = "00" * 32  # the preimage is on the settled HTLC

    payment = map_payment(update)

    assert payment.status is PaymentStatus.SUCCEEDED
    assert payment.preimage == preimage(6)


def test_a_settled_htlc_while_others_fly_is_in_flight_until_lnd_finishes() -> None:
    update = payment_update("send_succeeded.jsonl", 2)
    update["status"] = "IN_FLIGHT"
    assert map_payment(update).status is PaymentStatus.IN_FLIGHT


def test_failed_without_a_reason_is_an_error_failure() -> None:
    update = payment_update("send_no_route.jsonl", 1)
    update["failure_reason"] = "FAILURE_REASON_NONE"
    assert map_payment(update).failure_reason is FailureReason.ERROR


def test_a_preimage_that_does_not_hash_to_the_payment_hash_is_refused() -> None:
    update = payment_update("send_succeeded.jsonl", 2)
    update["payment_preimage"] = preimage(5).hex()
    with pytest.raises(NodeBadResponse):
        map_payment(update)


# --- wallet and channels ---------------------------------------------------------------------


async def test_balances(lnd: tuple[FakeLnd, LndNode]) -> None:
    fake, node = lnd
    fake.on("GET", "/v1/balance/blockchain", json_answer(body("balance_blockchain.json")))
    fake.on("GET", "/v1/balance/channels", json_answer(body("balance_channels.json")))

    balances = await node.balances()

    assert balances.onchain_confirmed_sat == 98_700_000
    assert balances.onchain_unconfirmed_sat == 65_432
    assert balances.channel_local_msat == 489_000_500
    assert balances.channel_remote_msat == 500_123_000
    assert balances.pending_htlcs_msat == 100_001_005
    assert balances.channel_pending_open_local_msat == 250_000_000


async def test_list_channels(lnd: tuple[FakeLnd, LndNode]) -> None:
    fake, node = lnd
    fake.on("GET", "/v1/channels", json_answer(body("channels.json")))

    (channel,) = await node.list_channels()

    assert channel.channel_id.endswith(":0")
    assert channel.peer_pubkey == KEYS["carol"]
    assert channel.capacity_sat == 1_000_000
    assert channel.local_balance_msat == 489_000_000
    assert channel.remote_balance_msat == 500_123_000
    assert channel.active is True
    assert channel.close_address == "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"
    assert channel.extra["chan_id"] == "129742372077568"


async def test_onchain_transactions(lnd: tuple[FakeLnd, LndNode]) -> None:
    fake, node = lnd
    fake.on("GET", "/v1/transactions", json_answer(body("transactions.json")))

    funding, deposit = await node.list_onchain_transactions()

    assert funding.amount_sat == -1_002_826
    assert funding.fee_sat == 2_826
    assert funding.confirmations == 6
    assert len(funding.addresses) == 2
    assert deposit.amount_sat == 100_000_000
    assert deposit.confirmations == 0
    assert deposit.addresses == ("bcrt1q6rz28mcfaxtmd6v789l9rrlrusdprr9pz3cppk",)


async def test_list_closed_channels(lnd: tuple[FakeLnd, LndNode]) -> None:
    fake, node = lnd
    fake.on("GET", "/v1/channels/closed", json_answer(body("closedchannels.json")))

    cooperative, forced = await node.list_closed_channels()

    # No filter is sent: lnd then lists every close type.
    assert fake.requests[0].url.params == httpx.QueryParams()
    # channel_point and closing_tx_hash are display hex, as lnd's OutPoint/Hash String() give.
    assert cooperative.channel_point == body("channels.json")["channels"][0]["channel_point"]
    assert (
        cooperative.closing_txid
        == "c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedfe0"
    )
    assert cooperative.close_type is CloseType.COOPERATIVE
    assert (cooperative.settled_balance_sat, cooperative.time_locked_balance_sat) == (490_512, 0)
    assert cooperative.close_address is None  # ChannelCloseSummary names no address
    assert forced.close_type is CloseType.LOCAL_FORCE
    assert forced.channel_point.endswith(":1")
    assert (forced.settled_balance_sat, forced.time_locked_balance_sat) == (296_380, 296_380)


@pytest.mark.parametrize(
    ("close_type", "expected"),
    [
        ("COOPERATIVE_CLOSE", CloseType.COOPERATIVE),
        ("LOCAL_FORCE_CLOSE", CloseType.LOCAL_FORCE),
        ("REMOTE_FORCE_CLOSE", CloseType.REMOTE_FORCE),
        ("BREACH_CLOSE", CloseType.BREACH),
        ("FUNDING_CANCELED", CloseType.FUNDING_CANCELED),
        ("ABANDONED", CloseType.ABANDONED),
        ("SPLICE_CLOSE", CloseType.UNKNOWN),  # a kind newer than this code
        (None, CloseType.UNKNOWN),  # never a guess of cooperative
    ],
)
def test_close_types(close_type: str | None, expected: CloseType) -> None:
    summary = copy.deepcopy(body("closedchannels.json")["channels"][0])
    if close_type is None:
        del summary["close_type"]
    else:
        summary["close_type"] = close_type
    assert map_closed_channel(summary).close_type is expected


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("channel_point", ""),
        ("channel_point", "8a7c:0"),
        ("channel_point", "8a7c4c1e9f3b2d6a5e4f3c2b1a0998877665544332211009f8e7d6c5b4a39281"),
        ("settled_balance", "-1"),
        ("time_locked_balance", "-5"),
        ("settled_balance", "lots"),
    ],
)
def test_a_malformed_closed_channel_is_refused(field: str, value: str) -> None:
    summary = copy.deepcopy(body("closedchannels.json")["channels"][0])
    summary[field] = value
    with pytest.raises(NodeBadResponse):
        map_closed_channel(summary)


async def test_the_funding_fee_of_a_channel_is_proven_by_its_wallet_record(
    lnd: tuple[FakeLnd, LndNode],
) -> None:
    fake, node = lnd
    fake.on("GET", "/v1/transactions", json_answer(body("transactions.json")))

    funding, deposit = await node.list_onchain_transactions()

    # The wallet paid the 1,000,000 sat channel and 2,826 sat of fee: amount = -(sum of both).
    assert funding_fee_sat(funding, 1_000_000) == 2_826
    assert funding_fee_sat(funding, 999_999) is None  # the change does not prove the fee
    assert funding_fee_sat(deposit, 1_000_000) is None  # unconfirmed, and no funding
    unconfirmed = dataclasses.replace(funding, confirmations=0)
    assert funding_fee_sat(unconfirmed, 1_000_000) is None
    # An input that is not the wallet's: lnd reports total_fees 0 and the change proves nothing.
    external = dataclasses.replace(funding, amount_sat=-900_000, fee_sat=0)
    assert funding_fee_sat(external, 1_000_000) is None


async def test_new_address_asks_for_p2wkh(lnd: tuple[FakeLnd, LndNode]) -> None:
    fake, node = lnd
    fake.on("GET", "/v1/newaddress", json_answer(body("newaddress.json")))

    address = await node.new_address()

    assert address == "bcrt1q6rz28mcfaxtmd6v789l9rrlrusdprr9pz3cppk"
    assert fake.requests[0].url.params["type"] == "WITNESS_PUBKEY_HASH"


async def test_send_onchain(lnd: tuple[FakeLnd, LndNode]) -> None:
    fake, node = lnd
    fake.on("POST", "/v1/transactions", json_answer(body("sendcoins.json")))

    txid = await node.send_onchain("bcrt1qcold", 50_000_000, 12)

    assert txid == body("sendcoins.json")["txid"]
    assert sent_json(fake.requests[0]) == {
        "addr": "bcrt1qcold",
        "amount": "50000000",
        "sat_per_vbyte": "12",
    }


async def test_open_channel_with_an_upfront_shutdown_address(
    lnd: tuple[FakeLnd, LndNode],
) -> None:
    fake, node = lnd
    fake.on("POST", "/v1/peers", json_answer({"status": ""}))
    fake.on("POST", "/v1/channels", json_answer(body("openchannel.json")))

    point = await node.open_channel(
        f"{KEYS['carol']}@127.0.0.1:9736", 1_000_000, push_sat=1_000, close_address="bcrt1qcold"
    )

    # funding_txid_bytes is the txid in internal byte order: reversed for display.
    assert point == "8a7c4c1e9f3b2d6a5e4f3c2b1a0998877665544332211009f8e7d6c5b4a39281:1"
    assert sent_json(fake.sent("POST", "/v1/peers")[0])["addr"] == {
        "pubkey": KEYS["carol"],
        "host": "127.0.0.1:9736",
    }
    assert sent_json(fake.sent("POST", "/v1/channels")[0]) == {
        "node_pubkey": base64.b64encode(bytes.fromhex(KEYS["carol"])).decode(),
        "local_funding_amount": "1000000",
        "push_sat": "1000",
        "close_address": "bcrt1qcold",
    }


async def test_open_channel_without_funds(lnd: tuple[FakeLnd, LndNode]) -> None:
    fake, node = lnd
    refusal = {
        "code": 2,
        "message": "not enough witness outputs to create funding transaction, need 0.01 BTC, "
        "only have 0 BTC available",
        "details": [],
    }
    fake.on("POST", "/v1/channels", json_answer(refusal, status=500))

    with pytest.raises(InsufficientBalance):
        await node.open_channel(KEYS["carol"], 1_000_000)


# --- error mapping ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (RpcStatus("permission denied", 2, 500), PermissionDenied),
        (
            RpcStatus("verification failed: signature mismatch after caveat verification", 2, 500),
            PermissionDenied,
        ),
        (RpcStatus("expected 1 macaroon, got 0", 2, 500), PermissionDenied),
        (RpcStatus("access forbidden", 7, 403), PermissionDenied),
        (RpcStatus("invoice is already paid", 6, 409), AlreadyPaid),
        (RpcStatus("payment is in transition", 6, 409), AlreadyPaid),
        (RpcStatus("payment already exists", 2, 500), AlreadyPaid),
        (RpcStatus("some new duplicate wording", 6, 409), AlreadyPaid),
        (
            RpcStatus("invoice expired. Valid until 2026-11-25 10:30:00 +0000 UTC", 2, 500),
            InvoiceExpired,
        ),
        (RpcStatus("unable to find a path to destination", 2, 500), NoRoute),
        (
            RpcStatus("insufficient funds available to construct transaction", 2, 500),
            InsufficientBalance,
        ),
        (
            RpcStatus("not enough witness outputs to create funding transaction", 2, 500),
            InsufficientBalance,
        ),
        (RpcStatus("unable to locate invoice", 5, 404), InvoiceNotFound),
        (RpcStatus("there are no existing invoices", 2, 500), InvoiceNotFound),
        (RpcStatus("invalid payment request", 2, 500), InvalidInvoice),
        (RpcStatus("invoice not for current active network 'regtest'", 2, 500), InvalidInvoice),
        (
            RpcStatus("amount must be specified when paying a zero amount invoice", 2, 500),
            InvalidNodeRequest,
        ),
        (
            RpcStatus("amount must not be specified when paying a non-zero amount invoice", 2, 500),
            InvalidNodeRequest,
        ),
        (RpcStatus("self-payments not allowed", 2, 500), InvalidNodeRequest),
        (
            RpcStatus(
                "address: bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4 is not valid for this "
                "network: regtest",
                2,
                500,
            ),
            InvalidNodeRequest,
        ),
        (RpcStatus("type mismatch, parameter: value_msat", 3, 400), InvalidNodeRequest),
        (RpcStatus("bad request", None, 400), InvalidNodeRequest),
        (RpcStatus("context deadline exceeded", 4, 504), NodeTimeout),
        (RpcStatus("waiting to start, RPC services not available", 14, 503), NodeUnreachable),
        # lnd 0.21 while it restarts (recorded from the regtest network): code 2, HTTP 500.
        (
            RpcStatus("wallet locked, unlock it to enable full RPC access", 2, 500),
            NodeUnreachable,
        ),
        (
            RpcStatus(
                "the RPC server is in the process of starting up, but not yet ready to accept "
                "calls",
                2,
                500,
            ),
            NodeUnreachable,
        ),
        (RpcStatus("server is still in the process of starting", 2, 500), NodeUnreachable),
        (RpcStatus("Not Found", 5, 404), NodeError),  # a route the lnd build does not serve
        (RpcStatus("channeldb: something broke", 2, 500), NodeError),
    ],
)
def test_lnd_status_mapping(status: RpcStatus, expected: type[NodeError]) -> None:
    error = node_error(status)
    assert type(error) is expected
    assert status.message in error.message


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (RpcStatus("invalid index of 1", 2, 500), InvalidInvoice),
        (RpcStatus("something unforeseen", 2, 500), InvalidInvoice),
        (RpcStatus("permission denied", 2, 500), PermissionDenied),
    ],
)
def test_lnd_status_mapping_of_a_decode(status: RpcStatus, expected: type[NodeError]) -> None:
    assert type(node_error(status, input_is_bolt11=True)) is expected


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (httpx.ConnectError("[Errno 111] Connection refused"), NodeUnreachable),
        (httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED]"), NodeUnreachable),
        (httpx.ConnectError("[Errno -2] Name or service not known"), NodeUnreachable),
        (httpx.ConnectTimeout("timed out"), NodeUnreachable),  # never reached LND
        (httpx.ReadTimeout("timed out"), NodeTimeout),
        (httpx.PoolTimeout("timed out"), NodeTimeout),
        (httpx.ReadError("connection reset"), NodeError),  # sent: the outcome is unknown
        (httpx.RemoteProtocolError("peer closed connection"), NodeError),
    ],
)
def test_transport_error_mapping(exc: httpx.HTTPError, expected: type[NodeError]) -> None:
    assert type(transport_error(exc)) is expected


def test_the_status_of_a_refused_stream_is_unwrapped() -> None:
    # A streaming endpoint that refuses before its first message: non-2xx, {"error": {...}}.
    status = parse_error_body(
        '{"error":{"code":2,"message":"self-payments not allowed","details":[]}}', 500
    )
    assert status == RpcStatus("self-payments not allowed", 2, 500)
    assert type(node_error(status)) is InvalidNodeRequest


def test_the_status_of_a_stream_error_line() -> None:
    line = stream_lines("subscribe_invoices_permission_denied.jsonl")[0]["error"]
    status = RpcStatus.from_body(line, None)
    assert status == RpcStatus("permission denied", 2, 500)


# --- real sockets ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_connection_refused_is_node_unreachable() -> None:
    node = LndNode(f"https://127.0.0.1:{free_port()}", None, MACAROON_HEX, timeout_s=5)
    try:
        with pytest.raises(NodeUnreachable):
            await node.get_info()
    finally:
        await node.close()


def self_signed_cert(directory: Path, name: str) -> tuple[Path, Path]:
    """A certificate like LND's tls.cert: self-signed, a CA, naming localhost and 127.0.0.1."""
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "lnd autogenerated cert")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}.cert", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def serve_getinfo_over_tls(
    cert_path: Path, key_path: Path, seen_headers: list[bytes]
) -> asyncio.Server:
    payload = json.dumps(body("getinfo.json")).encode()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            seen_headers.append(await reader.readuntil(b"\r\n\r\n"))
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass  # the client refused our certificate
        finally:
            writer.close()

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)


async def test_tls_is_verified_against_the_nodes_own_certificate(tmp_path: Path) -> None:
    cert_path, key_path = self_signed_cert(tmp_path, "tls")
    other_cert_path, _ = self_signed_cert(tmp_path, "other")
    seen_headers: list[bytes] = []
    server = await serve_getinfo_over_tls(cert_path, key_path, seen_headers)
    port = server.sockets[0].getsockname()[1]
    trusting = LndNode(f"https://127.0.0.1:{port}", cert_path, MACAROON_HEX, timeout_s=5)
    distrusting = LndNode(f"https://127.0.0.1:{port}", other_cert_path, MACAROON_HEX, timeout_s=5)
    try:
        info = await trusting.get_info()
        with pytest.raises(NodeUnreachable):
            await distrusting.get_info()
    finally:
        await trusting.close()
        await distrusting.close()
        server.close()
        await server.wait_closed()

    assert info.alias == "alice"
    assert f"grpc-metadata-macaroon: {MACAROON_HEX}".encode() in seen_headers[0].lower()


async def test_track_that_gets_no_answer_in_time_raises_node_timeout() -> None:
    fake = FakeLnd()
    encoded = base64.urlsafe_b64encode(payment_hash(6)).decode()
    fake.on("GET", f"/v2/router/track/{encoded}", stream_answer([], end="hang"))
    node = LndNode(
        "https://127.0.0.1:8080", None, MACAROON_HEX, timeout_s=0.05, transport=fake.transport
    )
    try:
        with pytest.raises(NodeTimeout):
            await node.track_payment(payment_hash(6))
    finally:
        await node.close()


# --- a watch-only node's remote signer ------------------------------------------------------


async def serve_tls_handshakes(cert_path: Path, key_path: Path) -> asyncio.Server:
    """A port that completes TLS handshakes (offering h2, as gRPC does) and says nothing."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    context.set_alpn_protocols(["h2"])
    return await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)


async def test_the_signer_probe_trusts_only_the_signers_own_certificate(tmp_path: Path) -> None:
    cert_path, key_path = self_signed_cert(tmp_path, "signer")
    other_cert_path, _ = self_signed_cert(tmp_path, "other")
    server = await serve_tls_handshakes(cert_path, key_path)
    rpc_host = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        pinned = await SignerProbe(rpc_host, cert_path, timeout_s=5).acheck()
        impostor = await SignerProbe(rpc_host, other_cert_path, timeout_s=5).acheck()
    finally:
        server.close()
        await server.wait_closed()
    nobody = await SignerProbe(f"127.0.0.1:{free_port()}", cert_path, timeout_s=5).acheck()

    assert pinned.reachable and "TLS handshake completed" in pinned.detail
    assert not impostor.reachable and "CERTIFICATE_VERIFY_FAILED" in impostor.detail
    assert not nobody.reachable and "ConnectionRefused" in nobody.detail


async def test_a_young_answer_of_the_signer_probe_is_reused(tmp_path: Path) -> None:
    cert_path, _ = self_signed_cert(tmp_path, "signer")
    probe = SignerProbe(f"127.0.0.1:{free_port()}", cert_path, timeout_s=5)
    first = await probe.acheck()

    assert await probe.acheck(max_age_s=60) is first
    assert await probe.acheck(max_age_s=0) is not first


def test_a_signer_address_without_a_port_is_refused() -> None:
    with pytest.raises(ValueError, match="host:port"):
        SignerProbe("signer.internal", Path("tls.cert"))


async def test_no_invoice_is_asked_for_while_the_remote_signer_is_unreachable(
    tmp_path: Path,
) -> None:
    """A watch-only lnd shuts itself down when it cannot sign an invoice: never ask it to."""
    cert_path, _ = self_signed_cert(tmp_path, "signer")
    fake = FakeLnd()
    fake.on("POST", "/v1/invoices", json_answer(body("addinvoice.json")))
    away = SignerProbe(f"127.0.0.1:{free_port()}", cert_path, timeout_s=5)
    node = LndNode(
        "https://127.0.0.1:8080", None, MACAROON_HEX, transport=fake.transport, signer=away
    )
    try:
        with pytest.raises(NodeUnreachable, match="remote signer is unreachable"):
            await node.create_invoice(150_000_000, memo="deposit alice")
    finally:
        await node.close()

    assert fake.sent("POST", "/v1/invoices") == []


# --- hold invoices (invoicesrpc) ---------------------------------------------------------------


def accepted_invoice(*htlc_msat: int) -> dict[str, Any]:
    """invoice_open.json (payment hash 1) as LND shows it while it holds ``htlc_msat``."""
    held = dict(body("invoice_open.json"))
    held["state"] = "ACCEPTED"
    held["amt_paid_msat"] = "0"
    held["htlcs"] = [{"amt_msat": str(m), "state": "ACCEPTED"} for m in htlc_msat] + [
        {"amt_msat": "999", "state": "CANCELED"}
    ]
    return held


async def test_a_hold_invoice_is_added_with_its_hash_and_read_back(
    lnd: tuple[FakeLnd, LndNode],
) -> None:
    fake, node = lnd
    fake.on(
        "POST", "/v2/invoices/hodl", json_answer({"payment_request": "lnbcrt1", "add_index": "3"})
    )
    fake.on("GET", f"/v1/invoice/{payment_hash(1).hex()}", json_answer(body("invoice_open.json")))

    invoice = await node.create_hold_invoice(
        payment_hash(1), 150_000_000, memo="order", expiry_s=900
    )

    assert invoice.payment_hash == payment_hash(1) and invoice.state is InvoiceState.OPEN
    assert sent_json(fake.sent("POST", "/v2/invoices/hodl")[0]) == {
        "hash": base64.b64encode(payment_hash(1)).decode(),
        "value_msat": "150000000",
        "expiry": "900",
        "cltv_expiry": "80",
        "memo": "order",
    }


@pytest.mark.parametrize(
    "kwargs",
    [
        {"amount_msat": 0, "expiry_s": 60},
        {"amount_msat": 1_000, "expiry_s": 0},
        {"amount_msat": 1_000, "expiry_s": 60, "cltv_expiry": 17},
        {"amount_msat": 1_000, "expiry_s": 60, "cltv_expiry": 2017},
    ],
)
async def test_a_bad_hold_invoice_is_refused_without_asking_lnd(
    lnd: tuple[FakeLnd, LndNode], kwargs: dict[str, Any]
) -> None:
    fake, node = lnd
    with pytest.raises(InvalidNodeRequest):
        await node.create_hold_invoice(payment_hash(2), **kwargs)
    with pytest.raises(ValueError):
        await node.create_hold_invoice(b"short", 1_000, expiry_s=60)
    assert fake.requests == []


async def test_a_held_invoice_reports_what_its_accepted_htlcs_bring(
    lnd: tuple[FakeLnd, LndNode],
) -> None:
    fake, node = lnd
    fake.on("GET", f"/v1/invoice/{payment_hash(1).hex()}", json_answer(accepted_invoice(100, 50)))

    invoice = await node.lookup_invoice(payment_hash(1))

    assert invoice.state is InvoiceState.ACCEPTED and invoice.amount_paid_msat == 150
    assert invoice.preimage is None


@pytest.mark.parametrize(
    ("message", "raised"),
    [
        ("invoice still open", InvalidNodeRequest),
        ("invoice already canceled", InvalidNodeRequest),
        ("unable to locate invoice", InvoiceNotFound),
        ("invoice already settled", None),  # settling twice: a no-op
    ],
)
async def test_settling_maps_lnds_answers_onto_the_port(
    lnd: tuple[FakeLnd, LndNode], message: str, raised: type[Exception] | None
) -> None:
    fake, node = lnd
    refusal = {"code": 2, "message": message, "details": []}
    fake.on("POST", "/v2/invoices/settle", json_answer(refusal, status=500))

    if raised is None:
        await node.settle_invoice(preimage(1))
    else:
        with pytest.raises(raised):
            await node.settle_invoice(preimage(1))
    assert sent_json(fake.sent("POST", "/v2/invoices/settle")[0]) == {
        "preimage": base64.b64encode(preimage(1)).decode()
    }


async def test_a_subscription_to_an_unknown_invoice_raises_before_subscribing(
    lnd: tuple[FakeLnd, LndNode],
) -> None:
    fake, node = lnd
    missing = {"code": 5, "message": "unable to locate invoice", "details": []}
    fake.on("GET", f"/v1/invoice/{payment_hash(7).hex()}", json_answer(missing, status=404))

    with pytest.raises(InvoiceNotFound):
        await anext(aiter(node.subscribe_invoice(payment_hash(7))))
    assert [r.url.path for r in fake.requests] == [f"/v1/invoice/{payment_hash(7).hex()}"]


async def test_a_subscription_yields_each_new_state_and_ends_at_a_final_one(
    lnd: tuple[FakeLnd, LndNode],
) -> None:
    fake, node = lnd
    opened, held = body("invoice_open.json"), accepted_invoice(150_000_000)
    fake.on("GET", f"/v1/invoice/{payment_hash(1).hex()}", json_answer(opened))
    canceled = dict(held, state="CANCELED")
    path = f"/v2/invoices/subscribe/{base64.urlsafe_b64encode(payment_hash(1)).decode()}"
    fake.on(
        "GET", path, stream_answer([{"result": opened}, {"result": held}, {"result": canceled}])
    )

    states = [i.state async for i in node.subscribe_invoice(payment_hash(1))]

    assert states == [InvoiceState.OPEN, InvoiceState.ACCEPTED, InvoiceState.CANCELED]
