"""LND's REST JSON, mapped onto the port's records, and the few encodings LND wants back.

LND's REST JSON (protojson with proto field names): int64/uint64 values are strings, uint32 are
numbers, ``bytes`` are base64 (URL-safe base64 inside URL paths and queries), enums are names.
Fields that LND's own ``string`` type carries as hex (``PayReq.payment_hash``,
``PayReq.description_hash``, ``Payment.payment_preimage``) stay hex.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from lngate.domain.errors import NodeBadResponse
from lngate.lightning.node import (
    Balances,
    Channel,
    ClosedChannel,
    CloseType,
    DecodedInvoice,
    FailureReason,
    Invoice,
    InvoiceState,
    Network,
    NodeInfo,
    OnchainTx,
    Payment,
    PaymentStatus,
    RouteHintHop,
)

Json = Mapping[str, Any]

_MSAT_PER_SAT = 1000
_HASH_BYTES = 32

# GetInfoResponse.chains[].network as lnd names it (lncfg / chainreg).
_NETWORKS = {
    "mainnet": Network.MAINNET,
    "testnet": Network.TESTNET,
    "testnet3": Network.TESTNET,
    "testnet4": Network.TESTNET,
    "signet": Network.SIGNET,
    "regtest": Network.REGTEST,
    "simnet": Network.SIMNET,
}

# BOLT #11 human-readable prefixes after "ln"; longer ones first so "bcrt" wins over "bc".
_BOLT11_PREFIXES = (
    ("bcrt", Network.REGTEST),
    ("bc", Network.MAINNET),
    ("tbs", Network.SIGNET),
    ("tb", Network.TESTNET),
    ("sb", Network.SIMNET),
)

_INVOICE_STATES = {
    "OPEN": InvoiceState.OPEN,
    "ACCEPTED": InvoiceState.ACCEPTED,
    "SETTLED": InvoiceState.SETTLED,
    "CANCELED": InvoiceState.CANCELED,
}

# lnrpc.PaymentFailureReason
_FAILURE_REASONS = {
    "FAILURE_REASON_TIMEOUT": FailureReason.TIMEOUT,
    "FAILURE_REASON_NO_ROUTE": FailureReason.NO_ROUTE,
    "FAILURE_REASON_ERROR": FailureReason.ERROR,
    "FAILURE_REASON_INCORRECT_PAYMENT_DETAILS": FailureReason.INCORRECT_PAYMENT_DETAILS,
    "FAILURE_REASON_INSUFFICIENT_BALANCE": FailureReason.INSUFFICIENT_BALANCE,
    "FAILURE_REASON_CANCELED": FailureReason.CANCELED,
}

# lnrpc.ChannelCloseSummary.ClosureType
_CLOSE_TYPES = {
    "COOPERATIVE_CLOSE": CloseType.COOPERATIVE,
    "LOCAL_FORCE_CLOSE": CloseType.LOCAL_FORCE,
    "REMOTE_FORCE_CLOSE": CloseType.REMOTE_FORCE,
    "BREACH_CLOSE": CloseType.BREACH,
    "FUNDING_CANCELED": CloseType.FUNDING_CANCELED,
    "ABANDONED": CloseType.ABANDONED,
}


# --- encodings -----------------------------------------------------------------------------


def b64(data: bytes) -> str:
    """Standard base64, as LND's REST proxy wants ``bytes`` fields in JSON bodies."""
    return base64.b64encode(data).decode("ascii")


def b64url(data: bytes) -> str:
    """URL-safe base64 with padding, for ``bytes`` in URL paths and queries (grpc-gateway
    decodes standard base64 first and URL-safe second, so both alphabets are accepted)."""
    return base64.urlsafe_b64encode(data).decode("ascii")


def from_b64(text: str) -> bytes:
    try:
        return base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise NodeBadResponse(f"LND sent bad base64: {text[:80]!r}") from exc


def from_hex(text: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError as exc:
        raise NodeBadResponse(f"LND sent bad hex: {text[:80]!r}") from exc


def as_int(obj: Json, key: str) -> int:
    """An integer field: int64 arrive as strings, uint32 as numbers, zero may be absent."""
    value = obj.get(key)
    if value is None or value == "":
        return 0
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise NodeBadResponse(f"LND field {key} is not an integer: {value!r}")
    try:
        return int(value)
    except ValueError as exc:
        raise NodeBadResponse(f"LND field {key} is not an integer: {value!r}") from exc


def as_str(obj: Json, key: str) -> str:
    value = obj.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise NodeBadResponse(f"LND field {key} is not a string: {value!r}")
    return value


def as_list(obj: Json, key: str) -> Sequence[Json]:
    value = obj.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, Mapping) for item in value):
        raise NodeBadResponse(f"LND field {key} is not a list of objects")
    return value


def as_obj(obj: Json, key: str) -> Json:
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise NodeBadResponse(f"LND field {key} is not an object")
    return value


def _optional(text: str) -> str | None:
    return text or None


def _checked_preimage(preimage: bytes, payment_hash: bytes) -> bytes:
    # Check sha256(preimage) == payment_hash whenever a preimage is read (STYLE.md).
    if hashlib.sha256(preimage).digest() != payment_hash:
        raise NodeBadResponse(f"LND preimage does not hash to {payment_hash.hex()}")
    return preimage


def _hash(raw: bytes) -> bytes:
    if len(raw) != _HASH_BYTES:
        raise NodeBadResponse(f"LND payment hash has {len(raw)} bytes, not 32")
    return raw


# --- node ----------------------------------------------------------------------------------


def network_from_name(name: str) -> Network:
    try:
        return _NETWORKS[name.lower()]
    except KeyError:
        raise NodeBadResponse(f"LND is on an unknown network: {name!r}") from None


def map_info(obj: Json) -> NodeInfo:
    chains = as_list(obj, "chains")
    if not chains:
        raise NodeBadResponse("LND getinfo lists no chain")
    return NodeInfo(
        pubkey=as_str(obj, "identity_pubkey"),
        network=network_from_name(as_str(chains[0], "network")),
        alias=as_str(obj, "alias"),
        block_height=as_int(obj, "block_height"),
    )


# --- invoices ------------------------------------------------------------------------------


def invoice_state(name: str) -> InvoiceState:
    try:
        return _INVOICE_STATES[name]
    except KeyError:
        raise NodeBadResponse(f"LND invoice state unknown: {name!r}") from None


def map_invoice(obj: Json) -> Invoice:
    """An ``lnrpc.Invoice``. The preimage is reported once the invoice is settled only: before
    that it is a secret of this node, not a proof of payment."""
    payment_hash = _hash(from_b64(as_str(obj, "r_hash")))
    state = invoice_state(as_str(obj, "state"))
    settled = state is InvoiceState.SETTLED
    raw_preimage = from_b64(as_str(obj, "r_preimage")) if settled else b""
    value_msat = as_int(obj, "value_msat")
    description_hash = from_b64(as_str(obj, "description_hash"))
    return Invoice(
        bolt11=as_str(obj, "payment_request"),
        payment_hash=payment_hash,
        amount_msat=value_msat or None,  # 0 is LND's amountless invoice
        state=state,
        created_at=as_int(obj, "creation_date"),
        expiry_s=as_int(obj, "expiry"),
        add_index=as_int(obj, "add_index"),
        settle_index=as_int(obj, "settle_index") if settled else 0,
        amount_paid_msat=_amount_paid_msat(obj, state),
        settled_at=as_int(obj, "settle_date") if settled else None,
        preimage=_checked_preimage(raw_preimage, payment_hash) if raw_preimage else None,
        memo=_optional(as_str(obj, "memo")),
        description_hash=description_hash or None,
    )


def _amount_paid_msat(obj: Json, state: InvoiceState) -> int:
    """What the invoice's HTLCs bring: LND keeps ``amt_paid_msat`` for settled invoices, so for
    an ACCEPTED hold invoice it is the sum of the HTLCs it holds."""
    paid_msat = as_int(obj, "amt_paid_msat")
    if state is not InvoiceState.ACCEPTED:
        return paid_msat
    held_msat = sum(
        as_int(htlc, "amt_msat")
        for htlc in as_list(obj, "htlcs")
        if as_str(htlc, "state") == "ACCEPTED"
    )
    return max(paid_msat, held_msat)


def network_from_bolt11(bolt11: str) -> Network:
    lowered = bolt11.lower()
    if not lowered.startswith("ln"):
        raise NodeBadResponse("not a BOLT11 string")
    rest = lowered[2:]
    for prefix, network in _BOLT11_PREFIXES:
        if rest.startswith(prefix):
            return network
    raise NodeBadResponse(f"unknown BOLT11 currency prefix in {bolt11[:12]!r}")


def short_channel_id(chan_id: int) -> str:
    """BOLT #7 short_channel_id ``block x tx x output`` from LND's uint64 form."""
    return f"{chan_id >> 40}x{(chan_id >> 16) & 0xFFFFFF}x{chan_id & 0xFFFF}"


def _route_hints(obj: Json) -> tuple[tuple[RouteHintHop, ...], ...]:
    return tuple(
        tuple(
            RouteHintHop(
                pubkey=as_str(hop, "node_id"),
                short_channel_id=short_channel_id(as_int(hop, "chan_id")),
                fee_base_msat=as_int(hop, "fee_base_msat"),
                fee_proportional_millionths=as_int(hop, "fee_proportional_millionths"),
                cltv_expiry_delta=as_int(hop, "cltv_expiry_delta"),
            )
            for hop in as_list(hint, "hop_hints")
        )
        for hint in as_list(obj, "route_hints")
    )


def map_decoded(bolt11: str, obj: Json) -> DecodedInvoice:
    """An ``lnrpc.PayReq``; LND gives no network, so it comes from the BOLT11 prefix."""
    amount_msat = as_int(obj, "num_msat")
    payment_secret = from_b64(as_str(obj, "payment_addr"))
    description_hash = from_hex(as_str(obj, "description_hash"))
    return DecodedInvoice(
        bolt11=bolt11,
        payment_hash=_hash(from_hex(as_str(obj, "payment_hash"))),
        payee=as_str(obj, "destination"),
        amount_msat=amount_msat or None,
        created_at=as_int(obj, "timestamp"),
        expiry_s=as_int(obj, "expiry"),
        network=network_from_bolt11(bolt11),
        description=_optional(as_str(obj, "description")),
        description_hash=description_hash or None,
        min_final_cltv_expiry=as_int(obj, "cltv_expiry"),
        payment_secret=payment_secret or None,
        route_hints=_route_hints(obj),
    )


# --- payments ------------------------------------------------------------------------------


def failure_reason(name: str) -> FailureReason:
    # FAILURE_REASON_NONE on a FAILED payment, or a reason newer than this code: a failure
    # all the same, and the payment is not in flight.
    return _FAILURE_REASONS.get(name, FailureReason.ERROR)


def _settled_preimage(obj: Json, payment_hash: bytes) -> bytes:
    preimage = from_hex(as_str(obj, "payment_preimage"))
    if not preimage.strip(b"\0"):
        for htlc in as_list(obj, "htlcs"):
            if as_str(htlc, "status") == "SUCCEEDED" and htlc.get("preimage"):
                preimage = from_b64(as_str(htlc, "preimage"))
                break
    return _checked_preimage(preimage, payment_hash)


def map_payment(obj: Json) -> Payment:
    """An ``lnrpc.Payment`` (the updates of SendPaymentV2 and TrackPaymentV2).

    The status is read through the HTLCs (NOTES.md): an HTLC still in flight keeps the payment
    in flight even when LND already records a failure, so a hold is never released while money
    may still move; a settled HTLC means money left, but until LND says SUCCEEDED the final fee
    is not known, so that is reported as in flight too."""
    payment_hash = _hash(from_hex(as_str(obj, "payment_hash")))
    htlc_states = {as_str(htlc, "status") for htlc in as_list(obj, "htlcs")}
    status = as_str(obj, "status")
    amount_msat = as_int(obj, "value_msat")
    fee_msat = as_int(obj, "fee_msat")
    money_left = status == "SUCCEEDED" or (status == "FAILED" and "SUCCEEDED" in htlc_states)
    if money_left:
        return Payment(
            payment_hash=payment_hash,
            status=PaymentStatus.SUCCEEDED,
            amount_msat=amount_msat,
            fee_msat=fee_msat,
            preimage=_settled_preimage(obj, payment_hash),
        )
    if status == "FAILED" and "IN_FLIGHT" not in htlc_states:
        return Payment(
            payment_hash=payment_hash,
            status=PaymentStatus.FAILED,
            amount_msat=amount_msat,
            fee_msat=0,
            failure_reason=failure_reason(as_str(obj, "failure_reason")),
        )
    # IN_FLIGHT, INITIATED, or a status this code does not know: never a reason to release.
    return Payment(
        payment_hash=payment_hash,
        status=PaymentStatus.IN_FLIGHT,
        amount_msat=amount_msat,
        fee_msat=fee_msat,
    )


# --- wallet and channels -------------------------------------------------------------------


def _amount_msat(obj: Json, key: str) -> int:
    """An ``lnrpc.Amount`` ``{sat, msat}`` of ChannelBalanceResponse, in msat."""
    amount = as_obj(obj, key)
    if amount.get("msat") not in (None, ""):
        return as_int(amount, "msat")
    return as_int(amount, "sat") * _MSAT_PER_SAT


def map_balances(wallet: Json, channels: Json) -> Balances:
    """WalletBalanceResponse and ChannelBalanceResponse. Outgoing HTLCs in flight are the
    channels' ``unsettled_remote_balance``: LND sums outgoing HTLCs there and incoming ones in
    ``unsettled_local_balance`` (rpcserver.go ChannelBalance; checked on lnd 0.21)."""
    return Balances(
        onchain_confirmed_sat=as_int(wallet, "confirmed_balance"),
        onchain_unconfirmed_sat=as_int(wallet, "unconfirmed_balance"),
        channel_local_msat=_amount_msat(channels, "local_balance"),
        channel_remote_msat=_amount_msat(channels, "remote_balance"),
        pending_htlcs_msat=_amount_msat(channels, "unsettled_remote_balance"),
        channel_pending_open_local_msat=_amount_msat(channels, "pending_open_local_balance"),
    )


def map_channel(obj: Json) -> Channel:
    """An ``lnrpc.Channel``: its balances are whole satoshis (``local_balance``)."""
    return Channel(
        channel_id=as_str(obj, "channel_point"),
        peer_pubkey=as_str(obj, "remote_pubkey"),
        capacity_sat=as_int(obj, "capacity"),
        local_balance_msat=as_int(obj, "local_balance") * _MSAT_PER_SAT,
        remote_balance_msat=as_int(obj, "remote_balance") * _MSAT_PER_SAT,
        active=obj.get("active") is True,
        close_address=_optional(as_str(obj, "close_address")),
        extra={
            "chan_id": as_str(obj, "chan_id"),
            "private": str(obj.get("private") is True).lower(),
            "initiator": str(obj.get("initiator") is True).lower(),
            "unsettled_balance_sat": str(as_int(obj, "unsettled_balance")),
            "commitment_type": as_str(obj, "commitment_type"),
        },
    )


def map_transaction(obj: Json) -> OnchainTx:
    """An ``lnrpc.Transaction``: ``amount`` is the signed change to the wallet in satoshis."""
    addresses = [as_str(out, "address") for out in as_list(obj, "output_details")]
    if not any(addresses):
        legacy = obj.get("dest_addresses") or []
        addresses = [a for a in legacy if isinstance(a, str)]
    return OnchainTx(
        txid=as_str(obj, "tx_hash"),
        amount_sat=as_int(obj, "amount"),
        fee_sat=as_int(obj, "total_fees"),
        confirmations=as_int(obj, "num_confirmations"),
        addresses=tuple(a for a in addresses if a),
    )


def map_closed_channel(obj: Json) -> ClosedChannel:
    """An ``lnrpc.ChannelCloseSummary`` of ``GET /v1/channels/closed``. ``channel_point`` and
    ``closing_tx_hash`` are display hex (``OutPoint.String``, ``Hash.String``); balances are
    int64 satoshis. For a cooperative close lnd counts as ``settled_balance`` the outputs paying
    our delivery script (the upfront shutdown address) or our wallet (chain_watcher.go
    ``toSelfAmount``, lnd 0.21). The summary names no close address.

    ``close_type`` is always sent (lnd's REST proxy emits unpopulated fields); if it were
    missing it would be proto3's zero, COOPERATIVE_CLOSE, but a missing field is read as
    UNKNOWN here so that nothing is ever booked as cooperative on a guess."""
    point = as_str(obj, "channel_point")
    txid, sep, index = point.partition(":")
    if not (sep and len(txid) == 2 * _HASH_BYTES and index.isdigit()):
        raise NodeBadResponse(f"LND closed channel has a bad channel point: {point[:80]!r}")
    settled_sat = as_int(obj, "settled_balance")
    time_locked_sat = as_int(obj, "time_locked_balance")
    if settled_sat < 0 or time_locked_sat < 0:
        raise NodeBadResponse(f"LND closed channel {point} has a negative balance")
    return ClosedChannel(
        channel_point=point,
        closing_txid=as_str(obj, "closing_tx_hash"),
        close_type=_CLOSE_TYPES.get(as_str(obj, "close_type"), CloseType.UNKNOWN),
        settled_balance_sat=settled_sat,
        time_locked_balance_sat=time_locked_sat,
        close_address=None,
    )


def channel_point(obj: Json) -> str:
    """An ``lnrpc.ChannelPoint`` as ``txid:index``. ``funding_txid_bytes`` is the txid in
    internal byte order, the reverse of the hex everyone displays."""
    txid = as_str(obj, "funding_txid_str")
    if not txid:
        raw = from_b64(as_str(obj, "funding_txid_bytes"))
        if len(raw) != _HASH_BYTES:
            raise NodeBadResponse("LND channel point has no funding txid")
        txid = raw[::-1].hex()
    return f"{txid}:{as_int(obj, 'output_index')}"
