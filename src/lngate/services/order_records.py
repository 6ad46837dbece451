"""What the Pay use cases answer: frozen records named field for field as the API's JSON
(``order_schemas`` validates them as they are), rendered to that JSON in one place
(``as_json``) for the CLI, the webhooks, the account events and the idempotent replays."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class OrderView:
    """An order as its merchant sees it (``GET /v1/orders/{id}``, the ``order.*`` webhooks)."""

    id: str
    merchant_order_id: str
    status: str  # open | paid | expired | cancelled | refunded
    amount_msat: int
    fee_msat: int
    description: str
    bolt11: str
    payment_hash: str
    checkout_url: str
    created_at: str
    expires_at: str
    paid_at: str | None
    paid_via: str | None  # lightning | balance
    refunded_msat: int
    redirect_url: str | None
    metadata: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> OrderView:
        return cls(**body)


@dataclass(frozen=True, slots=True)
class OrderPage:
    """One page of a merchant's orders, newest first; ``next_cursor`` pages further back."""

    orders: tuple[OrderView, ...]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class CheckoutView:
    """What the public checkout page may show of an order: no metadata, no merchant ids."""

    id: str
    status: str
    amount_msat: int
    description: str
    bolt11: str
    merchant: str  # the merchant's username
    created_at: str
    expires_at: str
    expires_at_s: int
    paid_at: str | None
    redirect_url: str | None

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True)
class RefundView:
    """A refund of an order (``POST /v1/orders/{id}/refunds``, the ``refund.*`` webhooks)."""

    id: str
    order_id: str
    amount_msat: int
    status: str  # pending | succeeded | failed
    destination: str  # "balance", or the bolt11 / Lightning Address paid
    reason: str
    withdrawal_id: str | None
    created_at: str
    finished_at: str | None

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> RefundView:
        return cls(**body)
