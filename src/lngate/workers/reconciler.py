"""Runs reconciliation every ``interval_s``; a failed check halts withdrawals."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from lngate.domain.errors import NodeError
from lngate.services.solvency import Reconciliation, Solvency

log = logging.getLogger(__name__)


class Reconciler:
    """``solvency`` over the node credential that can read the wallet (the spending one)."""

    def __init__(self, solvency: Solvency, *, interval_s: float) -> None:
        self._solvency = solvency
        self._interval_s = interval_s
        self.last: Reconciliation | None = None

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                self.last = await self._solvency.reconcile()
            except NodeError as exc:
                log.warning("reconciliation could not reach the node: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._interval_s)
