"""Cold storage: watch-only addresses imported from the operator's cold wallet, handed out once
each (for a sweep or as a channel's close address), and the sweeps booked to them.

Ledger signs (checked against services/deposits.py and services/withdrawal_settlement.py):
``TransferSpec(id, debit, credit, amount)``; node and cold are asset accounts, so a debit
raises them and a credit lowers them (a deposit debits node and credits the user; a payout
credits node). A sweep of ``amount_sat`` with ``fee_sat`` is therefore::

    sweep:<txid>      debit cold                 credit node   amount_sat * 1000
    sweep:<txid>:fee  debit onchain_fee_expense  credit node   fee_sat * 1000

Both ids derive from the txid, so recording a sweep twice moves nothing the second time.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from lngate.domain.errors import InvariantBroken, NoColdAddress
from lngate.domain.ledger import AccountKind, TransferSpec
from lngate.domain.money import MSAT_PER_SAT
from lngate.domain.treasury import ColdPurpose, require_booked
from lngate.lightning.node import Network, Node
from lngate.services.cold_addresses import COUNT_DEFAULT, check_address, parse_cold_import
from lngate.services.ports import Clock, UnitOfWork
from lngate.store import treasury as store
from lngate.store.db import Tx
from lngate.store.ledger import apply_transfer
from lngate.store.treasury import ColdAddress

LIST_MAX = 10_000


@dataclass(frozen=True, slots=True)
class ColdImportResult:
    network: str  # the node's, which every address was checked for
    kind: str  # "addresses" or "descriptor"
    source: str
    imported: int
    already_known: int
    first_address: str
    last_address: str

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class ColdAddressView:
    """One cold address as ``lngate cold list`` shows it."""

    address: str
    source_index: int
    purpose: str | None  # a ColdPurpose value, or None while free
    used: bool
    txid: str | None
    amount_sat: int | None
    channel_point: str | None
    close_txid: str | None
    close_amount_sat: int | None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class SweepClaim(enum.Enum):
    """Why claiming the pending sweep gave a worker no address."""

    NONE = "none"  # no sweep is pending
    BUSY = "busy"  # another live worker is sending one


class ColdStorage:
    """The cold addresses: import, list, hand out, guard, and book the sweeps paid to them.

    ``node`` is asked only for its network, which every address must be valid on;
    ``system_accounts`` are the ledger's (``AccountKind`` value -> account id)."""

    def __init__(
        self, uow: UnitOfWork, clock: Clock, node: Node, system_accounts: Mapping[str, int]
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._node = node
        self._accounts = system_accounts

    async def network(self) -> Network:
        """The node's network, as the node reports it now."""
        return (await self._node.get_info()).network

    async def import_addresses(
        self, text: str, *, count: int = COUNT_DEFAULT, source_name: str = "list"
    ) -> ColdImportResult:
        """Validate every address (or derive ``count`` from an xpub/descriptor) for the node's
        network and store them in one transaction: a bad line stores nothing. Addresses already
        known are left as they are."""
        network = await self.network()
        parsed = parse_cold_import(text, network, count=count, source_name=source_name)
        rows = parsed.addresses
        imported = await self._uow.write(
            lambda tx: store.insert_new(tx, rows, self._clock.now_ms())
        )
        return ColdImportResult(
            network=network.value,
            kind=parsed.kind,
            source=parsed.source,
            imported=imported,
            already_known=len(rows) - imported,
            first_address=rows[0].address,
            last_address=rows[-1].address,
        )

    async def addresses(self, *, limit: int = LIST_MAX) -> list[ColdAddressView]:
        """The cold addresses in hand-out order, with what used them (at most ``LIST_MAX``)."""
        rows = await self._uow.read(lambda tx: store.all_addresses(tx, limit=min(limit, LIST_MAX)))
        return [_view(r) for r in rows]

    async def known(self, addresses: Iterable[str | None]) -> frozenset[str]:
        """Those of ``addresses`` that are cold addresses of ours."""
        wanted = [a for a in addresses if a]
        return await self._uow.read(
            lambda tx: frozenset(a for a in wanted if store.by_address(tx, a) is not None)
        )

    async def allocate(self, purpose: ColdPurpose) -> ColdAddress:
        """Hand out the next free cold address for ``purpose``, once and for good (committed
        before anything is sent to it). Raises NoColdAddress when none is left."""
        return await self._uow.write(allocate_op(purpose, self._clock))

    async def require_cold_address(
        self, address: str, purpose: ColdPurpose, network: Network
    ) -> ColdAddress:
        """``require_cold`` in a read snapshot of its own: the check right before coins move
        (``network``: the node's, see ``network``)."""
        return await self._uow.read(lambda tx: require_cold(tx, address, purpose, network))

    # -- sweeps: the treasury worker's steps, each in a transaction of its own -----------------

    async def claim_pending_sweep(self, token: str, lease_ms: int) -> ColdAddress | SweepClaim:
        """Claim the pending sweep address (handed out, no sweep recorded) for the worker
        holding ``token``: free, already its own, or another's claim older than ``lease_ms``
        (that worker is presumed dead). Otherwise why not: none is pending, or a live worker
        holds it."""
        return await self._uow.write(claim_pending_op(token, lease_ms, self._clock))

    async def allocate_sweep(self, token: str) -> ColdAddress | None:
        """Hand out a fresh cold sweep address, claimed for ``token``, unless a sweep became
        pending meanwhile (None). Raises NoColdAddress when none is left."""
        return await self._uow.write(allocate_sweep_op(token, self._clock))

    async def record_sweep(self, address: str, txid: str, amount_sat: int, fee_sat: int) -> bool:
        """Book a sweep the node lists (see ``record_sweep_op``); returns whether this call
        recorded it."""
        op = record_sweep_op(address, txid, amount_sat, fee_sat, self._accounts, self._clock)
        return await self._uow.write(op)


def _view(row: ColdAddress) -> ColdAddressView:
    return ColdAddressView(
        address=row.address,
        source_index=row.source_index,
        purpose=row.purpose.value if row.purpose else None,
        used=row.used_at_ms is not None,
        txid=row.txid,
        amount_sat=row.amount_sat,
        channel_point=row.channel_point,
        close_txid=row.close_txid,
        close_amount_sat=row.close_amount_sat,
    )


# -- the operations, each one transaction ----------------------------------------------------


def allocate_op(purpose: ColdPurpose, clock: Clock) -> Callable[[Tx], ColdAddress]:
    """Hand out the next free cold address, once and for good."""

    def op(tx: Tx) -> ColdAddress:
        store.lock(tx)
        address = store.allocate(tx, purpose, clock.now_ms())
        if address is None:
            raise NoColdAddress("no free cold address is left: import more (lngate cold import)")
        return address

    return op


def require_cold(tx: Tx, address: str, purpose: ColdPurpose, network: Network) -> ColdAddress:
    """The guard before any coins move to ``address``: it must be one of our cold addresses,
    handed out for ``purpose``, valid for the node's network, and not used yet.

    A violation is a bug, never an operating error: it raises InvariantBroken (an explicit
    check, not an ``assert``, so it holds under -O too).
    """
    row = store.by_address(tx, address)
    ok = (
        row is not None
        and row.purpose is purpose
        and row.used_at_ms is None
        and row.network == network.value
        and check_address(address, network) == address
    )
    if not ok or row is None:
        raise InvariantBroken(f"refusing to send to {address}: not a fresh cold {purpose} address")
    return row


def claim_pending_op(
    token: str, lease_ms: int, clock: Clock
) -> Callable[[Tx], ColdAddress | SweepClaim]:
    """The pending sweep address, claimed for this worker; or why there is none to take."""

    def op(tx: Tx) -> ColdAddress | SweepClaim:
        store.lock(tx)
        pending = store.pending_sweep(tx)
        if pending is None:
            return SweepClaim.NONE
        at_ms = clock.now_ms()  # read under the lock: the lease is judged at the claim
        stale = pending.claimed_at_ms is None or pending.claimed_at_ms <= at_ms - lease_ms
        if pending.claim_token not in (None, token) and not stale:
            return SweepClaim.BUSY
        store.claim(tx, pending.id, token, at_ms)
        return pending

    return op


def allocate_sweep_op(token: str, clock: Clock) -> Callable[[Tx], ColdAddress | None]:
    """A fresh sweep address, claimed for this worker; None if a sweep became pending
    meanwhile (another worker's)."""

    def op(tx: Tx) -> ColdAddress | None:
        store.lock(tx)
        if store.pending_sweep(tx) is not None:
            return None
        address = store.allocate(tx, ColdPurpose.SWEEP, clock.now_ms(), claim_token=token)
        if address is None:
            raise NoColdAddress("no free cold address is left: import more (lngate cold import)")
        return address

    return op


def record_sweep_op(
    address: str,
    txid: str,
    amount_sat: int,
    fee_sat: int,
    accounts: Mapping[str, int],
    clock: Clock,
) -> Callable[[Tx], bool]:
    """Book a sweep found on chain: the sweep row, the address used, and the ledger transfers,
    in one transaction. Idempotent by txid; returns whether this call recorded it."""
    if amount_sat <= 0 or fee_sat < 0:
        raise InvariantBroken(f"sweep {txid}: amount_sat={amount_sat}, fee_sat={fee_sat}")
    node = accounts[AccountKind.NODE.value]
    cold = accounts[AccountKind.COLD.value]
    fee_expense = accounts[AccountKind.ONCHAIN_FEE_EXPENSE.value]

    def op(tx: Tx) -> bool:
        row = store.by_address(tx, address)
        if row is None or row.purpose is not ColdPurpose.SWEEP:
            raise InvariantBroken(f"sweep {txid}: {address} is no cold sweep address")
        at_ms = clock.now_ms()
        recorded = store.insert_sweep(tx, txid, address, amount_sat, fee_sat, at_ms)
        # The address row keeps the first sweep to it; a second one (never expected) still
        # gets its own sweep row and transfers.
        store.mark_used(tx, address, txid, amount_sat, at_ms)
        # node -> cold: debit cold (asset up), credit node (asset down).
        moves = [(f"sweep:{txid}", cold, amount_sat, "sweep")]
        if fee_sat:  # node -> on-chain fee expense: debit the expense, credit node.
            moves.append((f"sweep:{txid}:fee", fee_expense, fee_sat, "onchain_fee"))
        for transfer_id, debit, sat, kind in moves:
            spec = TransferSpec(transfer_id, debit, node, sat * MSAT_PER_SAT, kind=kind, memo=txid)
            require_booked(transfer_id, apply_transfer(tx, spec))
        return recorded

    return op
