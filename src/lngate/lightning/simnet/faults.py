"""Fault injection for simnet, stored in its database so another process (the CLI, a test) can
set a fault that the server's node then suffers.

Scopes: a fault names a ``node`` (it applies to that node's calls, or to payments it sends or
receives, or to the hops it forwards) and/or a ``payment_hash`` (it applies to that payment)."""

from __future__ import annotations

import dataclasses
import enum
import sqlite3
from dataclasses import dataclass
from typing import Any

from lngate.lightning.errors import InsufficientBalance, InvalidNodeRequest
from lngate.lightning.simnet.store import Store


class FaultKind(enum.StrEnum):
    OFFLINE = "offline"  # every call of the node raises NodeUnreachable; nobody routes through it
    SLOW = "slow"  # every call of the node is delayed by delay_ms
    NO_ROUTE = "no_route"  # payments from/to the node (or of the hash) find no route
    INSUFFICIENT_LIQUIDITY = "insufficient_liquidity"  # ... fail for lack of balance
    STUCK = "stuck"  # payments stay in flight for hold_ms, then succeed or fail
    FEE_DRAIN = "fee_drain"  # the node demands fee_base_msat + fee_ppm to forward


@dataclass(frozen=True, slots=True)
class Fault:
    kind: FaultKind
    node: str | None = None
    payment_hash: bytes | None = None
    hold_ms: int = 0
    succeed: bool = True
    delay_ms: int = 0
    fee_base_msat: int = 0
    fee_ppm: int = 0
    id: int = 0

    def __post_init__(self) -> None:
        assert self.node is not None or self.payment_hash is not None, "a fault needs a scope"
        assert self.payment_hash is None or len(self.payment_hash) == 32
        assert self.hold_ms >= 0 and self.delay_ms >= 0
        assert self.fee_base_msat >= 0 and self.fee_ppm >= 0
        if self.kind in (FaultKind.OFFLINE, FaultKind.SLOW, FaultKind.FEE_DRAIN):
            assert self.node is not None, f"{self.kind} is a per-node fault"

    def applies_to_payment(self, sender: str, payee: str, payment_hash: bytes) -> bool:
        if self.payment_hash is not None and self.payment_hash != payment_hash:
            return False
        return self.node is None or self.node in (sender, payee)


_COLUMNS = "id, kind, node, payment_hash, hold_ms, succeed, delay_ms, fee_base_msat, fee_ppm"


def _row_to_fault(row: tuple[Any, ...]) -> Fault:
    fid, kind, node, payment_hash, hold_ms, succeed, delay_ms, fee_base_msat, fee_ppm = row
    return Fault(
        kind=FaultKind(str(kind)),
        node=None if node is None else str(node),
        payment_hash=None if payment_hash is None else bytes(payment_hash),
        hold_ms=int(hold_ms),
        succeed=bool(succeed),
        delay_ms=int(delay_ms),
        fee_base_msat=int(fee_base_msat),
        fee_ppm=int(fee_ppm),
        id=int(fid),
    )


def active_faults(conn: sqlite3.Connection) -> list[Fault]:
    rows = conn.execute(f"SELECT {_COLUMNS} FROM faults ORDER BY id").fetchall()
    return [_row_to_fault(row) for row in rows]


def node_faults(conn: sqlite3.Connection, node: str) -> list[Fault]:
    rows = conn.execute(f"SELECT {_COLUMNS} FROM faults WHERE node = ? ORDER BY id", (node,))
    return [_row_to_fault(row) for row in rows.fetchall()]


class Faults:
    """The typed fault API: ``network.faults.set(FaultKind.OFFLINE, node="exchange")``."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def set(
        self,
        kind: FaultKind,
        *,
        node: str | None = None,
        payment_hash: bytes | None = None,
        hold_ms: int = 0,
        succeed: bool = True,
        delay_ms: int = 0,
        fee_base_msat: int = 0,
        fee_ppm: int = 0,
    ) -> Fault:
        fault = Fault(
            FaultKind(kind), node, payment_hash, hold_ms, succeed, delay_ms, fee_base_msat, fee_ppm
        )
        with self._store.write() as conn:
            if node is not None and not _node_exists(conn, node):
                raise InvalidNodeRequest(f"unknown simnet node {node!r}")
            cursor = conn.execute(
                "INSERT INTO faults (kind, node, payment_hash, hold_ms, succeed, delay_ms,"
                " fee_base_msat, fee_ppm) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    fault.kind.value,
                    node,
                    payment_hash,
                    hold_ms,
                    int(succeed),
                    delay_ms,
                    fee_base_msat,
                    fee_ppm,
                ),
            )
            assert cursor.lastrowid is not None
        return dataclasses.replace(fault, id=cursor.lastrowid)

    def clear(self, *, node: str | None = None, kind: FaultKind | None = None) -> int:
        """Remove faults (all of them by default); returns how many."""
        query, args = "DELETE FROM faults WHERE 1 = 1", list[str]()
        if node is not None:
            query, args = query + " AND node = ?", [*args, node]
        if kind is not None:
            query, args = query + " AND kind = ?", [*args, FaultKind(kind).value]
        with self._store.write() as conn:
            return conn.execute(query, args).rowcount

    def list(self) -> list[Fault]:
        with self._store.read() as conn:
            return active_faults(conn)

    def lose_funds(self, node: str, *, channel_msat: int = 0, onchain_sat: int = 0) -> None:
        """The node loses funds behind our back: its channel local balance goes to the peers (as a
        breach would) and its on-chain balance shrinks, with no invoice, payment or tx."""
        assert channel_msat >= 0 and onchain_sat >= 0
        with self._store.write() as conn:
            if not _node_exists(conn, node):
                raise InvalidNodeRequest(f"unknown simnet node {node!r}")
            onchain = conn.execute("SELECT onchain_sat FROM nodes WHERE name = ?", (node,))
            if int(onchain.fetchone()[0]) < onchain_sat:
                raise InsufficientBalance("node has less on-chain than the loss")
            conn.execute(
                "UPDATE nodes SET onchain_sat = onchain_sat - ? WHERE name = ?", (onchain_sat, node)
            )
            remaining = channel_msat
            channels = conn.execute(
                "SELECT channel_point, node_a, balance_a_msat, balance_b_msat FROM channels"
                " WHERE node_a = ? OR node_b = ? ORDER BY channel_point",
                (node, node),
            ).fetchall()
            for point, node_a, balance_a, balance_b in channels:
                if remaining == 0:
                    break
                is_a = node_a == node
                take = min(remaining, int(balance_a if is_a else balance_b))
                sign = -1 if is_a else 1
                conn.execute(
                    "UPDATE channels SET balance_a_msat = balance_a_msat + ?,"
                    " balance_b_msat = balance_b_msat - ? WHERE channel_point = ?",
                    (sign * take, sign * take, point),
                )
                remaining -= take
            if remaining:
                raise InsufficientBalance("node has less in channels than the loss")


def _node_exists(conn: sqlite3.Connection, node: str) -> bool:
    return conn.execute("SELECT 1 FROM nodes WHERE name = ?", (node,)).fetchone() is not None
