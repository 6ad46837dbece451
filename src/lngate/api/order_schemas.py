"""Pay's HTTP contract: orders, balance payments and refunds (see ``api.schemas``' conventions:
responses validate from the use cases' frozen records and refuse undeclared keys)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, StrictInt

from lngate.api.schemas import _AMOUNT, LIGHTNING_ADDRESS_MAX_CHARS, _Request, _Response, _timestamp
from lngate.domain.inputs import INVOICE_DESCRIPTION_MAX_BYTES
from lngate.domain.orders import REASON_MAX_CHARS, REDIRECT_URL_MAX_CHARS
from lngate.services.withdrawals import BOLT11_MAX_CHARS

OrderStatus = Literal["open", "paid", "expired", "cancelled", "refunded"]
PaidVia = Literal["lightning", "balance"]
RefundStatus = Literal["pending", "succeeded", "failed"]


class OrderRequest(_Request):
    # Bounds and shapes are checked by the use case (one message per mistake) and shown here.
    merchant_order_id: str = Field(
        description="1-64 of [A-Za-z0-9_-], unique per merchant: the idempotency key",
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        examples=["invoice-1041"],
    )
    amount_msat: StrictInt = Field(json_schema_extra=_AMOUNT, examples=[250_000])
    description: str | None = Field(
        default=None,
        description=f"the invoice's description: at most {INVOICE_DESCRIPTION_MAX_BYTES} bytes "
        "of UTF-8",
        max_length=INVOICE_DESCRIPTION_MAX_BYTES,
        examples=["2 coffees"],
    )
    expires_in_s: StrictInt | None = Field(
        default=None, description="60 to [pay] order_expiry_max_s; [pay] order_expiry_default_s"
    )
    redirect_url: str | None = Field(
        default=None,
        max_length=REDIRECT_URL_MAX_CHARS,
        description="an http(s) URL the checkout page links to once paid",
    )
    metadata: dict[str, Any] | None = Field(
        default=None, description="a JSON object of at most 4 KiB, echoed back"
    )


class Order(_Response):
    id: str
    merchant_order_id: str
    status: OrderStatus
    amount_msat: int
    fee_msat: int
    description: str
    bolt11: str
    payment_hash: str
    checkout_url: str
    created_at: str = _timestamp()
    expires_at: str = _timestamp()
    paid_at: str | None = _timestamp()
    paid_via: PaidVia | None
    refunded_msat: int
    redirect_url: str | None
    metadata: dict[str, Any]


class OrderPage(_Response):
    orders: list[Order]
    next_cursor: str | None


class OrderPayment(_Response):
    """The order as its payer sees it (the checkout page's view)."""

    id: str
    status: OrderStatus
    amount_msat: int
    description: str
    bolt11: str
    merchant: str
    created_at: str = _timestamp()
    expires_at: str = _timestamp()
    expires_at_s: int
    paid_at: str | None = _timestamp()
    redirect_url: str | None


class RefundRequest(_Request):
    """No destination: back to the payer's balance (an order paid from a balance only)."""

    amount_msat: StrictInt = Field(json_schema_extra=_AMOUNT, examples=[50_000])
    reason: str | None = Field(default=None, max_length=REASON_MAX_CHARS)
    bolt11: str | None = Field(default=None, max_length=BOLT11_MAX_CHARS)
    lightning_address: str | None = Field(default=None, max_length=LIGHTNING_ADDRESS_MAX_CHARS)


class Refund(_Response):
    id: str
    order_id: str
    amount_msat: int
    status: RefundStatus
    destination: str
    reason: str
    withdrawal_id: str | None
    created_at: str = _timestamp()
    finished_at: str | None = _timestamp()


class RefundList(_Response):
    refunds: list[Refund]
