"""The Node port: everything lngate asks of a Lightning node.

Adapters (``simnet``, ``lnd``) implement ``Node``. Amounts are ``int`` msat unless the name
says ``_sat``; hashes and preimages are ``bytes`` (hex only at the edges).
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from lngate.domain.errors import NodeBadResponse


class Network(enum.StrEnum):
    MAINNET = "mainnet"
    TESTNET = "testnet"
    SIGNET = "signet"
    REGTEST = "regtest"
    SIMNET = "simnet"


@dataclass(frozen=True, slots=True)
class NodeInfo:
    pubkey: str  # 33-byte compressed key, hex
    network: Network
    alias: str
    block_height: int


class InvoiceState(enum.StrEnum):
    OPEN = "open"
    ACCEPTED = "accepted"  # HTLCs held (hold invoice), not yet settled
    SETTLED = "settled"
    CANCELED = "canceled"


@dataclass(frozen=True, slots=True)
class RouteHintHop:
    pubkey: str
    short_channel_id: str
    fee_base_msat: int
    fee_proportional_millionths: int
    cltv_expiry_delta: int


@dataclass(frozen=True, slots=True)
class DecodedInvoice:
    bolt11: str
    payment_hash: bytes
    payee: str  # pubkey hex
    amount_msat: int | None  # None for an amountless invoice
    created_at: int  # unix seconds
    expiry_s: int
    network: Network
    description: str | None
    description_hash: bytes | None
    min_final_cltv_expiry: int
    payment_secret: bytes | None = None
    route_hints: tuple[tuple[RouteHintHop, ...], ...] = ()

    @property
    def expires_at(self) -> int:
        return self.created_at + self.expiry_s

    def __post_init__(self) -> None:
        assert len(self.payment_hash) == 32
        assert self.amount_msat is None or self.amount_msat > 0


@dataclass(frozen=True, slots=True)
class Invoice:
    """An invoice of this node, as the node knows it."""

    bolt11: str
    payment_hash: bytes
    amount_msat: int | None
    state: InvoiceState
    created_at: int
    expiry_s: int
    add_index: int
    settle_index: int = 0  # 0 until settled
    amount_paid_msat: int = 0
    settled_at: int | None = None
    preimage: bytes | None = None
    memo: str | None = None
    description_hash: bytes | None = None

    @property
    def expires_at(self) -> int:
        return self.created_at + self.expiry_s


class PaymentStatus(enum.StrEnum):
    IN_FLIGHT = "in_flight"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNKNOWN = "unknown"  # the node has no record of this payment hash


class FailureReason(enum.StrEnum):
    NO_ROUTE = "no_route"
    INSUFFICIENT_BALANCE = "insufficient_balance"
    TIMEOUT = "timeout"
    INCORRECT_PAYMENT_DETAILS = "incorrect_payment_details"
    ERROR = "error"
    CANCELED = "canceled"


@dataclass(frozen=True, slots=True)
class Payment:
    payment_hash: bytes
    status: PaymentStatus
    amount_msat: int = 0
    fee_msat: int = 0
    preimage: bytes | None = None  # set when SUCCEEDED
    failure_reason: FailureReason | None = None  # set when FAILED

    def __post_init__(self) -> None:
        # A node's answer that breaks these is malformed: the payment worker asks again.
        if self.status is PaymentStatus.SUCCEEDED and (
            self.preimage is None or len(self.preimage) != 32
        ):
            raise NodeBadResponse("a succeeded payment without a 32-byte preimage")
        if self.status is PaymentStatus.FAILED and self.failure_reason is None:
            raise NodeBadResponse("a failed payment without a failure reason")


@dataclass(frozen=True, slots=True)
class Balances:
    onchain_confirmed_sat: int
    onchain_unconfirmed_sat: int
    channel_local_msat: int
    channel_remote_msat: int
    pending_htlcs_msat: int  # outgoing HTLCs in flight
    channel_pending_open_local_msat: int = 0


@dataclass(frozen=True, slots=True)
class Channel:
    channel_id: str  # funding txid:output index
    peer_pubkey: str
    capacity_sat: int
    local_balance_msat: int
    remote_balance_msat: int
    active: bool
    close_address: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


class CloseType(enum.StrEnum):
    COOPERATIVE = "cooperative"
    LOCAL_FORCE = "local_force"  # we broadcast our commitment
    REMOTE_FORCE = "remote_force"  # the peer broadcast theirs
    BREACH = "breach"  # the peer broadcast a revoked state
    FUNDING_CANCELED = "funding_canceled"  # the funding never confirmed
    ABANDONED = "abandoned"  # forgotten by the operator
    UNKNOWN = "unknown"  # a kind this code does not know: never treated as cooperative


@dataclass(frozen=True, slots=True)
class ClosedChannel:
    """A channel whose close is final on chain, seen from this node."""

    channel_point: str  # funding txid:output index
    closing_txid: str
    close_type: CloseType
    settled_balance_sat: int  # what our side received on chain (time-locked outputs included)
    time_locked_balance_sat: int = 0  # of which behind a CSV/CLTV delay (force closes)
    close_address: str | None = None  # where our side went, when the node reports it

    def __post_init__(self) -> None:
        assert self.settled_balance_sat >= 0 and self.time_locked_balance_sat >= 0


@dataclass(frozen=True, slots=True)
class OnchainTx:
    txid: str
    amount_sat: int  # signed: negative when it left the wallet
    fee_sat: int
    confirmations: int
    addresses: tuple[str, ...] = ()


@runtime_checkable
class Node(Protocol):
    """A Lightning node as lngate uses it. All methods may raise ``lngate.lightning.errors``."""

    async def get_info(self) -> NodeInfo: ...

    async def create_invoice(
        self,
        amount_msat: int | None,
        *,
        memo: str | None = None,
        description_hash: bytes | None = None,
        expiry_s: int = 3600,
    ) -> Invoice: ...

    async def lookup_invoice(self, payment_hash: bytes) -> Invoice: ...

    async def cancel_invoice(self, payment_hash: bytes) -> None: ...

    def subscribe_invoices(self, after_settle_index: int = 0) -> AsyncIterator[Invoice]:
        """Settled invoices with settle_index > after_settle_index (replayed first), then
        live settlements as they happen. Canceled invoices may be streamed too (simnet does;
        LND does not): consumers learn of cancellation and expiry from ``lookup_invoice``.
        Never ends on its own."""
        ...

    async def decode(self, bolt11: str) -> DecodedInvoice: ...

    async def pay(
        self,
        bolt11: str,
        *,
        amount_msat: int | None = None,
        fee_limit_msat: int,
        timeout_s: int = 60,
    ) -> Payment:
        """Start (or find) the payment and return its status once it is known or after
        ``timeout_s``; IN_FLIGHT is a valid answer. Never pays a hash twice: a hash
        already in flight or succeeded raises ``AlreadyPaid``."""
        ...

    async def track_payment(self, payment_hash: bytes) -> Payment: ...

    async def balances(self) -> Balances: ...

    async def new_address(self) -> str: ...

    async def send_onchain(self, address: str, amount_sat: int, sat_per_vbyte: int) -> str:
        """Returns the txid."""
        ...

    async def list_onchain_transactions(self) -> list[OnchainTx]: ...

    async def open_channel(
        self, peer: str, amount_sat: int, *, push_sat: int = 0, close_address: str | None = None
    ) -> str:
        """Returns the channel point ``txid:index``."""
        ...

    async def list_channels(self) -> list[Channel]: ...

    async def list_closed_channels(self) -> list[ClosedChannel]:
        """Channels whose close the node considers final (a close still waiting for its
        confirmations is not listed yet), oldest close first."""
        ...

    async def close(self) -> None:
        """Release connections; the node object is not used afterwards."""
        ...
