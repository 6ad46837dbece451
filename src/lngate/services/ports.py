"""The ports the use cases depend on; bootstrap plugs an adapter into each.

A use case never opens a database connection, reads the wall clock or makes an HTTP request
itself: it is given a ``UnitOfWork``, a ``Clock``, a ``Wakeup`` and a ``LnurlResolver`` (and
the ``Node`` port of ``lightning.node``), so tests can give it SQLite, a fixed clock and
simnet, and production the group-commit writer, the system clock and LND.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

from lngate.store.db import Tx

T = TypeVar("T")


class UnitOfWork(Protocol):
    """Transactions for the use cases. A write function runs in one atomic transaction (with
    the group-commit writer: its own savepoint in a shared batch); a read function in one
    consistent snapshot. Functions may run on another thread: they must only use ``tx``."""

    async def read(self, fn: Callable[[Tx], T]) -> T: ...

    async def read_one_statement(self, fn: Callable[[Tx], T]) -> T:
        """A read whose ``fn`` runs a single statement, its own snapshot: it needs no
        transaction around it (on PostgreSQL, two round trips fewer than ``read``)."""
        ...

    async def write(self, fn: Callable[[Tx], T]) -> T: ...

    def read_sync(self, fn: Callable[[Tx], T]) -> T:
        """For tools with no event loop (the CLI)."""
        ...

    def write_sync(self, fn: Callable[[Tx], T]) -> T:
        """For tools with no event loop (the CLI)."""
        ...


class Clock(Protocol):
    """Wall-clock time as the use cases see it, in milliseconds since the Unix epoch."""

    def now_ms(self) -> int: ...


class Wakeup(Protocol):
    """A nudge between a use case and a worker of the same process (others poll)."""

    def fire(self) -> None: ...

    async def wait(self, timeout_s: float) -> None:
        """Return when fired, or after ``timeout_s``."""
        ...


class LnurlResolver(Protocol):
    """Turns a Lightning Address and an amount into a BOLT11 invoice (LUD-16 then LUD-06)."""

    async def resolve_invoice(self, address: str, amount_msat: int) -> str:
        """A checked invoice for exactly ``amount_msat``; LnurlFailed or
        DestinationNotAllowed when the address's service will not give one."""
        ...
