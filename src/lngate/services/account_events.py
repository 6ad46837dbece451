"""A user's account events (``deposit.settled``, ``transfer.received``, ``withdrawal.*``, ...),
in the order they were committed: what ``GET /v1/events`` streams."""

from __future__ import annotations

from lngate.store import events
from lngate.store.db import Tx
from lngate.store.events import Event

__all__ = ["Event", "events_after", "latest_seq"]


def latest_seq(tx: Tx, user_id: str) -> int:
    """The sequence number of the user's newest event (0 when there is none): a stream that
    starts now sends what comes after it."""
    return events.last_seq(tx, user_id)


def events_after(tx: Tx, *, user_id: str, after_seq: int, limit: int) -> list[Event]:
    """At most ``limit`` of the user's events after ``after_seq``, oldest first."""
    return events.after(tx, user_id, after_seq, limit)
