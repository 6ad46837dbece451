"""What the checkout page shows of an order, decided here and not in the template."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from markupsafe import Markup

from lngate.services.order_records import CheckoutView
from lngate.web.formatting import btc_text, countdown_text, sat_text, utc_text
from lngate.web.qr import invoice_qr_svg, lightning_uri

OPEN = "open"
# Statuses after which nothing on the page changes again.
FINAL_STATUSES = frozenset({"paid", "expired", "cancelled", "refunded"})
# Seconds between reloads of a page that waits for payment, in a browser without JavaScript.
NO_SCRIPT_REFRESH_S = 10


def status_json(order: CheckoutView) -> dict[str, Any]:
    """``GET /pay/{id}/status`` and each event of ``/pay/{id}/events``."""
    return {
        "id": order.id,
        "status": order.status,
        "paid_at": order.paid_at,
        "expires_at": order.expires_at,
        "redirect_url": order.redirect_url,
    }


def safe_link(url: str | None) -> str | None:
    """``url`` if it is an absolute http(s) URL (never ``javascript:`` or ``data:``)."""
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    if any(ch.isspace() or ord(ch) < 0x20 for ch in url):
        return None
    return url


@dataclass(frozen=True, slots=True)
class CheckoutPage:
    order: CheckoutView
    view: str  # the section shown: open | paid | expired | cancelled | refunded
    now_s: int
    remaining_s: int
    amount_sat: str
    amount_btc: str
    countdown: str
    paid_at: str | None  # for people: "1 Dec 2026, 14:05 UTC"
    redirect_url: str | None  # only a safe link
    redirect_host: str | None
    lightning_uri: str
    qr_svg: Markup | None  # only while the order can be paid
    refresh_s: int | None  # the no-script reload, while waiting

    @property
    def final(self) -> bool:
        return self.order.status in FINAL_STATUSES


def checkout_page(order: CheckoutView, now_ms: int) -> CheckoutPage:
    now_s = now_ms // 1000
    remaining_s = max(order.expires_at_s - now_s, 0)
    view = order.status
    if view == OPEN and remaining_s == 0:
        view = "expired"  # the expiry sweep has not got to it yet; it can no longer be paid
    redirect_url = safe_link(order.redirect_url)
    waiting = view == OPEN
    return CheckoutPage(
        order=order,
        view=view,
        now_s=now_s,
        remaining_s=remaining_s,
        amount_sat=sat_text(order.amount_msat),
        amount_btc=btc_text(order.amount_msat),
        countdown=countdown_text(remaining_s),
        paid_at=utc_text(order.paid_at) if order.paid_at else None,
        redirect_url=redirect_url,
        redirect_host=urlsplit(redirect_url).hostname if redirect_url else None,
        lightning_uri=lightning_uri(order.bolt11),
        qr_svg=invoice_qr_svg(order.bolt11) if waiting else None,
        refresh_s=NO_SCRIPT_REFRESH_S if waiting else None,
    )
