"""Treasury commands: ``lngate cold ...``, ``lngate treasury ...``, ``lngate channels ...``.

Mounted by ``lngate.cli``; the global ``--data-dir``/``--config`` reach these commands through the
environment, as for every other command (``lngate.cli_support.config_from_env``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from lngate.bootstrap import NodeRole, UseCases
from lngate.cli_support import config_from_env, fail, operator, print_json
from lngate.domain.errors import LngateError
from lngate.lightning.node import Node
from lngate.workers.treasury import TreasuryWorker

T = TypeVar("T")

cold_app = typer.Typer(help="Cold storage: watch-only addresses, no key.", no_args_is_help=True)
treasury_app = typer.Typer(help="The hot float: status and sweeps to cold.", no_args_is_help=True)
channels_app = typer.Typer(help="Channels, opened with a cold close address.", no_args_is_help=True)


@dataclass(frozen=True, slots=True)
class _Session:
    """What one command works with: the use cases over a node, and the treasury worker (for
    the commands that run one step of it now)."""

    cases: UseCases
    worker: TreasuryWorker


def _run(action: Callable[[_Session], Awaitable[T]], *, role: NodeRole) -> T:
    """Open the core (with its writer) and a node, run ``action``, close both; a refusal is
    printed as ``{"error": ...}`` with exit code 2."""
    from lngate.bootstrap import open_core, open_node, use_cases

    core = open_core(config_from_env())
    core.start_writer()

    async def main() -> T:
        node: Node = open_node(core.config, role)
        try:
            cases = use_cases(core, node)
            worker = TreasuryWorker(
                cases.cold_storage, cases.onchain_books, node, core.config.treasury
            )
            return await action(_Session(cases, worker))
        finally:
            await node.close()

    try:
        return asyncio.run(main())
    except LngateError as exc:
        fail(exc)
    finally:
        core.close()


@cold_app.command("import")
def cold_import(
    file: Annotated[Path, typer.Argument(help="addresses one a line, or one xpub/descriptor")],
    count: Annotated[int, typer.Option(help="addresses to derive from an xpub/descriptor")] = 100,
) -> None:
    """Import cold addresses, checked for the node's network; one bad line imports nothing."""
    text = file.read_text(encoding="utf-8")

    async def action(s: _Session) -> dict[str, Any]:
        cold = s.cases.cold_storage
        result = await cold.import_addresses(text, count=count, source_name=file.name)
        return result.as_json()

    print_json(_run(action, role=NodeRole.OPERATOR_TOOL))


@cold_app.command("list")
def cold_list(
    limit: Annotated[int, typer.Option(help="at most this many")] = 1000,
) -> None:
    """The cold addresses, in hand-out order, with what used them."""

    async def action(s: _Session) -> list[dict[str, Any]]:
        return [a.as_json() for a in await s.cases.cold_storage.addresses(limit=limit)]

    print_json(_run(action, role=NodeRole.OPERATOR_TOOL))


@treasury_app.command("status")
def treasury_status() -> None:
    """On-chain and channel balances, cold totals, the cap and what would be swept now."""

    async def action(s: _Session) -> dict[str, Any]:
        return (await s.cases.treasury_status.report()).as_json()

    # Wallet balances need onchain:read, which the invoice-only credential lacks.
    print_json(_run(action, role=NodeRole.TREASURY))


@treasury_app.command("sweep")
def treasury_sweep() -> None:
    """Run one sweep now (what the treasury worker does every interval)."""

    async def action(s: _Session) -> dict[str, Any]:
        result = await s.worker.sweep_once()
        if result is None:
            return {"swept": False}
        return {
            "swept": True,
            "txid": result.txid,
            "address": result.address,
            "amount_sat": result.amount_sat,
            "fee_sat": result.fee_sat,
            "recovered": result.recovered,
        }

    print_json(_run(action, role=NodeRole.TREASURY))


@treasury_app.command("book-closes")
def treasury_book_closes() -> None:
    """Book cooperative channel closes to cold and channel funding fees now (what the treasury
    worker does every interval); prints the closes booked."""

    async def action(s: _Session) -> list[dict[str, Any]]:
        return [c.as_json() for c in await s.worker.book_once()]

    print_json(_run(action, role=NodeRole.TREASURY))


@channels_app.command("open")
def channels_open(
    peer: Annotated[str, typer.Argument(help="pubkey, or pubkey@host:port, or a simnet name")],
    amount_sat: int,
    push_sat: Annotated[int, typer.Option(help="give the peer this much at open")] = 0,
    reason: Annotated[str, typer.Option(help="why; kept in the audit log")] = "cli",
) -> None:
    """Open a channel whose cooperative close can only pay a fresh cold address (audited)."""

    async def action(s: _Session) -> dict[str, Any]:
        opened = await s.cases.channels.open_to_cold(
            peer, amount_sat, push_sat=push_sat, actor=operator(), reason=reason
        )
        return opened.as_json()

    print_json(_run(action, role=NodeRole.TREASURY))


@channels_app.command("list")
def channels_list() -> None:
    """Channels with capacity, local and remote balance, and close address."""

    async def action(s: _Session) -> list[dict[str, Any]]:
        return [c.as_json() for c in await s.cases.channels.list()]

    print_json(_run(action, role=NodeRole.OPERATOR_TOOL))
