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

# The final CLTV delta (blocks) of a hold invoice: how long the payer's HTLC may be held before
# it must be settled or failed back. LND's default for invoices is 80 as well; the node cancels
# an accepted hold invoice itself when the held HTLC comes close to its expiry height.
HOLD_INVOICE_CLTV = 80
MIN_HOLD_INVOICE_CLTV = 18  # LND's routing.MinCLTVDelta
MAX_HOLD_INVOICE_CLTV = 2016  # two weeks of blocks: far beyond any hold lngate needs


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

    async def create_hold_invoice(
        self,
        payment_hash: bytes,
        amount_msat: int,
        *,
        memo: str | None = None,
        expiry_s: int,
        cltv_expiry: int = HOLD_INVOICE_CLTV,
    ) -> Invoice:
        """A hold invoice for ``payment_hash``, whose preimage the node does not know: a payment
        to it is accepted (ACCEPTED, ``amount_paid_msat`` the held HTLCs' total, the payer's
        payment IN_FLIGHT) and held until ``settle_invoice`` or ``cancel_invoice``. An OPEN one
        past ``expiry_s`` becomes CANCELED; an ACCEPTED one does not expire.

        Not idempotent: a hash that already has an invoice on this node raises
        ``InvalidNodeRequest`` (look that one up instead), as do ``amount_msat <= 0``,
        ``expiry_s <= 0``, ``cltv_expiry`` outside ``MIN_HOLD_INVOICE_CLTV`` ..
        ``MAX_HOLD_INVOICE_CLTV``, and a memo the node finds too long. ``ValueError`` if the
        hash is not 32 bytes."""
        ...

    async def settle_invoice(self, preimage: bytes) -> None:
        """Settle the ACCEPTED hold invoice of ``sha256(preimage)``: the held HTLCs are settled,
        the invoice becomes SETTLED (with a settle_index: ``subscribe_invoices`` streams it like
        any settled invoice) and the payer's payment succeeds with ``preimage``.

        Idempotent: settling an invoice already SETTLED is a no-op (crash recovery may settle
        twice). Raises ``InvoiceNotFound`` when no invoice has that hash (a wrong preimage),
        ``InvalidNodeRequest`` when the invoice is OPEN (nothing held yet), CANCELED, or not a
        hold invoice; ``ValueError`` if the preimage is not 32 bytes."""
        ...

    async def cancel_invoice(self, payment_hash: bytes) -> None:
        """Cancel an OPEN or ACCEPTED invoice: it becomes CANCELED and refuses any payment; on
        an ACCEPTED (hold) invoice the held HTLCs are failed back, so the payer's payment fails
        (INCORRECT_PAYMENT_DETAILS). Idempotent: cancelling a CANCELED invoice is a no-op.
        Raises ``InvoiceNotFound`` for an unknown hash, ``InvalidNodeRequest`` for a SETTLED
        invoice (its money has moved: nothing to withdraw)."""
        ...

    def subscribe_invoices(self, after_settle_index: int = 0) -> AsyncIterator[Invoice]:
        """Settled invoices with settle_index > after_settle_index (replayed first), then
        live settlements as they happen. Canceled invoices may be streamed too (simnet does;
        LND does not): consumers learn of cancellation and expiry from ``lookup_invoice``.
        Never ends on its own."""
        ...

    def subscribe_invoice(self, payment_hash: bytes) -> AsyncIterator[Invoice]:
        """One invoice's states: its current state first, then each change (OPEN, ACCEPTED,
        SETTLED, CANCELED; a change of ``amount_paid_msat`` while ACCEPTED may show too). Ends
        after SETTLED or CANCELED. Raises ``InvoiceNotFound`` (on the first iteration) for an
        unknown hash; a lost connection raises the node error (resubscribe: the current state
        comes first again)."""
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
