"""Cold addresses and sweeps in SQL.

An address is free until it is handed out (``purpose`` set, once, by a conditional update under
the ``treasury_cold`` lock); it is never free again. A sweep address is *pending* from then
until its sweep is recorded (``used_at_ms``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lngate.domain.errors import InvariantBroken
from lngate.domain.treasury import ColdPurpose
from lngate.store.db import Row, Tx
from lngate.store.withdrawals import take_lock

COLD_LOCK = "treasury_cold"

_COLUMNS = (
    "id, address, network, source, source_index, purpose, allocated_at_ms, claim_token, "
    "claimed_at_ms, txid, amount_sat, channel_point, used_at_ms, close_txid, close_amount_sat, "
    "funding_fee_sat"
)


@dataclass(frozen=True, slots=True)
class ColdAddress:
    id: int
    address: str
    network: str
    source: str
    source_index: int
    purpose: ColdPurpose | None
    allocated_at_ms: int | None
    claim_token: str | None
    claimed_at_ms: int | None
    txid: str | None
    amount_sat: int | None
    channel_point: str | None
    used_at_ms: int | None
    close_txid: str | None = None  # the cooperative close that paid it (channel_close only)
    close_amount_sat: int | None = None
    funding_fee_sat: int | None = None  # the channel's funding fee, once booked

    def __post_init__(self) -> None:
        assert (self.purpose is None) == (self.allocated_at_ms is None)


@dataclass(frozen=True, slots=True)
class NewColdAddress:
    address: str
    network: str
    source: str
    source_index: int


@dataclass(frozen=True, slots=True)
class ColdCounts:
    free: int
    pending: int  # handed out, not yet used (a sweep in progress, or a failed channel open)
    used: int


@dataclass(frozen=True, slots=True)
class CloseTotals:
    count: int  # cooperative closes booked to cold
    amount_sat: int
    funding_fees_sat: int  # funding fees booked for channels opened to cold


@dataclass(frozen=True, slots=True)
class SweepTotals:
    count: int
    amount_sat: int
    fee_sat: int


def _cold(row: Row) -> ColdAddress:
    return ColdAddress(
        id=int(row[0]),
        address=str(row[1]),
        network=str(row[2]),
        source=str(row[3]),
        source_index=int(row[4]),
        purpose=ColdPurpose(row[5]) if row[5] is not None else None,
        allocated_at_ms=None if row[6] is None else int(row[6]),
        claim_token=row[7],
        claimed_at_ms=None if row[8] is None else int(row[8]),
        txid=row[9],
        amount_sat=None if row[10] is None else int(row[10]),
        channel_point=row[11],
        used_at_ms=None if row[12] is None else int(row[12]),
        close_txid=row[13],
        close_amount_sat=None if row[14] is None else int(row[14]),
        funding_fee_sat=None if row[15] is None else int(row[15]),
    )


def insert_new(tx: Tx, rows: Sequence[NewColdAddress], now_ms: int) -> int:
    """Insert the addresses not stored yet; returns how many were new. Known ones are left
    exactly as they are (a re-import never frees a used address)."""
    inserted = 0
    for row in rows:
        if tx.scalar("SELECT 1 FROM cold_addresses WHERE address = :a", {"a": row.address}):
            continue
        tx.execute(
            "INSERT INTO cold_addresses (address, network, source, source_index, imported_at_ms)"
            " VALUES (:a, :n, :s, :i, :t)",
            {
                "a": row.address,
                "n": row.network,
                "s": row.source,
                "i": row.source_index,
                "t": now_ms,
            },
        )
        inserted += 1
    return inserted


def by_address(tx: Tx, address: str) -> ColdAddress | None:
    row = tx.one(f"SELECT {_COLUMNS} FROM cold_addresses WHERE address = :a", {"a": address})
    return None if row is None else _cold(row)


def pending_sweep(tx: Tx) -> ColdAddress | None:
    """The sweep address handed out and not yet recorded as used (at most one exists)."""
    row = tx.one(
        f"SELECT {_COLUMNS} FROM cold_addresses WHERE purpose = :p AND used_at_ms IS NULL "
        "ORDER BY id LIMIT 1",
        {"p": ColdPurpose.SWEEP.value},
    )
    return None if row is None else _cold(row)


def allocate(
    tx: Tx, purpose: ColdPurpose, now_ms: int, claim_token: str | None = None
) -> ColdAddress | None:
    """Hand out the oldest free address (None when none is left). Call under ``lock``."""
    row = tx.one(
        "SELECT id FROM cold_addresses WHERE purpose IS NULL ORDER BY id LIMIT 1",
    )
    if row is None:
        return None
    taken = tx.execute(
        "UPDATE cold_addresses SET purpose = :p, allocated_at_ms = :t, claim_token = :c, "
        "claimed_at_ms = :ct WHERE id = :id AND purpose IS NULL",
        {
            "p": purpose.value,
            "t": now_ms,
            "c": claim_token,
            "ct": now_ms if claim_token else None,
            "id": int(row[0]),
        },
    )
    if taken != 1:
        raise InvariantBroken("a free cold address was not taken under the lock")
    address = tx.one(f"SELECT {_COLUMNS} FROM cold_addresses WHERE id = :id", {"id": int(row[0])})
    assert address is not None
    return _cold(address)


def lock(tx: Tx) -> None:
    take_lock(tx, COLD_LOCK)


def claim(tx: Tx, address_id: int, claim_token: str, now_ms: int) -> None:
    tx.execute(
        "UPDATE cold_addresses SET claim_token = :c, claimed_at_ms = :t WHERE id = :id",
        {"c": claim_token, "t": now_ms, "id": address_id},
    )


def mark_used(tx: Tx, address: str, txid: str, amount_sat: int, now_ms: int) -> bool:
    """Record the first transaction that used the address; False if one already was."""
    return (
        tx.execute(
            "UPDATE cold_addresses SET txid = :x, amount_sat = :a, used_at_ms = :t "
            "WHERE address = :addr AND used_at_ms IS NULL",
            {"x": txid, "a": amount_sat, "t": now_ms, "addr": address},
        )
        == 1
    )


def mark_channel(tx: Tx, address: str, channel_point: str, amount_sat: int, now_ms: int) -> None:
    txid = channel_point.split(":", 1)[0]
    changed = tx.execute(
        "UPDATE cold_addresses SET channel_point = :cp, txid = :x, amount_sat = :a, "
        "used_at_ms = :t WHERE address = :addr AND purpose = :p AND used_at_ms IS NULL",
        {
            "cp": channel_point,
            "x": txid,
            "a": amount_sat,
            "t": now_ms,
            "addr": address,
            "p": ColdPurpose.CHANNEL_CLOSE.value,
        },
    )
    if changed != 1:
        raise InvariantBroken(f"cold address {address} is not a fresh channel-close address")


def channel_rows(
    tx: Tx, *, unclosed: bool = False, fee_unbooked: bool = False
) -> list[ColdAddress]:
    """Cold addresses bound to a channel lngate opened (optionally: whose close, or whose
    funding fee, is not booked yet)."""
    where = "purpose = :p AND channel_point IS NOT NULL"
    if unclosed:
        where += " AND close_txid IS NULL"
    if fee_unbooked:
        where += " AND funding_fee_sat IS NULL"
    rows = tx.all(
        f"SELECT {_COLUMNS} FROM cold_addresses WHERE {where} ORDER BY id",
        {"p": ColdPurpose.CHANNEL_CLOSE.value},
    )
    return [_cold(r) for r in rows]


def mark_closed(tx: Tx, address: str, close_txid: str, amount_sat: int, now_ms: int) -> bool:
    """Record the cooperative close that paid a channel's cold address; False if one already
    was (the first one stays)."""
    return (
        tx.execute(
            "UPDATE cold_addresses SET close_txid = :x, close_amount_sat = :a, closed_at_ms = :t "
            "WHERE address = :addr AND purpose = :p AND channel_point IS NOT NULL "
            "AND close_txid IS NULL",
            {
                "x": close_txid,
                "a": amount_sat,
                "t": now_ms,
                "addr": address,
                "p": ColdPurpose.CHANNEL_CLOSE.value,
            },
        )
        == 1
    )


def mark_funding_fee(tx: Tx, address: str, fee_sat: int) -> bool:
    """Record the booked funding fee of the channel of ``address``; False if already booked."""
    return (
        tx.execute(
            "UPDATE cold_addresses SET funding_fee_sat = :f "
            "WHERE address = :addr AND channel_point IS NOT NULL AND funding_fee_sat IS NULL",
            {"f": fee_sat, "addr": address},
        )
        == 1
    )


def close_totals(tx: Tx) -> CloseTotals:
    row = tx.one(
        "SELECT COALESCE(SUM(CASE WHEN close_txid IS NOT NULL THEN 1 ELSE 0 END), 0), "
        "COALESCE(SUM(close_amount_sat), 0), COALESCE(SUM(funding_fee_sat), 0) "
        "FROM cold_addresses WHERE channel_point IS NOT NULL"
    )
    assert row is not None
    return CloseTotals(count=int(row[0]), amount_sat=int(row[1]), funding_fees_sat=int(row[2]))


def booked_closes(tx: Tx, *, limit: int) -> list[ColdAddress]:
    """Channel addresses whose cooperative close is booked, the latest first."""
    rows = tx.all(
        f"SELECT {_COLUMNS} FROM cold_addresses WHERE close_txid IS NOT NULL "
        "ORDER BY closed_at_ms DESC, id DESC LIMIT :n",
        {"n": limit},
    )
    return [_cold(r) for r in rows]


def insert_sweep(
    tx: Tx, txid: str, address: str, amount_sat: int, fee_sat: int, now_ms: int
) -> bool:
    """Record a sweep transaction once; False if its txid is already recorded."""
    if tx.scalar("SELECT 1 FROM sweeps WHERE txid = :x", {"x": txid}):
        return False
    tx.execute(
        "INSERT INTO sweeps (txid, address, amount_sat, fee_sat, created_at_ms) "
        "VALUES (:x, :a, :amt, :f, :t)",
        {"x": txid, "a": address, "amt": amount_sat, "f": fee_sat, "t": now_ms},
    )
    return True


def sweep_recorded(tx: Tx, txid: str) -> bool:
    return bool(tx.scalar("SELECT 1 FROM sweeps WHERE txid = :x", {"x": txid}))


def counts(tx: Tx) -> ColdCounts:
    row = tx.one(
        "SELECT COALESCE(SUM(CASE WHEN purpose IS NULL THEN 1 ELSE 0 END), 0), "
        "COALESCE(SUM(CASE WHEN purpose IS NOT NULL AND used_at_ms IS NULL THEN 1 ELSE 0 END), 0),"
        " COALESCE(SUM(CASE WHEN used_at_ms IS NOT NULL THEN 1 ELSE 0 END), 0) "
        "FROM cold_addresses"
    )
    assert row is not None
    return ColdCounts(free=int(row[0]), pending=int(row[1]), used=int(row[2]))


def sweep_totals(tx: Tx) -> SweepTotals:
    row = tx.one(
        "SELECT COUNT(*), COALESCE(SUM(amount_sat), 0), COALESCE(SUM(fee_sat), 0) FROM sweeps"
    )
    assert row is not None
    return SweepTotals(count=int(row[0]), amount_sat=int(row[1]), fee_sat=int(row[2]))


def all_addresses(tx: Tx, *, limit: int) -> list[ColdAddress]:
    return [
        _cold(r)
        for r in tx.all(f"SELECT {_COLUMNS} FROM cold_addresses ORDER BY id LIMIT :n", {"n": limit})
    ]
