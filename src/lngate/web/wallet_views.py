"""What the wallet's pages show of the records, decided here and not in the templates: the
words for each status, and the live state each page's script follows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from markupsafe import Markup

from lngate.services.accounts import AccountView, HistoryEntry
from lngate.services.deposits import DepositRecord
from lngate.services.withdrawal_records import WithdrawalView
from lngate.web.formatting import countdown_text, sat_text, utc_text
from lngate.web.live import State
from lngate.web.qr import invoice_qr_svg, lightning_uri

DEPOSIT_FINAL = frozenset({"settled", "expired", "cancelled"})
WITHDRAWAL_FINAL = frozenset({"succeeded", "failed", "rejected"})

DEPOSIT_WORDS = {
    "open": "Waiting for payment",
    "settled": "Credited",
    "expired": "Expired: nothing was paid",
    "cancelled": "Cancelled",
}
WITHDRAWAL_WORDS = {
    "requested": "Requested",
    "review": "Waiting for an operator's approval",
    "approved": "Approved: about to be sent",
    "sending": "Sending",
    "succeeded": "Sent",
    "failed": "Failed: the amount is back in your balance",
    "rejected": "Rejected: the amount is back in your balance",
}
PHASE_NOTES = {"pending": "held", "post": "hold settled", "void": "hold released"}
HISTORY_KINDS = {
    "deposit": "Deposit",
    "withdrawal": "Withdrawal",
    "transfer": "Transfer",
    "adjustment": "Adjustment",
    "order": "Order",
    "refund": "Refund",
    "order_fee": "Order fee",
    "routing_fee": "Routing fee",
}


def msat_title(amount_msat: int) -> str:
    return f"{amount_msat:,} msat"


def epoch_s(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())


def balance_state(account: AccountView) -> State:
    return {
        "fields": {
            "available": sat_text(account.available_msat),
            "pending": sat_text(account.pending_msat),
        },
        "titles": {
            "available": msat_title(account.available_msat),
            "pending": msat_title(account.pending_msat),
        },
        "final": False,
    }


def deposit_state(d: DepositRecord) -> State:
    return {
        "status": d.status,
        "fields": {"status": DEPOSIT_WORDS.get(d.status, d.status)},
        "final": d.status in DEPOSIT_FINAL,
    }


def withdrawal_state(w: WithdrawalView) -> State:
    return {
        "status": w.status.value,
        "fields": {"status": WITHDRAWAL_WORDS.get(w.status.value, w.status.value)},
        "final": w.status.value in WITHDRAWAL_FINAL,
    }


@dataclass(frozen=True, slots=True)
class DepositPage:
    deposit: DepositRecord
    words: str
    waiting: bool
    amount_sat: str | None
    paid_sat: str | None
    now_s: int
    expires_at_s: int
    countdown: str
    lightning_uri: str
    qr_svg: Markup | None


def deposit_page(d: DepositRecord, now_ms: int) -> DepositPage:
    now_s, expires_at_s = now_ms // 1000, epoch_s(d.expires_at)
    waiting = d.status == "open" and expires_at_s > now_s
    return DepositPage(
        deposit=d,
        words=DEPOSIT_WORDS.get(d.status, d.status)
        if waiting or d.status != "open"
        else DEPOSIT_WORDS["expired"],
        waiting=waiting,
        amount_sat=None if d.amount_msat is None else sat_text(d.amount_msat),
        paid_sat=None if d.amount_paid_msat is None else sat_text(d.amount_paid_msat),
        now_s=now_s,
        expires_at_s=expires_at_s,
        countdown=countdown_text(expires_at_s - now_s),
        lightning_uri=lightning_uri(d.bolt11),
        qr_svg=invoice_qr_svg(d.bolt11) if waiting else None,
    )


@dataclass(frozen=True, slots=True)
class HistoryRow:
    kind: str
    direction: str
    amount_sat: str
    amount_title: str
    counterparty: str | None
    memo: str
    at: str
    note: str  # for the entries of a hold: held, settled, released


def history_row(e: HistoryEntry) -> HistoryRow:
    sign = "+" if e.direction == "in" else "\u2212"  # a minus sign, as wide as the plus
    return HistoryRow(
        kind=HISTORY_KINDS.get(e.kind, e.kind.replace("_", " ").capitalize()),
        direction=e.direction,
        amount_sat=f"{sign}{sat_text(e.amount_msat)}",
        amount_title=msat_title(e.amount_msat),
        counterparty=e.counterparty,
        memo=e.memo,
        at=utc_text(e.created_at),
        note=PHASE_NOTES.get(e.phase, ""),
    )
