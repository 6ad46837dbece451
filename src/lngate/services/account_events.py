"""A user's account events (``deposit.settled``, ``transfer.received``, ``withdrawal.*``, ...),
in the order they were committed: what ``GET /v1/events`` streams."""

from __future__ import annotations

from lngate.services.ports import UnitOfWork, Wakeup
from lngate.store import events
from lngate.store.db import Tx
from lngate.store.events import Event

__all__ = ["AccountEvents", "Event", "events_after", "latest_seq"]


def latest_seq(tx: Tx, user_id: str) -> int:
    """The sequence number of the user's newest event (0 when there is none): a stream that
    starts now sends what comes after it."""
    return events.last_seq(tx, user_id)


def events_after(tx: Tx, *, user_id: str, after_seq: int, limit: int) -> list[Event]:
    """At most ``limit`` of the user's events after ``after_seq``, oldest first."""
    return events.after(tx, user_id, after_seq, limit)


class AccountEvents:
    """Reading a user's events, and waiting for new ones: ``commits`` fires when this
    process commits; events committed by other processes are found by polling."""

    def __init__(self, uow: UnitOfWork, commits: Wakeup) -> None:
        self._uow = uow
        self._commits = commits

    async def latest_seq(self, user_id: str) -> int:
        return await self._uow.read(lambda tx: latest_seq(tx, user_id))

    async def after(self, user_id: str, after_seq: int, limit: int) -> list[Event]:
        return await self._uow.read(
            lambda tx: events_after(tx, user_id=user_id, after_seq=after_seq, limit=limit)
        )

    async def wait(self, timeout_s: float) -> None:
        """Return when this process commits something, or after ``timeout_s``."""
        await self._commits.wait(timeout_s)
