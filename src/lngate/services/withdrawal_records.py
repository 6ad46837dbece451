"""What the withdrawal use cases answer: frozen records named field for field as the API's JSON
(``schemas.Withdrawal`` and ``schemas.WithdrawalPage`` validate them as they are), rendered to
that JSON in one place (``as_json``) for the CLI, the events and the idempotent replays."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lngate.domain.withdrawals import WithdrawalStatus
from lngate.services.accounts import iso_ms
from lngate.store.withdrawals import Withdrawal


@dataclass(frozen=True, slots=True)
class WithdrawalView:
    """A withdrawal as its user and the operators see it (no internal bookkeeping fields)."""

    id: str
    status: WithdrawalStatus
    bolt11: str
    payment_hash: str
    destination: str | None
    amount_msat: int
    exchange_fee_msat: int
    fee_reserve_msat: int
    routing_fee_msat: int | None
    preimage: str | None
    internal: bool
    note: str
    created_at: str
    finished_at: str | None

    @classmethod
    def of(cls, w: Withdrawal) -> WithdrawalView:
        return cls(
            id=w.id,
            status=w.status,
            bolt11=w.bolt11,
            payment_hash=w.payment_hash,
            destination=w.destination,
            amount_msat=w.amount_msat,
            exchange_fee_msat=w.exchange_fee_msat,
            fee_reserve_msat=w.fee_reserve_msat,
            routing_fee_msat=w.routing_fee_msat,
            preimage=w.preimage,
            internal=w.internal,
            note=w.note,
            created_at=iso_ms(w.created_at_ms),
            finished_at=iso_ms(w.finished_at_ms) if w.finished_at_ms else None,
        )

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> WithdrawalView:
        """Back from ``as_json`` (a stored idempotent response)."""
        return cls(**{**body, "status": WithdrawalStatus(body["status"])})

    def as_json(self) -> dict[str, Any]:
        """The API's JSON object, keys in the API's order."""
        return {
            "id": self.id,
            "status": self.status.value,
            "bolt11": self.bolt11,
            "payment_hash": self.payment_hash,
            "destination": self.destination,
            "amount_msat": self.amount_msat,
            "exchange_fee_msat": self.exchange_fee_msat,
            "fee_reserve_msat": self.fee_reserve_msat,
            "routing_fee_msat": self.routing_fee_msat,
            "preimage": self.preimage,
            "internal": self.internal,
            "note": self.note,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
        }


@dataclass(frozen=True, slots=True)
class WithdrawalPage:
    """One page of a user's withdrawals, newest first; ``next_cursor`` pages further back."""

    withdrawals: tuple[WithdrawalView, ...]
    next_cursor: int | None

    def as_json(self) -> dict[str, Any]:
        return {
            "withdrawals": [w.as_json() for w in self.withdrawals],
            "next_cursor": self.next_cursor,
        }


@dataclass(frozen=True, slots=True)
class WithdrawalPreview:
    """What a withdrawal would be, decoded and checked by the server before the user confirms:
    nothing is held or recorded. For a Lightning Address the invoice is fetched only on
    confirmation, so its payee and description are not known yet (None)."""

    destination: str  # the BOLT 11 invoice or the Lightning Address, as given
    lightning_address: str | None
    amount_msat: int
    payee: str | None
    description: str | None
    expires_at: str | None
    internal: bool  # to another user of this exchange: free and instant
    exchange_fee_msat: int
    fee_reserve_msat: int  # held for routing; what is not spent comes back
    total_hold_msat: int
    available_msat: int
    daily_left_msat: int  # of the rolling 24 h limit, before this one
    needs_review: bool  # an operator approves it first
