"""Treasury use cases: import cold addresses, record sweeps, open channels whose cooperative
close can only pay cold storage, and report the hot float.

Ledger signs (checked against services/deposits.py and services/withdrawal_settlement.py):
``TransferSpec(id, debit, credit, amount)``; node and cold are asset accounts, so a debit
raises them and a credit lowers them (a deposit debits node and credits the user; a payout
credits node). A sweep of ``amount_sat`` with ``fee_sat`` is therefore::

    sweep:<txid>      debit cold                 credit node   amount_sat * 1000
    sweep:<txid>:fee  debit onchain_fee_expense  credit node   fee_sat * 1000

Both ids derive from the txid, so recording a sweep twice moves nothing the second time.

A channel lngate opened has a cold upfront shutdown address, so its cooperative close pays our
side on chain to cold storage, and its funding transaction paid a miner's fee::

    close:<closing txid>         debit cold                 credit node   settled_sat * 1000
    channel_fee:<funding txid>   debit onchain_fee_expense  credit node   fee_sat * 1000
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lngate.bootstrap import Core
from lngate.domain.errors import InvalidAmount, InvariantBroken, NoColdAddress
from lngate.domain.ledger import AccountKind, TransferResult, TransferSpec
from lngate.domain.treasury import ColdPurpose, sweep_amount_sat
from lngate.lightning.node import Channel, ClosedChannel, CloseType, Network, Node, OnchainTx
from lngate.services.cold_addresses import COUNT_DEFAULT, check_address, parse_cold_import
from lngate.store import audit
from lngate.store import treasury as store
from lngate.store.db import Tx
from lngate.store.ledger import apply_transfer, get_account
from lngate.store.treasury import ColdAddress, ColdCounts

log = logging.getLogger(__name__)

MSAT_PER_SAT = 1000
LIST_MAX = 10_000
STATUS_CLOSES_MAX = 100


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class ColdImportResult:
    kind: str  # "addresses" or "descriptor"
    source: str
    imported: int
    already_known: int
    first_address: str
    last_address: str

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "source": self.source,
            "imported": self.imported,
            "already_known": self.already_known,
            "first_address": self.first_address,
            "last_address": self.last_address,
        }


async def import_cold(
    core: Core,
    text: str,
    network: Network,
    *,
    count: int = COUNT_DEFAULT,
    source_name: str = "list",
) -> ColdImportResult:
    """Validate every address (or derive ``count`` from an xpub/descriptor) and store them in
    one transaction: a bad line stores nothing. Addresses already known are left as they are."""
    parsed = parse_cold_import(text, network, count=count, source_name=source_name)
    rows = parsed.addresses

    def op(tx: Tx) -> int:
        return store.insert_new(tx, rows, now_ms())

    imported = await core.write(op)
    return ColdImportResult(
        kind=parsed.kind,
        source=parsed.source,
        imported=imported,
        already_known=len(rows) - imported,
        first_address=rows[0].address,
        last_address=rows[-1].address,
    )


def allocate_op(purpose: ColdPurpose) -> Callable[[Tx], ColdAddress]:
    """Hand out the next free cold address, once and for good."""

    def op(tx: Tx) -> ColdAddress:
        store.lock(tx)
        address = store.allocate(tx, purpose, now_ms())
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


def record_sweep_op(
    address: str, txid: str, amount_sat: int, fee_sat: int, accounts: dict[str, int]
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
        at_ms = now_ms()
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
            _require_booked(transfer_id, apply_transfer(tx, spec))
        return recorded

    return op


def _require_booked(transfer_id: str, result: TransferResult) -> None:
    """A treasury transfer moves money between system accounts under an id derived from a
    txid: the ledger books it (OK) or has it already (EXISTS). Anything else is a bug; raising
    undoes the whole operation (its savepoint), so a sweep, close or fee row is never recorded
    without its transfer."""
    if result not in (TransferResult.OK, TransferResult.EXISTS):
        raise InvariantBroken(f"treasury transfer {transfer_id} refused by the ledger: {result}")


# -- sweeps: the treasury worker's use cases, each in a transaction of its own -------------------


class SweepClaim(enum.Enum):
    """Why claiming the pending sweep gave a worker no address."""

    NONE = "none"  # no sweep is pending
    BUSY = "busy"  # another live worker is sending one


def claim_pending_op(token: str, lease_ms: int) -> Callable[[Tx], ColdAddress | SweepClaim]:
    """The pending sweep address, claimed for this worker; or why there is none to take."""

    def op(tx: Tx) -> ColdAddress | SweepClaim:
        store.lock(tx)
        pending = store.pending_sweep(tx)
        if pending is None:
            return SweepClaim.NONE
        at_ms = now_ms()
        stale = pending.claimed_at_ms is None or pending.claimed_at_ms <= at_ms - lease_ms
        if pending.claim_token not in (None, token) and not stale:
            return SweepClaim.BUSY
        store.claim(tx, pending.id, token, at_ms)
        return pending

    return op


def allocate_sweep_op(token: str) -> Callable[[Tx], ColdAddress | None]:
    """A fresh sweep address, claimed for this worker; None if a sweep became pending
    meanwhile (another worker's)."""

    def op(tx: Tx) -> ColdAddress | None:
        store.lock(tx)
        if store.pending_sweep(tx) is not None:
            return None
        address = store.allocate(tx, ColdPurpose.SWEEP, now_ms(), claim_token=token)
        if address is None:
            raise NoColdAddress("no free cold address is left: import more (lngate cold import)")
        return address

    return op


async def claim_pending_sweep(core: Core, token: str, lease_ms: int) -> ColdAddress | SweepClaim:
    """Claim the pending sweep address (handed out, no sweep recorded) for the worker holding
    ``token``: free, already its own, or another's claim older than ``lease_ms`` (that worker
    is presumed dead). Otherwise why not: none is pending, or a live worker holds it."""
    return await core.write(claim_pending_op(token, lease_ms))


async def allocate_sweep(core: Core, token: str) -> ColdAddress | None:
    """Hand out a fresh cold sweep address, claimed for ``token``, unless a sweep became
    pending meanwhile (None). Raises NoColdAddress when none is left."""
    return await core.write(allocate_sweep_op(token))


async def require_cold_address(
    core: Core, address: str, purpose: ColdPurpose, network: Network
) -> ColdAddress:
    """``require_cold`` in a read snapshot of its own: the check right before coins move."""
    return await core.read(lambda tx: require_cold(tx, address, purpose, network))


async def record_sweep(core: Core, address: str, txid: str, amount_sat: int, fee_sat: int) -> bool:
    """Book a sweep the node lists (see ``record_sweep_op``); returns whether this call
    recorded it."""
    op = record_sweep_op(address, txid, amount_sat, fee_sat, core.system_accounts)
    return await core.write(op)


# -- channels -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChannelOpened:
    channel_point: str
    peer: str
    amount_sat: int
    push_sat: int
    close_address: str

    def as_json(self) -> dict[str, Any]:
        return {
            "channel_point": self.channel_point,
            "peer": self.peer,
            "amount_sat": self.amount_sat,
            "push_sat": self.push_sat,
            "close_address": self.close_address,
        }


async def open_channel_to_cold(
    core: Core,
    node: Node,
    peer: str,
    amount_sat: int,
    *,
    push_sat: int = 0,
    actor: str,
    reason: str,
) -> ChannelOpened:
    """Open a channel whose upfront shutdown address (BOLT 2 ``option_upfront_shutdown_script``)
    is a fresh cold address, so a cooperative close can only pay cold storage; audited as
    ``channel.open`` by ``actor``, whichever entry point (admin API, CLI) asks.

    The address is handed out (committed) before the node is asked; if the open fails it stays
    handed out and unused: a cold address is never handed out twice."""
    if amount_sat <= 0 or not 0 <= push_sat < amount_sat:
        raise InvalidAmount("need amount_sat > 0 and 0 <= push_sat < amount_sat")
    network = (await node.get_info()).network
    cold = await core.write(allocate_op(ColdPurpose.CHANNEL_CLOSE))
    await require_cold_address(core, cold.address, ColdPurpose.CHANNEL_CLOSE, network)
    point = await node.open_channel(peer, amount_sat, push_sat=push_sat, close_address=cold.address)
    opened = ChannelOpened(point, peer, amount_sat, push_sat, cold.address)
    await core.write(record_channel_op(opened, now_ms(), actor=actor, reason=reason))
    return opened


def record_channel_op(
    opened: ChannelOpened, at_ms: int, *, actor: str, reason: str
) -> Callable[[Tx], None]:
    """Bind the cold address to the channel the node opened, and audit the open.

    Both in one transaction, written only once the node has accepted the open (it returned a
    channel point): an open the node refused raised before this and leaves no audit record of
    a channel that does not exist, and an open it accepted is never bound without its record.
    (A crash between the node's answer and this write loses both, as it lost the binding
    before: the address stays handed out and unused, and the node still lists the channel.)"""

    def op(tx: Tx) -> None:
        store.mark_channel(tx, opened.close_address, opened.channel_point, opened.amount_sat, at_ms)
        audit.append(
            tx,
            actor=actor,
            action="channel.open",
            subject=f"peer:{opened.peer}",
            reason=reason,
            details=opened.as_json(),
        )

    return op


async def list_channels(core: Core, node: Node) -> list[dict[str, Any]]:
    channels = await node.list_channels()
    cold = await core.read(lambda tx: _cold_set(tx, [c.close_address for c in channels]))
    return [channel_json(c, c.close_address in cold) for c in channels]


def _cold_set(tx: Tx, addresses: list[str | None]) -> set[str]:
    return {a for a in addresses if a and store.by_address(tx, a) is not None}


def channel_json(channel: Channel, close_address_is_cold: bool) -> dict[str, Any]:
    return {
        "channel_point": channel.channel_id,
        "peer_pubkey": channel.peer_pubkey,
        "active": channel.active,
        "capacity_sat": channel.capacity_sat,
        "local_balance_msat": channel.local_balance_msat,
        "remote_balance_msat": channel.remote_balance_msat,
        "close_address": channel.close_address,
        "close_address_is_cold": close_address_is_cold,
    }


@dataclass(frozen=True, slots=True)
class BookedClose:
    channel_point: str
    closing_txid: str
    address: str  # the cold address the close paid
    amount_sat: int  # our side, now in cold storage

    def as_json(self) -> dict[str, Any]:
        return {
            "channel_point": self.channel_point,
            "closing_txid": self.closing_txid,
            "address": self.address,
            "amount_sat": self.amount_sat,
        }


@dataclass(frozen=True, slots=True)
class BookedFundingFee:
    channel_point: str
    funding_txid: str
    fee_sat: int


def record_close_op(
    address: str, closed: ClosedChannel, accounts: dict[str, int]
) -> Callable[[Tx], bool]:
    """Book a cooperative close that paid ``address`` (a channel's cold close address): the
    address marked with the closing txid and amount, and node -> cold, in one transaction.
    Idempotent: the mark is conditional and the transfer id is the closing txid; returns
    whether this call booked it."""
    amount_sat = closed.settled_balance_sat
    if closed.close_type is not CloseType.COOPERATIVE or amount_sat < 0:
        raise InvariantBroken(f"not a cooperative close to book to cold: {closed}")
    txid = closed.closing_txid

    def op(tx: Tx) -> bool:
        row = store.by_address(tx, address)
        if row is None or row.purpose is not ColdPurpose.CHANNEL_CLOSE:
            raise InvariantBroken(f"close {txid}: {address} is no cold channel-close address")
        if row.channel_point != closed.channel_point:
            raise InvariantBroken(
                f"close {txid}: {address} belongs to channel {row.channel_point}, "
                f"not {closed.channel_point}"
            )
        if not store.mark_closed(tx, address, txid, amount_sat, now_ms()):
            return False  # booked before (by this worker or another)
        if amount_sat:  # nothing of ours above the dust limit: no output, nothing to book
            # node -> cold: debit cold (asset up), credit node (asset down), as a sweep.
            spec = TransferSpec(
                f"close:{txid}",
                accounts[AccountKind.COLD.value],
                accounts[AccountKind.NODE.value],
                amount_sat * MSAT_PER_SAT,
                kind="channel_close",
                memo=closed.channel_point,
            )
            _require_booked(spec.id, apply_transfer(tx, spec))
        return True

    return op


async def book_closed_channels(core: Core, node: Node) -> list[BookedClose]:
    """Book every cooperative close, final on chain, of a channel lngate opened to a cold close
    address: our settled balance went to that cold address. Returns what this call booked.

    Only cooperative closes are booked. A force close (ours or the peer's, or a breach) pays our
    side to the node's own wallet, not to the upfront shutdown address: the node's on-chain
    balance counts it there, so nothing moved to cold storage. A canceled or abandoned funding
    never left the wallet either."""
    unclosed = await core.read(lambda tx: store.channel_rows(tx, unclosed=True))
    if not unclosed:
        return []
    by_point = {row.channel_point: row for row in unclosed}
    booked = []
    for closed in await node.list_closed_channels():
        row = by_point.get(closed.channel_point)
        if row is None or closed.close_type is not CloseType.COOPERATIVE:
            continue  # not ours to book (see above), or booked already
        if closed.close_address is not None and closed.close_address != row.address:
            # The upfront shutdown script makes this impossible; never book what cold did
            # not receive.
            log.error(
                "channel %s closed to %s, not to its cold address %s: not booked",
                closed.channel_point,
                closed.close_address,
                row.address,
            )
            continue
        op = record_close_op(row.address, closed, core.system_accounts)
        if await core.write(op):
            log.info(
                "booked cooperative close %s of %s: %d sat to cold %s",
                closed.closing_txid,
                closed.channel_point,
                closed.settled_balance_sat,
                row.address,
            )
            booked.append(
                BookedClose(
                    closed.channel_point,
                    closed.closing_txid,
                    row.address,
                    closed.settled_balance_sat,
                )
            )
    return booked


def record_funding_fee_op(
    address: str, funding_txid: str, fee_sat: int, accounts: dict[str, int]
) -> Callable[[Tx], bool]:
    """Book a channel's funding fee once: the address row marked, node -> fee expense."""
    if fee_sat < 0:
        raise InvariantBroken(f"funding {funding_txid}: fee_sat={fee_sat}")

    def op(tx: Tx) -> bool:
        if not store.mark_funding_fee(tx, address, fee_sat):
            return False
        if fee_sat:
            # node -> on-chain fee expense: debit the expense, credit node.
            spec = TransferSpec(
                f"channel_fee:{funding_txid}",
                accounts[AccountKind.ONCHAIN_FEE_EXPENSE.value],
                accounts[AccountKind.NODE.value],
                fee_sat * MSAT_PER_SAT,
                kind="onchain_fee",
                memo=funding_txid,
            )
            _require_booked(spec.id, apply_transfer(tx, spec))
        return True

    return op


def funding_fee_sat(funding: OnchainTx, capacity_sat: int) -> int | None:
    """The miner's fee of a channel funding transaction, when the wallet's record of it proves
    it: confirmed, and the wallet's change is exactly minus (capacity + fee). lnd reports
    ``total_fees`` only when every input is the wallet's (btcwallet ``makeTxSummary``), and then
    ``amount`` is the wallet's change; anything else (an external input, a fee not reported)
    fails the check and nothing is booked."""
    if funding.confirmations < 1 or funding.fee_sat < 0:
        return None
    if -funding.amount_sat != capacity_sat + funding.fee_sat:
        return None
    return funding.fee_sat


async def book_funding_fees(core: Core, node: Node) -> list[BookedFundingFee]:
    """Book the funding fee of every channel lngate opened (to a cold close address) whose
    funding transaction the wallet lists, confirmed, with a fee it can prove."""
    rows = await core.read(lambda tx: store.channel_rows(tx, fee_unbooked=True))
    if not rows:
        return []
    txs = {t.txid: t for t in await node.list_onchain_transactions()}
    booked = []
    for row in rows:
        assert row.channel_point is not None and row.amount_sat is not None
        funding_txid = row.channel_point.split(":", 1)[0]
        funding = txs.get(funding_txid)
        fee = None if funding is None else funding_fee_sat(funding, row.amount_sat)
        if fee is None:
            continue  # not confirmed or not listed yet, or its fee cannot be proven
        op = record_funding_fee_op(row.address, funding_txid, fee, core.system_accounts)
        if await core.write(op):
            booked.append(BookedFundingFee(row.channel_point, funding_txid, fee))
    return booked


# -- status -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TreasuryStatus:
    onchain_confirmed_sat: int
    onchain_unconfirmed_sat: int
    channel_local_msat: int
    channel_remote_msat: int
    pending_htlcs_msat: int
    cold_ledger_balance_msat: int
    cold_addresses: ColdCounts
    pending_sweep_address: str | None
    sweeps: store.SweepTotals
    closes: store.CloseTotals
    recent_closes: tuple[BookedClose, ...]
    hot_onchain_cap_sat: int
    hot_channel_target_sat: int
    would_sweep_sat: int

    def as_json(self) -> dict[str, Any]:
        return {
            "onchain": {
                "confirmed_sat": self.onchain_confirmed_sat,
                "unconfirmed_sat": self.onchain_unconfirmed_sat,
                "cap_sat": self.hot_onchain_cap_sat,
                "would_sweep_sat": self.would_sweep_sat,
            },
            "channels": {
                "local_msat": self.channel_local_msat,
                "remote_msat": self.channel_remote_msat,
                "pending_htlcs_msat": self.pending_htlcs_msat,
                "target_local_sat": self.hot_channel_target_sat,
            },
            "cold": {
                "ledger_balance_msat": self.cold_ledger_balance_msat,
                "addresses_free": self.cold_addresses.free,
                "addresses_pending": self.cold_addresses.pending,
                "addresses_used": self.cold_addresses.used,
                "pending_sweep_address": self.pending_sweep_address,
                "sweeps": self.sweeps.count,
                "swept_sat": self.sweeps.amount_sat,
                "sweep_fees_sat": self.sweeps.fee_sat,
                "channel_closes": self.closes.count,
                "channel_closes_sat": self.closes.amount_sat,
                "channel_funding_fees_sat": self.closes.funding_fees_sat,
            },
            "channel_closes": [c.as_json() for c in self.recent_closes],
        }


async def treasury_status(core: Core, node: Node) -> TreasuryStatus:
    balances = await node.balances()
    policy = core.config.treasury
    cold_account = core.system_accounts[AccountKind.COLD.value]

    def read(
        tx: Tx,
    ) -> tuple[
        int, ColdCounts, ColdAddress | None, store.SweepTotals, store.CloseTotals, list[ColdAddress]
    ]:
        account = get_account(tx, cold_account)
        assert account is not None
        # An asset: what was debited to it less what was credited.
        balance_msat = account.balance.debits_posted_msat - account.balance.credits_posted_msat
        return (
            balance_msat,
            store.counts(tx),
            store.pending_sweep(tx),
            store.sweep_totals(tx),
            store.close_totals(tx),
            store.booked_closes(tx, limit=STATUS_CLOSES_MAX),
        )

    cold_msat, counts, pending, sweeps, closes, closed_rows = await core.read(read)
    return TreasuryStatus(
        onchain_confirmed_sat=balances.onchain_confirmed_sat,
        onchain_unconfirmed_sat=balances.onchain_unconfirmed_sat,
        channel_local_msat=balances.channel_local_msat,
        channel_remote_msat=balances.channel_remote_msat,
        pending_htlcs_msat=balances.pending_htlcs_msat,
        cold_ledger_balance_msat=cold_msat,
        cold_addresses=counts,
        pending_sweep_address=pending.address if pending else None,
        sweeps=sweeps,
        closes=closes,
        recent_closes=tuple(
            BookedClose(
                r.channel_point or "", r.close_txid or "", r.address, r.close_amount_sat or 0
            )
            for r in closed_rows
        ),
        hot_onchain_cap_sat=policy.hot_onchain_cap_sat,
        hot_channel_target_sat=policy.hot_channel_target_sat,
        would_sweep_sat=sweep_amount_sat(balances.onchain_confirmed_sat, policy),
    )


async def cold_address_list(core: Core, *, limit: int = LIST_MAX) -> list[dict[str, Any]]:
    rows = await core.read(lambda tx: store.all_addresses(tx, limit=min(limit, LIST_MAX)))
    return [
        {
            "address": r.address,
            "source_index": r.source_index,
            "purpose": r.purpose.value if r.purpose else None,
            "used": r.used_at_ms is not None,
            "txid": r.txid,
            "amount_sat": r.amount_sat,
            "channel_point": r.channel_point,
            "close_txid": r.close_txid,
            "close_amount_sat": r.close_amount_sat,
        }
        for r in rows
    ]
