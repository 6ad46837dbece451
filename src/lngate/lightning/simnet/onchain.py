"""The simulated chain and wallets: addresses, transactions, channel opens, balances."""

from __future__ import annotations

import json
import sqlite3

from lngate.lightning.errors import InsufficientBalance, InvalidNodeRequest
from lngate.lightning.node import Balances, Channel, ClosedChannel, CloseType, OnchainTx
from lngate.lightning.simnet import keys
from lngate.lightning.simnet.store import block_height, mine_block

TX_VSIZE_VBYTES = 141  # a 1-input, 2-output P2WPKH transaction
FUNDING_TX_VSIZE_VBYTES = 154
DUST_LIMIT_SAT = 546
MIN_CHANNEL_SAT = 20_000  # LND's default minimum channel size
MAX_SAT_PER_VBYTE = 10_000
DEFAULT_FEE_BASE_MSAT = 1000
DEFAULT_FEE_PPM = 1


def new_address(conn: sqlite3.Connection, node: str) -> str:
    secret, index = conn.execute(
        "SELECT secret, next_address_index FROM nodes WHERE name = ?", (node,)
    ).fetchone()
    address = keys.derive_address(bytes(secret), int(index))
    conn.execute(
        "UPDATE nodes SET next_address_index = next_address_index + 1 WHERE name = ?", (node,)
    )
    conn.execute(
        "INSERT INTO addresses (address, node, idx) VALUES (?, ?, ?)", (address, node, index)
    )
    return address


def _record_tx(
    conn: sqlite3.Connection,
    txid: str,
    node: str,
    amount_sat: int,
    fee_sat: int,
    height: int,
    addresses: tuple[str, ...],
) -> None:
    conn.execute(
        "INSERT INTO onchain_txs (txid, node, amount_sat, fee_sat, block_height, addresses)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (txid, node, amount_sat, fee_sat, height, json.dumps(list(addresses))),
    )


def fund(conn: sqlite3.Connection, node: str, amount_sat: int) -> str:
    """A coinbase-like deposit to the node's wallet (tests and the CLI)."""
    if amount_sat <= 0:
        raise InvalidNodeRequest("amount_sat must be positive")
    address = new_address(conn, node)
    txid = keys.new_txid()
    _record_tx(conn, txid, node, amount_sat, 0, mine_block(conn), (address,))
    conn.execute(
        "UPDATE nodes SET onchain_sat = onchain_sat + ? WHERE name = ?", (amount_sat, node)
    )
    return txid


def _debit(conn: sqlite3.Connection, node: str, total_sat: int) -> None:
    onchain = int(
        conn.execute("SELECT onchain_sat FROM nodes WHERE name = ?", (node,)).fetchone()[0]
    )
    if onchain < total_sat:
        raise InsufficientBalance(f"wallet has {onchain} sat, needs {total_sat} sat")
    conn.execute("UPDATE nodes SET onchain_sat = onchain_sat - ? WHERE name = ?", (total_sat, node))


def send_onchain(
    conn: sqlite3.Connection, node: str, address: str, amount_sat: int, sat_per_vbyte: int
) -> str:
    address = keys.check_regtest_address(address)
    if amount_sat < DUST_LIMIT_SAT:
        raise InvalidNodeRequest(f"amount below the dust limit ({DUST_LIMIT_SAT} sat)")
    if not 1 <= sat_per_vbyte <= MAX_SAT_PER_VBYTE:
        raise InvalidNodeRequest("sat_per_vbyte out of range")
    fee_sat = TX_VSIZE_VBYTES * sat_per_vbyte
    _debit(conn, node, amount_sat + fee_sat)
    txid = keys.new_txid()
    height = mine_block(conn)
    owner = conn.execute("SELECT node FROM addresses WHERE address = ?", (address,)).fetchone()
    if owner is not None:  # a simnet wallet's own address: it receives the coins
        conn.execute(
            "UPDATE nodes SET onchain_sat = onchain_sat + ? WHERE name = ?", (amount_sat, owner[0])
        )
    if owner is not None and owner[0] == node:  # to itself: the wallet only pays the fee
        _record_tx(conn, txid, node, -fee_sat, fee_sat, height, (address,))
        return txid
    _record_tx(conn, txid, node, -(amount_sat + fee_sat), fee_sat, height, (address,))
    if owner is not None:
        _record_tx(conn, txid, str(owner[0]), amount_sat, 0, height, (address,))
    return txid


def list_transactions(conn: sqlite3.Connection, node: str) -> list[OnchainTx]:
    tip = block_height(conn)
    rows = conn.execute(
        "SELECT txid, amount_sat, fee_sat, block_height, addresses FROM onchain_txs"
        " WHERE node = ? ORDER BY id",
        (node,),
    ).fetchall()
    return [
        OnchainTx(
            txid=txid,
            amount_sat=amount_sat,
            fee_sat=fee_sat,
            confirmations=tip - height + 1,
            addresses=tuple(json.loads(addresses)),
        )
        for txid, amount_sat, fee_sat, height, addresses in rows
    ]


def open_channel(
    conn: sqlite3.Connection,
    node: str,
    peer: str,
    amount_sat: int,
    *,
    push_sat: int = 0,
    close_address: str | None = None,
    fee_base_msat: int = DEFAULT_FEE_BASE_MSAT,
    fee_ppm: int = DEFAULT_FEE_PPM,
) -> str:
    """Fund a channel from the node's wallet to ``peer`` (a node name or pubkey); the channel is
    usable at once (simnet confirms in one block). Returns the channel point ``txid:0``."""
    peer_row = conn.execute(
        "SELECT name FROM nodes WHERE name = ? OR pubkey = ?", (peer, peer)
    ).fetchone()
    if peer_row is None or peer_row[0] == node:
        raise InvalidNodeRequest(f"not connected to peer {peer[:66]!r}")
    if amount_sat < MIN_CHANNEL_SAT:
        raise InvalidNodeRequest(f"channel below the minimum of {MIN_CHANNEL_SAT} sat")
    if not 0 <= push_sat < amount_sat:
        raise InvalidNodeRequest("push_sat must be in [0, amount_sat)")
    if close_address is not None:
        close_address = keys.check_regtest_address(close_address)
    fee_sat = FUNDING_TX_VSIZE_VBYTES * 1
    _debit(conn, node, amount_sat + fee_sat)
    txid = keys.new_txid()
    _record_tx(conn, txid, node, -(amount_sat + fee_sat), fee_sat, mine_block(conn), ())
    point = f"{txid}:0"
    conn.execute(
        "INSERT INTO channels (channel_point, node_a, node_b, capacity_sat, balance_a_msat,"
        " balance_b_msat, fee_base_a_msat, fee_ppm_a, fee_base_b_msat, fee_ppm_b,"
        " close_address_a) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            point,
            node,
            peer_row[0],
            amount_sat,
            (amount_sat - push_sat) * 1000,
            push_sat * 1000,
            fee_base_msat,
            fee_ppm,
            DEFAULT_FEE_BASE_MSAT,
            DEFAULT_FEE_PPM,
            close_address,
        ),
    )
    return point


def set_channel_policy(
    conn: sqlite3.Connection, point: str, node: str, fee_base_msat: int, fee_ppm: int
) -> None:
    """Set the fees ``node`` charges to forward over the channel."""
    row = conn.execute("SELECT node_a FROM channels WHERE channel_point = ?", (point,)).fetchone()
    side = "a" if row[0] == node else "b"
    conn.execute(
        f"UPDATE channels SET fee_base_{side}_msat = ?, fee_ppm_{side} = ? WHERE channel_point = ?",
        (fee_base_msat, fee_ppm, point),
    )


def list_channels(conn: sqlite3.Connection, node: str) -> list[Channel]:
    rows = conn.execute(
        "SELECT c.channel_point, c.node_a, pa.pubkey, pb.pubkey, c.capacity_sat,"
        " c.balance_a_msat, c.balance_b_msat, c.pending_a_msat, c.pending_b_msat,"
        " c.close_address_a, c.close_address_b FROM channels c"
        " JOIN nodes pa ON pa.name = c.node_a JOIN nodes pb ON pb.name = c.node_b"
        " WHERE c.node_a = ? OR c.node_b = ? ORDER BY c.channel_point",
        (node, node),
    ).fetchall()
    channels = []
    for point, node_a, pub_a, pub_b, cap, bal_a, bal_b, pend_a, pend_b, close_a, close_b in rows:
        mine = node_a == node
        channels.append(
            Channel(
                channel_id=point,
                peer_pubkey=pub_b if mine else pub_a,
                capacity_sat=cap,
                local_balance_msat=bal_a if mine else bal_b,
                remote_balance_msat=bal_b if mine else bal_a,
                active=True,
                close_address=close_a if mine else close_b,
                extra={
                    "pending_out_msat": str(pend_a if mine else pend_b),
                    "pending_in_msat": str(pend_b if mine else pend_a),
                },
            )
        )
    return channels


def close_channel(
    conn: sqlite3.Connection, node: str, point: str, *, cooperative: bool = True
) -> str:
    """Close a channel of ``node`` in one block; returns the closing txid.

    Each side's balance (whole satoshis; below the dust limit it is trimmed, as on chain) is
    paid out by one closing transaction that costs no fee here. Cooperatively, a side with an
    upfront shutdown address is paid to that address (to the simnet wallet that owns it, if
    any, else out of the simulated network: a cold address), the other side to a fresh address
    of its own wallet. A force close pays both sides to their own wallets at once (the CSV
    delay is not simulated; the closer's side is reported time-locked, as lnd does)."""
    row = conn.execute(
        "SELECT node_a, node_b, balance_a_msat, balance_b_msat, pending_a_msat, pending_b_msat,"
        " close_address_a, close_address_b FROM channels WHERE channel_point = ?",
        (point,),
    ).fetchone()
    if row is None or node not in (row[0], row[1]):
        raise InvalidNodeRequest(f"{node} has no open channel {point[:80]!r}")
    node_a, node_b, bal_a, bal_b, pend_a, pend_b, close_a, close_b = row
    if pend_a or pend_b:
        raise InvalidNodeRequest(f"channel {point} has HTLCs in flight")
    txid = keys.new_txid()
    height = mine_block(conn)
    sides = ((node_a, bal_a, close_a), (node_b, bal_b, close_b))
    for side, balance_msat, upfront in sides:
        sat = balance_msat // 1000
        address: str | None = None
        if sat >= DUST_LIMIT_SAT:
            address = upfront if cooperative and upfront else new_address(conn, side)
            _pay_out(conn, txid, address, sat, height)
        else:
            sat = 0
        if cooperative:
            kind, locked = CloseType.COOPERATIVE, 0
        elif side == node:
            kind, locked = CloseType.LOCAL_FORCE, sat
        else:
            kind, locked = CloseType.REMOTE_FORCE, 0
        conn.execute(
            "INSERT INTO closed_channels (node, channel_point, closing_txid, close_type,"
            " settled_sat, time_locked_sat, close_address) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (side, point, txid, kind.value, sat, locked, address),
        )
    conn.execute("DELETE FROM channels WHERE channel_point = ?", (point,))
    return txid


def _pay_out(conn: sqlite3.Connection, txid: str, address: str, sat: int, height: int) -> None:
    """A closing transaction output: the simnet wallet owning ``address`` (if any) gets it."""
    owner = conn.execute("SELECT node FROM addresses WHERE address = ?", (address,)).fetchone()
    if owner is None:
        return  # an address outside the simulated network (a cold wallet's)
    conn.execute("UPDATE nodes SET onchain_sat = onchain_sat + ? WHERE name = ?", (sat, owner[0]))
    _record_tx(conn, txid, str(owner[0]), sat, 0, height, (address,))


def list_closed_channels(conn: sqlite3.Connection, node: str) -> list[ClosedChannel]:
    rows = conn.execute(
        "SELECT channel_point, closing_txid, close_type, settled_sat, time_locked_sat,"
        " close_address FROM closed_channels WHERE node = ? ORDER BY id",
        (node,),
    ).fetchall()
    return [
        ClosedChannel(
            channel_point=point,
            closing_txid=txid,
            close_type=CloseType(kind),
            settled_balance_sat=settled,
            time_locked_balance_sat=locked,
            close_address=address,
        )
        for point, txid, kind, settled, locked, address in rows
    ]


def balances(conn: sqlite3.Connection, node: str) -> Balances:
    onchain = int(
        conn.execute("SELECT onchain_sat FROM nodes WHERE name = ?", (node,)).fetchone()[0]
    )
    channels = list_channels(conn, node)
    return Balances(
        onchain_confirmed_sat=onchain,
        onchain_unconfirmed_sat=0,
        channel_local_msat=sum(c.local_balance_msat for c in channels),
        channel_remote_msat=sum(c.remote_balance_msat for c in channels),
        pending_htlcs_msat=sum(int(c.extra["pending_out_msat"]) for c in channels),
    )
