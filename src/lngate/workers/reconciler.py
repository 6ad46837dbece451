"""Runs reconciliation every ``reconcile_interval_s``; a failed check halts withdrawals."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from lngate.bootstrap import Core
from lngate.domain.errors import NodeError
from lngate.lightning.node import Node
from lngate.services.solvency import reconcile

log = logging.getLogger(__name__)


class Reconciler:
    def __init__(self, core: Core, node: Node) -> None:
        self._core = core
        self._node = node
        self.last: dict[str, Any] | None = None

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                self.last = await reconcile(self._core, self._node)
            except NodeError as exc:
                log.warning("reconciliation could not reach the node: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._core.config.reconcile_interval_s)
