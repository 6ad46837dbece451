"""The treasury's use cases over a test's core and a node of the test's choosing, as
``bootstrap.use_cases`` builds them, so a test can hand each process role its own node."""

from __future__ import annotations

from typing import Any

from lngate.bootstrap import Core, use_cases
from lngate.lightning.node import Node
from lngate.services.channels import Channels
from lngate.services.cold_storage import ColdStorage
from lngate.services.onchain_books import OnchainBooks
from lngate.services.treasury_status import TreasuryStatus
from lngate.workers.treasury import TreasuryWorker


def cold_storage(core: Core, node: Node) -> ColdStorage:
    return use_cases(core, node).cold_storage


def channels(core: Core, node: Node) -> Channels:
    return use_cases(core, node).channels


def books(core: Core, node: Node) -> OnchainBooks:
    return use_cases(core, node).onchain_books


def status(core: Core, node: Node) -> TreasuryStatus:
    return use_cases(core, node).treasury_status


def worker(core: Core, node: Node, **kwargs: Any) -> TreasuryWorker:
    """The treasury worker of a process whose spending node is ``node``."""
    cases = use_cases(core, node)
    return TreasuryWorker(
        cases.cold_storage, cases.onchain_books, node, core.config.treasury, **kwargs
    )
