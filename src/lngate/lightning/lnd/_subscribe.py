"""The invoice event stream, kept alive across dropped connections and LND restarts.

``GET /v1/invoices/subscribe?settle_index=N`` first replays the invoices settled after N, then
streams live add and settle events (LND's registry sends global subscribers no cancel or accept
events). N = 0 replays nothing (LND keeps that for backwards compatibility), so a consumer that
has seen nothing yet is caught up from ``GET /v1/invoices`` instead.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass

import httpx

from lngate.domain.errors import NodeError
from lngate.lightning.errors import NodeUnreachable
from lngate.lightning.lnd._client import LndClient
from lngate.lightning.lnd._errors import LndRpcError, is_transient, node_error, transport_error
from lngate.lightning.lnd._mapping import as_int, as_list, map_invoice
from lngate.lightning.node import Invoice, InvoiceState

_BACKFILL_PAGE_SIZE = 1000
_BACKFILL_PAGES_MAX = 10_000  # 10 million invoices: beyond that something else is wrong


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    """Bounded exponential backoff between reconnects of a stream.

    After ``attempts_max`` consecutive failed connections the stream gives up with
    ``NodeUnreachable``. A connection that delivered an event or lived ``healthy_after_s``
    counts as a success, so a node that restarts once a day never runs the count down."""

    initial_delay_s: float = 0.5
    max_delay_s: float = 30.0
    attempts_max: int = 10
    healthy_after_s: float = 30.0

    def delay_s(self, failures: int) -> float:
        return min(self.max_delay_s, self.initial_delay_s * 2.0 ** min(failures - 1, 30))


class _Resume(Exception):
    """A gap in settle indexes: reconnect now and let LND replay from the last one yielded."""


class InvoiceSubscription:
    def __init__(
        self,
        client: LndClient,
        policy: ReconnectPolicy,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._policy = policy
        self._sleep = sleep
        self._clock = clock

    async def events(self, after_settle_index: int) -> AsyncGenerator[Invoice, None]:
        """Settled (and, should LND ever send them, canceled) invoices; never ends on its own."""
        last_settle_index = after_settle_index
        gap_replayed_from: int | None = None
        failures = 0
        while True:
            started_s = self._clock()
            progressed = False
            try:
                async with aclosing(self._connection(last_settle_index)) as invoices:
                    async for invoice in invoices:
                        if invoice.state is InvoiceState.SETTLED:
                            if invoice.settle_index <= last_settle_index:
                                continue  # replayed twice across a reconnect
                            if (
                                invoice.settle_index > last_settle_index + 1
                                and gap_replayed_from != last_settle_index
                            ):
                                # Settle indexes are consecutive; a gap means an event was
                                # missed (e.g. one settled between backfill and subscribe).
                                # Replay once from here; a gap that survives it is LND's own.
                                gap_replayed_from = last_settle_index
                                raise _Resume
                            last_settle_index = invoice.settle_index
                        progressed = True
                        yield invoice
                failure: NodeError = NodeUnreachable("LND closed the invoice stream")
            except (_Resume, httpx.ReadTimeout):
                # Idle past the read bound (or a gap): a fresh connection, not a failure. This
                # also replaces connections that died without a FIN.
                failures = 0
                continue
            except LndRpcError as exc:
                if not is_transient(exc.status):
                    raise node_error(exc.status) from exc
                failure = node_error(exc.status)
            except httpx.TransportError as exc:
                failure = transport_error(exc)
            if progressed or self._clock() - started_s >= self._policy.healthy_after_s:
                failures = 0
            failures += 1
            if failures > self._policy.attempts_max:
                raise NodeUnreachable(
                    f"invoice stream: gave up after {failures - 1} reconnects: {failure}"
                ) from failure
            await self._sleep(self._policy.delay_s(failures))

    async def _connection(self, after_settle_index: int) -> AsyncGenerator[Invoice, None]:
        if after_settle_index == 0:
            backlog = await self._settled_so_far()
            for invoice in backlog:
                yield invoice
            if backlog:
                # Subscribing from the last one listed makes LND replay whatever settled
                # between the listing and now.
                after_settle_index = backlog[-1].settle_index
        params = {"settle_index": str(after_settle_index)}
        stream = self._client.stream("GET", "/v1/invoices/subscribe", params=params)
        async with aclosing(stream) as lines:
            async for result in lines:
                invoice = map_invoice(result)
                # Add events (OPEN) are not what the port streams.
                if invoice.state in (InvoiceState.SETTLED, InvoiceState.CANCELED):
                    yield invoice

    async def _settled_so_far(self) -> list[Invoice]:
        """Every settled invoice, in settle order, paging ``GET /v1/invoices`` by add index."""
        settled: list[Invoice] = []
        index_offset = 0
        for _ in range(_BACKFILL_PAGES_MAX):
            page = await self._client.get(
                "/v1/invoices",
                params={
                    "index_offset": str(index_offset),
                    "num_max_invoices": str(_BACKFILL_PAGE_SIZE),
                },
            )
            invoices = as_list(page, "invoices")
            settled.extend(
                invoice
                for invoice in map(map_invoice, invoices)
                if invoice.state is InvoiceState.SETTLED
            )
            if len(invoices) < _BACKFILL_PAGE_SIZE:
                return sorted(settled, key=lambda invoice: invoice.settle_index)
            index_offset = as_int(page, "last_index_offset")
        raise NodeError(f"LND lists more than {_BACKFILL_PAGES_MAX} pages of invoices")
