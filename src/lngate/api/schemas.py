"""The HTTP contract: request bodies and response bodies as Pydantic models.

The served OpenAPI document is generated from these, and the routes answer through them, so the
document and the wire cannot drift apart. Response models validate from a use case's dict or
from its frozen record alike (``from_attributes``), and refuse a key they do not declare
(``extra="forbid"``): a field a use case adds is a test failure here, never a silent change of
the public contract. Field names and order are the wire's.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt
from pydantic.config import JsonDict

from lngate.domain.money import MAX_AMOUNT_MSAT
from lngate.domain.withdrawals import WithdrawalStatus
from lngate.services.transfers import MEMO_MAX_CHARS
from lngate.services.withdrawals import BOLT11_MAX_CHARS

LIGHTNING_ADDRESS_MAX_CHARS = 320

_AMOUNT: JsonDict = {"minimum": 1, "maximum": MAX_AMOUNT_MSAT}
_TIMESTAMP: JsonDict = {"format": "date-time"}

UserStatus = Literal["active", "frozen"]
UserRole = Literal["user", "merchant", "admin"]
DepositStatus = Literal["open", "settled", "expired", "cancelled"]
TransferPhase = Literal["single", "pending", "post", "void"]
HoldState = Literal["pending", "posted", "voided"]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Response(BaseModel):
    model_config = ConfigDict(from_attributes=True, extra="forbid", frozen=True)


def _timestamp(description: str = "") -> Any:
    return Field(description=description or None, json_schema_extra=_TIMESTAMP)


# -- requests ------------------------------------------------------------------------------------


class TransferRequest(_Request):
    to: str = Field(
        min_length=1, max_length=64, description="the recipient's username", examples=["bob"]
    )
    # The bounds are checked by the use case (INVALID_AMOUNT), and documented here.
    amount_msat: StrictInt = Field(
        description="a positive integer of millisatoshi",
        json_schema_extra=_AMOUNT,
        examples=[1_000],
    )
    memo: str | None = Field(default=None, max_length=MEMO_MAX_CHARS)


class DepositRequest(_Request):
    amount_msat: StrictInt | None = Field(
        default=None,
        description="omit for an amountless invoice (if the operator allows it)",
        json_schema_extra=_AMOUNT,
        examples=[10_000],
    )
    memo: str | None = Field(default=None, max_length=MEMO_MAX_CHARS)


class WithdrawalRequest(_Request):
    """Exactly one of ``bolt11`` and ``lightning_address``."""

    bolt11: str | None = Field(default=None, max_length=BOLT11_MAX_CHARS)
    lightning_address: str | None = Field(
        default=None, max_length=LIGHTNING_ADDRESS_MAX_CHARS, examples=["bob@example.com"]
    )
    amount_msat: StrictInt | None = Field(
        default=None,
        description="only for amountless invoices and Lightning Addresses",
        json_schema_extra=_AMOUNT,
    )


class Reason(_Request):
    reason: str = Field(min_length=1, max_length=1000)


class Resume(Reason):
    acknowledge_shortfall_msat: StrictInt | None = Field(
        default=None, ge=0, description="a shortfall you have investigated and accept"
    )


class ChannelRequest(_Request):
    peer: str = Field(min_length=66, max_length=200, description="pubkey or pubkey@host:port")
    amount_sat: StrictInt = Field(gt=0)
    push_sat: StrictInt = Field(default=0, ge=0)


# -- the user API --------------------------------------------------------------------------------


class Health(_Response):
    status: Literal["ok"]
    version: str


class Account(_Response):
    user_id: str
    username: str
    available_msat: int
    pending_msat: int = Field(description="held for withdrawals in progress")
    lightning_address: str
    status: UserStatus


class Transfer(_Response):
    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True)

    id: str
    from_: str = Field(alias="from", description="the sender's username")
    to: str
    amount_msat: int
    memo: str
    status: Literal["completed"]
    created_at: str = _timestamp()


class HistoryEntry(_Response):
    seq: int = Field(description="the cursor of this entry")
    id: str
    kind: str = Field(description="transfer, deposit, withdrawal, routing_fee, adjustment, ...")
    phase: TransferPhase
    hold_state: HoldState | None = Field(description="for holds (phase pending): what became of it")
    direction: Literal["in", "out"]
    amount_msat: int
    counterparty: str | None = Field(description="the other user's name, if a user")
    memo: str
    created_at: str = _timestamp()


class HistoryPage(_Response):
    entries: list[HistoryEntry] = Field(description="newest first")
    next_cursor: int | None = Field(description="pass as cursor for the next page; null at the end")


class Deposit(_Response):
    id: str
    bolt11: str
    payment_hash: str
    amount_msat: int | None = Field(description="null for an amountless invoice")
    amount_paid_msat: int | None
    memo: str
    source: str = Field(description="api, lnurl (a Lightning Address payment) or cli")
    status: DepositStatus
    created_at: str = _timestamp()
    expires_at: str = _timestamp()
    settled_at: str | None = _timestamp()


class DepositPage(_Response):
    deposits: list[Deposit] = Field(description="newest first")
    next_cursor: int | None = Field(description="pass as cursor for the next page; null at the end")


class Withdrawal(_Response):
    id: str
    status: WithdrawalStatus
    bolt11: str
    payment_hash: str
    destination: str | None = Field(description="the Lightning Address paid, if one was")
    amount_msat: int
    exchange_fee_msat: int
    fee_reserve_msat: int = Field(description="held for routing fees; the unused part returns")
    routing_fee_msat: int | None
    preimage: str | None = Field(description="hex, once the payment succeeded")
    internal: bool = Field(description="paid to another user of this exchange, off Lightning")
    note: str
    created_at: str = _timestamp()
    finished_at: str | None = _timestamp()


class WithdrawalPage(_Response):
    withdrawals: list[Withdrawal] = Field(description="newest first")
    next_cursor: int | None = Field(description="pass as cursor for the next page; null at the end")


# -- LNURL-pay (LUD-06, LUD-16) ------------------------------------------------------------------


class PayRequest(_Response):
    tag: Literal["payRequest"]
    callback: str
    minSendable: int
    maxSendable: int
    metadata: str
    commentAllowed: int


class PayRequestInvoice(_Response):
    pr: str = Field(description="a BOLT 11 invoice whose description hash commits to metadata")
    routes: list[Any] = Field(description="always empty (LUD-06)")


class LudError(_Response):
    status: Literal["ERROR"]
    reason: str


# -- the admin API -------------------------------------------------------------------------------


class AdminUser(Account):
    role: UserRole


class HaltChange(_Response):
    halted: bool
    changed: bool = Field(description="false if withdrawals already were in that state")


class FreezeChange(_Response):
    frozen: bool
    changed: bool = Field(description="false if the user already was in that state")


class HaltRecord(_Response):
    reason: str
    by: str
    at_ms: int


class SignerHealth(_Response):
    rpc_host: str
    reachable: bool
    detail: str
    checked_at: int = Field(description="Unix time in seconds")


class AdminStatus(_Response):
    withdrawals_halted: HaltRecord | None = Field(description="null while withdrawals run")
    signer: SignerHealth | None = Field(
        description="a watch-only node's remote signer; null when the node has none"
    )


class LedgerCheck(_Response):
    name: str
    ok: bool
    detail: str


class LedgerChecks(_Response):
    ok: bool
    checks: list[LedgerCheck]


class NodeAssets(_Response):
    onchain_confirmed_sat: int
    onchain_unconfirmed_sat: int
    channel_local_msat: int
    channel_remote_msat: int
    pending_htlcs_msat: int
    assets_msat: int


class ReconciliationReport(_Response):
    ok: bool
    ledger: LedgerChecks
    liabilities_msat: int
    fee_revenue_msat: int
    expenses_msat: int
    required_msat: int
    node: NodeAssets
    cold_msat: int
    assets_msat: int
    shortfall_msat: int
    shortfall_allowed_msat: int
    pending_withdrawals_msat: int
    warnings: list[str]
    held_htlcs_msat: int = 0  # orders credited before the node settled their HTLC


class Reconciliation(ReconciliationReport):
    id: int
    withdrawals_halted: bool


class StoredReconciliation(_Response):
    id: int
    at_ms: int
    ok: bool
    shortfall_msat: int
    report: ReconciliationReport


class TreasuryOnchain(_Response):
    confirmed_sat: int
    unconfirmed_sat: int
    cap_sat: int
    would_sweep_sat: int


class TreasuryChannels(_Response):
    local_msat: int
    remote_msat: int
    pending_htlcs_msat: int
    target_local_sat: int


class TreasuryCold(_Response):
    ledger_balance_msat: int
    addresses_free: int
    addresses_pending: int
    addresses_used: int
    pending_sweep_address: str | None
    sweeps: int
    swept_sat: int
    sweep_fees_sat: int
    channel_closes: int
    channel_closes_sat: int
    channel_funding_fees_sat: int


class BookedClose(_Response):
    channel_point: str
    closing_txid: str
    address: str = Field(description="the cold address the close paid")
    amount_sat: int


class Treasury(_Response):
    onchain: TreasuryOnchain
    channels: TreasuryChannels
    cold: TreasuryCold
    channel_closes: list[BookedClose] = Field(description="the most recent, newest first")


class Channel(_Response):
    channel_point: str
    peer_pubkey: str
    active: bool
    capacity_sat: int
    local_balance_msat: int
    remote_balance_msat: int
    close_address: str | None
    close_address_is_cold: bool


class ChannelOpened(_Response):
    channel_point: str
    peer: str
    amount_sat: int
    push_sat: int
    close_address: str = Field(description="the cold address a cooperative close pays")


class AuditRecord(_Response):
    seq: int
    at: str = _timestamp()
    actor: str
    action: str
    subject: str
    reason: str
    details: dict[str, Any]
    hash: str = Field(description="chains this record to the one before it")


class AuditPage(_Response):
    records: list[AuditRecord]
    next_after: int | None = Field(description="pass as after for the next page; null at the end")
