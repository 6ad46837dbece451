"""Internal transfers in batches on PostgreSQL: one call of ``lngate_transfer_batch``
(migration 0008) applies many, in order, with the rules of the Python path.

Each transfer's answer is a row ``(outcome, body)``: ``ok`` and ``replayed`` carry the receipt
JSON; every other outcome names a refusal, and a refused transfer changed nothing.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from lngate.domain.money import LEDGER_TOTAL_MAX_MSAT, MAX_AMOUNT_MSAT
from lngate.store.db import Params, Row

SQL = (
    "SELECT outcome, body FROM lngate_transfer_batch("
    ":senders::text[], :tos::text[], :amounts::bigint[], :memos::text[], :keys::text[], "
    ":hashes::text[], :now_ms, :created_at, :amount_max, :total_max)"
)


class Outcome(enum.StrEnum):
    """The outcomes that are not a ledger ``TransferResult`` (those come by their own name)."""

    OK = "ok"
    REPLAYED = "replayed"
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    SENDER_NOT_FOUND = "sender_not_found"
    SENDER_FROZEN = "sender_frozen"
    UNKNOWN_USER = "unknown_user"
    SELF_TRANSFER = "self_transfer"
    RECIPIENT_FROZEN = "recipient_frozen"


@dataclass(frozen=True, slots=True)
class Request:
    sender_id: str
    to_username: str
    amount_msat: int
    memo: str
    idempotency_key: str
    request_hash: str

    def storable(self) -> bool:
        """PostgreSQL text cannot hold NUL: such a request takes the Python path, which refuses
        it the way every other write does."""
        texts = (self.sender_id, self.to_username, self.memo, self.idempotency_key)
        return not any("\x00" in t for t in texts)


def statement(requests: Sequence[Request], *, now_ms: int, created_at: str) -> tuple[str, Params]:
    """The call that applies ``requests`` in order; every transfer is stamped ``now_ms``."""
    return SQL, {
        "senders": [r.sender_id for r in requests],
        "tos": [r.to_username for r in requests],
        "amounts": [r.amount_msat for r in requests],
        "memos": [r.memo for r in requests],
        "keys": [r.idempotency_key for r in requests],
        "hashes": [r.request_hash for r in requests],
        "now_ms": now_ms,
        "created_at": created_at,
        "amount_max": MAX_AMOUNT_MSAT,
        "total_max": LEDGER_TOTAL_MAX_MSAT,
    }


def answers(rows: list[Row], count: int) -> list[tuple[str, str | None]]:
    if len(rows) != count:
        raise RuntimeError(f"lngate_transfer_batch answered {len(rows)} rows for {count}")
    return [(str(outcome), None if body is None else str(body)) for outcome, body in rows]
