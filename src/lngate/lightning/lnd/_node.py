"""``LndNode``: the ``Node`` port over LND's REST API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from contextlib import aclosing
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from lngate.lightning.errors import (
    AlreadyPaid,
    InsufficientBalance,
    InvalidInvoice,
    InvalidNodeRequest,
    NodeBadResponse,
    NodeTimeout,
    NodeUnreachable,
    NoRoute,
)
from lngate.lightning.lnd._client import LndClient
from lngate.lightning.lnd._errors import GrpcCode, LndRpcError, node_errors
from lngate.lightning.lnd._mapping import (
    as_list,
    as_str,
    b64,
    b64url,
    channel_point,
    from_b64,
    map_balances,
    map_channel,
    map_closed_channel,
    map_decoded,
    map_info,
    map_invoice,
    map_payment,
    map_transaction,
)
from lngate.lightning.lnd._subscribe import InvoiceSubscription, ReconnectPolicy
from lngate.lightning.lnd.signer import MAX_AGE_S as SIGNER_MAX_AGE_S
from lngate.lightning.lnd.signer import SignerProbe
from lngate.lightning.node import (
    HOLD_INVOICE_CLTV,
    MAX_HOLD_INVOICE_CLTV,
    MIN_HOLD_INVOICE_CLTV,
    Balances,
    Channel,
    ClosedChannel,
    DecodedInvoice,
    FailureReason,
    Invoice,
    InvoiceState,
    Node,
    NodeInfo,
    OnchainTx,
    Payment,
    PaymentStatus,
)

_LND_PAYMENT_TIMEOUT_S = 60  # LND's path-finding bound when the caller does not wait
_BOLT11_CHARS_MAX = 8192  # far above any real invoice; it goes into a URL path
_PUBKEY_BYTES = 33
_HASH_BYTES = 32


class LndNode:
    """A Lightning node reached through LND's REST proxy with one macaroon.

    Give the API process an invoice-only macaroon and the payment worker a spending one: this
    class uses what it is given, and LND refuses (``PermissionDenied``) what it does not allow.
    """

    def __init__(
        self,
        rest_url: str,
        tls_cert_path: Path | None,
        macaroon_hex: str,
        *,
        timeout_s: float = 30.0,
        stream_idle_timeout_s: float = 300.0,
        reconnect: ReconnectPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        signer: SignerProbe | None = None,
    ) -> None:
        self._timeout_s = timeout_s
        self._signer = signer
        self._client = LndClient(
            rest_url,
            tls_cert_path,
            macaroon_hex,
            timeout_s=timeout_s,
            stream_idle_timeout_s=stream_idle_timeout_s,
            transport=transport,
        )
        self._invoice_events = InvoiceSubscription(self._client, reconnect or ReconnectPolicy())

    @classmethod
    def from_files(
        cls,
        rest_url: str,
        tls_cert_path: Path | None,
        macaroon_path: Path,
        *,
        timeout_s: float = 30.0,
        stream_idle_timeout_s: float = 300.0,
        reconnect: ReconnectPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        signer: SignerProbe | None = None,
    ) -> LndNode:
        """Reads the binary macaroon file LND writes (``invoice.macaroon``, ...). ``signer`` is
        the probe of a watch-only node's remote signer: see ``_require_signer``."""
        return cls(
            rest_url,
            tls_cert_path,
            Path(macaroon_path).read_bytes().hex(),
            timeout_s=timeout_s,
            stream_idle_timeout_s=stream_idle_timeout_s,
            reconnect=reconnect,
            transport=transport,
            signer=signer,
        )

    async def _require_signer(self) -> None:
        """A watch-only LND signs an invoice with its remote signer, and shuts itself down when
        it cannot (it restarts only once the signer is back): so an invoice is not asked for
        while the signer does not answer. Refused as the node being away, which it would be."""
        if self._signer is None:
            return
        health = await self._signer.acheck(SIGNER_MAX_AGE_S)
        if not health.reachable:
            raise NodeUnreachable(f"the node's remote signer is unreachable ({health.detail})")

    async def get_info(self) -> NodeInfo:
        async with node_errors():
            return map_info(await self._client.get("/v1/getinfo"))

    # --- invoices ---------------------------------------------------------------------------

    async def create_invoice(
        self,
        amount_msat: int | None,
        *,
        memo: str | None = None,
        description_hash: bytes | None = None,
        expiry_s: int = 3600,
    ) -> Invoice:
        # Refused as LND itself would refuse them (the port's InvalidNodeRequest), without a
        # round trip: LND would turn a negative value_msat into an absurd uint64.
        if amount_msat is not None and amount_msat <= 0:
            raise InvalidNodeRequest("amount_msat must be positive or None")
        if description_hash is not None and len(description_hash) != _HASH_BYTES:
            raise InvalidNodeRequest("description_hash must be 32 bytes")
        if expiry_s <= 0:
            raise InvalidNodeRequest("expiry_s must be positive")
        await self._require_signer()
        body: dict[str, str] = {"expiry": str(expiry_s)}
        if amount_msat is not None:
            body["value_msat"] = str(amount_msat)
        if memo:
            body["memo"] = memo
        if description_hash is not None:
            body["description_hash"] = b64(description_hash)
        async with node_errors():
            added = await self._client.post("/v1/invoices", body)
            payment_hash = from_b64(as_str(added, "r_hash"))
            # AddInvoiceResponse lacks the creation date and state: read the stored invoice.
            return await self._lookup(payment_hash)

    async def lookup_invoice(self, payment_hash: bytes) -> Invoice:
        _check_hash(payment_hash)
        async with node_errors():
            return await self._lookup(payment_hash)

    async def _lookup(self, payment_hash: bytes) -> Invoice:
        return map_invoice(await self._client.get(f"/v1/invoice/{payment_hash.hex()}"))

    async def create_hold_invoice(
        self,
        payment_hash: bytes,
        amount_msat: int,
        *,
        memo: str | None = None,
        expiry_s: int,
        cltv_expiry: int = HOLD_INVOICE_CLTV,
    ) -> Invoice:
        """``POST /v2/invoices/hodl`` (invoicesrpc.AddHoldInvoice), then the stored invoice."""
        _check_hash(payment_hash)
        if amount_msat <= 0:
            raise InvalidNodeRequest("amount_msat must be positive")
        if expiry_s <= 0:
            raise InvalidNodeRequest("expiry_s must be positive")
        if not MIN_HOLD_INVOICE_CLTV <= cltv_expiry <= MAX_HOLD_INVOICE_CLTV:
            raise InvalidNodeRequest(
                f"cltv_expiry must be {MIN_HOLD_INVOICE_CLTV}..{MAX_HOLD_INVOICE_CLTV} blocks"
            )
        await self._require_signer()
        body: dict[str, str] = {
            "hash": b64(payment_hash),
            "value_msat": str(amount_msat),
            "expiry": str(expiry_s),
            "cltv_expiry": str(cltv_expiry),
        }
        if memo:
            body["memo"] = memo
        async with node_errors():
            await self._client.post("/v2/invoices/hodl", body)
            return await self._lookup(payment_hash)

    async def settle_invoice(self, preimage: bytes) -> None:
        """``POST /v2/invoices/settle``. LND answers "invoice already settled" to a second
        settle: the port makes that the no-op crash recovery needs."""
        if len(preimage) != _HASH_BYTES:
            raise ValueError("preimage must be 32 bytes")
        try:
            async with node_errors():
                await self._client.post("/v2/invoices/settle", {"preimage": b64(preimage)})
        except AlreadyPaid:
            return

    async def cancel_invoice(self, payment_hash: bytes) -> None:
        """Idempotent in LND; a settled invoice cannot be canceled (``InvalidNodeRequest``)."""
        _check_hash(payment_hash)
        try:
            async with node_errors():
                await self._client.post("/v2/invoices/cancel", {"payment_hash": b64(payment_hash)})
        except AlreadyPaid as exc:
            raise InvalidNodeRequest(str(exc)) from exc

    async def subscribe_invoice(self, payment_hash: bytes) -> AsyncGenerator[Invoice, None]:
        """``GET /v2/invoices/subscribe/{hash}`` (invoicesrpc.SubscribeSingleInvoice). LND
        waits silently on a hash it does not know (an invoice may come later), so the invoice
        is looked up first: an unknown hash raises ``InvoiceNotFound`` as the port says. An idle
        connection past the read bound is replaced; the state repeated on reconnect is
        skipped."""
        _check_hash(payment_hash)
        async with node_errors():
            last = await self._lookup(payment_hash)
        yield last
        path = f"/v2/invoices/subscribe/{b64url(payment_hash)}"
        while last.state not in (InvoiceState.SETTLED, InvoiceState.CANCELED):
            try:
                async with node_errors(), aclosing(self._client.stream("GET", path)) as updates:
                    async for update in updates:
                        invoice = map_invoice(update)
                        if invoice.payment_hash != payment_hash:
                            raise NodeBadResponse("LND streamed an invoice of another hash")
                        if invoice == last:
                            continue
                        last = invoice
                        yield invoice
                        if invoice.state in (InvoiceState.SETTLED, InvoiceState.CANCELED):
                            return
            except NodeTimeout as exc:
                if not isinstance(exc.__cause__, httpx.ReadTimeout):
                    raise
                continue  # idle past the read bound: a fresh connection
            raise NodeUnreachable("LND closed the invoice's stream")

    async def subscribe_invoices(
        self, after_settle_index: int = 0
    ) -> AsyncGenerator[Invoice, None]:
        if after_settle_index < 0:
            raise ValueError("after_settle_index must not be negative")
        async with (
            node_errors(),
            aclosing(self._invoice_events.events(after_settle_index)) as invoices,
        ):
            async for invoice in invoices:
                yield invoice

    async def decode(self, bolt11: str) -> DecodedInvoice:
        # It goes into the URL path: only bech32 characters may pass.
        if not (0 < len(bolt11) <= _BOLT11_CHARS_MAX and bolt11.isascii() and bolt11.isalnum()):
            raise InvalidInvoice("not a BOLT11 string")
        async with node_errors(input_is_bolt11=True):
            return map_decoded(bolt11, await self._client.get(f"/v1/payreq/{bolt11}"))

    # --- payments ---------------------------------------------------------------------------

    async def pay(
        self,
        bolt11: str,
        *,
        amount_msat: int | None = None,
        fee_limit_msat: int,
        timeout_s: int = 60,
    ) -> Payment:
        """Sends with ``POST /v2/router/send`` and returns the first final status, or IN_FLIGHT
        once ``timeout_s`` passes (0: as soon as LND has taken the payment). Leaving the stream
        does not stop the payment: LND only cancels a payment on disconnect when asked to
        (``cancelable``), which we never do.

        A payment LND fails before any HTLC went out raises what the port's callers expect of a
        refusal (``NoRoute``, ``InsufficientBalance``); one that failed after HTLCs is FAILED."""
        if timeout_s < 0:
            raise ValueError("timeout_s must not be negative")
        if fee_limit_msat < 0:
            raise InvalidNodeRequest("fee_limit_msat must not be negative")
        if amount_msat is not None and amount_msat <= 0:
            raise InvalidNodeRequest("amount_msat must be positive or None")
        # Decoding first gives the payment hash for an answer that LND may never send.
        decoded = await self.decode(bolt11)
        body: dict[str, Any] = {
            "payment_request": bolt11,
            "fee_limit_msat": str(fee_limit_msat),
            # Bounds LND's path finding before the first HTLC; HTLCs out are never aborted.
            # 0 would mean no bound at all in LND, not "answer at once".
            "timeout_seconds": timeout_s or _LND_PAYMENT_TIMEOUT_S,
        }
        if amount_msat is not None:
            body["amt_msat"] = str(amount_msat)
        in_flight = Payment(
            payment_hash=decoded.payment_hash,
            status=PaymentStatus.IN_FLIGHT,
            amount_msat=amount_msat or decoded.amount_msat or 0,
        )
        async with node_errors():
            return await self._follow(
                self._client.stream("POST", "/v2/router/send", body=body), in_flight, timeout_s
            )

    async def _follow(
        self, updates: AsyncGenerator[Any, None], in_flight: Payment, timeout_s: float
    ) -> Payment:
        """The first final status of a payment stream, else the latest IN_FLIGHT one.

        LND sends its first update once the payment is in its payments database, so that one is
        awaited however short ``timeout_s`` is (bounded by the request timeout): an IN_FLIGHT
        answer then means LND has the payment, and ``track_payment`` finds it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        latest: Payment | None = None
        try:
            async with aclosing(updates) as stream:
                iterator = aiter(stream)
                while True:
                    remaining = deadline - loop.time()
                    if latest is not None and remaining <= 0:
                        break  # our own bound: the payment goes on and the caller tracks it
                    wait_s = remaining if latest is not None else max(remaining, self._timeout_s)
                    try:
                        async with asyncio.timeout(wait_s):
                            update = await anext(iterator)
                    except (StopAsyncIteration, TimeoutError):
                        break
                    latest = _same_hash(map_payment(update), in_flight.payment_hash)
                    if latest.status is PaymentStatus.FAILED:
                        _raise_if_refused(update, latest)
                    if latest.status is not PaymentStatus.IN_FLIGHT:
                        return latest
        except (LndRpcError, httpx.TransportError):
            if latest is None:
                raise  # LND refused before it started anything
            # LND accepted the payment and then the stream broke: it is still in flight.
        return latest or in_flight

    async def track_payment(self, payment_hash: bytes) -> Payment:
        """The current state of a payment: the first update TrackPaymentV2 sends. A hash LND has
        no record of is UNKNOWN: provably never sent from this node."""
        _check_hash(payment_hash)
        stream = self._client.stream(
            "GET",
            f"/v2/router/track/{b64url(payment_hash)}",
            params={"no_inflight_updates": "false"},
        )
        async with node_errors():
            try:
                async with asyncio.timeout(self._timeout_s), aclosing(stream) as updates:
                    async for update in updates:
                        return _same_hash(map_payment(update), payment_hash)
            except LndRpcError as exc:
                if _never_initiated(exc):
                    return Payment(payment_hash=payment_hash, status=PaymentStatus.UNKNOWN)
                raise
            except TimeoutError:
                raise NodeTimeout("LND sent no payment update in time") from None
        raise NodeBadResponse("LND ended the payment stream without an update")

    # --- wallet and channels ----------------------------------------------------------------

    async def balances(self) -> Balances:
        async with node_errors():
            wallet = await self._client.get("/v1/balance/blockchain")
            channels = await self._client.get("/v1/balance/channels")
            return map_balances(wallet, channels)

    async def new_address(self) -> str:
        async with node_errors():
            answer = await self._client.get("/v1/newaddress", {"type": "WITNESS_PUBKEY_HASH"})
        return _required(as_str(answer, "address"), "address")

    async def send_onchain(self, address: str, amount_sat: int, sat_per_vbyte: int) -> str:
        if amount_sat <= 0 or sat_per_vbyte <= 0:
            raise ValueError("amount_sat and sat_per_vbyte must be positive")
        body = {"addr": address, "amount": str(amount_sat), "sat_per_vbyte": str(sat_per_vbyte)}
        async with node_errors():
            answer = await self._client.post("/v1/transactions", body)
        return _required(as_str(answer, "txid"), "txid")

    async def list_onchain_transactions(self) -> list[OnchainTx]:
        async with node_errors():
            answer = await self._client.get("/v1/transactions")
            return [map_transaction(tx) for tx in as_list(answer, "transactions")]

    async def open_channel(
        self, peer: str, amount_sat: int, *, push_sat: int = 0, close_address: str | None = None
    ) -> str:
        """``peer`` is a pubkey (already connected) or ``pubkey@host:port`` (connected first).
        ``close_address`` becomes the upfront shutdown script: LND will only ever close the
        channel cooperatively to it."""
        pubkey_hex, _, host = peer.partition("@")
        pubkey = _pubkey(pubkey_hex)
        if amount_sat <= 0 or push_sat < 0 or push_sat >= amount_sat:
            raise ValueError("need 0 < amount_sat and 0 <= push_sat < amount_sat")
        body = {
            "node_pubkey": b64(pubkey),
            "local_funding_amount": str(amount_sat),
            "push_sat": str(push_sat),
        }
        if close_address:
            body["close_address"] = close_address
        async with node_errors():
            if host:
                await self._connect_peer(pubkey_hex, host)
            return channel_point(await self._client.post("/v1/channels", body))

    async def _connect_peer(self, pubkey_hex: str, host: str) -> None:
        try:
            await self._client.post(
                "/v1/peers", {"addr": {"pubkey": pubkey_hex, "host": host}, "perm": False}
            )
        except LndRpcError as exc:
            if "already connected" not in exc.status.message.lower():
                raise

    async def list_channels(self) -> list[Channel]:
        async with node_errors():
            answer = await self._client.get("/v1/channels")
            return [map_channel(channel) for channel in as_list(answer, "channels")]

    async def list_closed_channels(self) -> list[ClosedChannel]:
        """``GET /v1/channels/closed`` with no filter (every close type). lnd leaves out closes
        still pending (waiting for confirmations) and sorts by close height."""
        async with node_errors():
            answer = await self._client.get("/v1/channels/closed")
            return [map_closed_channel(channel) for channel in as_list(answer, "channels")]

    async def close(self) -> None:
        await self._client.aclose()


def _check_hash(payment_hash: bytes) -> None:
    if len(payment_hash) != _HASH_BYTES:
        raise ValueError("payment_hash must be 32 bytes")


def _pubkey(pubkey_hex: str) -> bytes:
    try:
        pubkey = bytes.fromhex(pubkey_hex)
    except ValueError:
        pubkey = b""
    if len(pubkey) != _PUBKEY_BYTES:
        raise InvalidNodeRequest(f"not a node public key: {pubkey_hex[:80]!r}")
    return pubkey


def _raise_if_refused(update: Any, failed: Payment) -> None:
    """LND records a payment it could not even start (no route, not enough outbound balance)
    as FAILED without HTLCs; the port reports that as the refusal it is. Nothing went out, and
    like any FAILED payment the hash may be paid again."""
    if as_list(update, "htlcs"):
        return
    text = f"LND: payment {failed.payment_hash.hex()} failed before any HTLC went out"
    if failed.failure_reason is FailureReason.NO_ROUTE:
        raise NoRoute(f"{text}: no route")
    if failed.failure_reason is FailureReason.INSUFFICIENT_BALANCE:
        raise InsufficientBalance(f"{text}: insufficient local balance")


def _never_initiated(exc: LndRpcError) -> bool:
    # routerrpc answers NOT_FOUND with paymentsdb's "payment isn't initiated".
    message = exc.status.message.lower()
    return exc.status.grpc_code == GrpcCode.NOT_FOUND or "isn't initiated" in message


def _same_hash(payment: Payment, payment_hash: bytes) -> Payment:
    if payment.payment_hash != payment_hash:
        raise NodeBadResponse("LND reported a payment of another hash")
    return payment


def _required(value: str, name: str) -> str:
    if not value:
        raise NodeBadResponse(f"LND answered without {name}")
    return value


if TYPE_CHECKING:

    def _implements_the_port(node: LndNode) -> Node:
        return node  # mypy proves LndNode satisfies the Node protocol
