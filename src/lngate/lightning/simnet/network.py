"""``SimnetNetwork``: the simulated Lightning network over one state directory.

Synchronous and process-safe (SQLite); ``SimnetNode`` wraps one of its nodes in the async
``Node`` port. Several instances (in one process or several) may share a directory."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lngate.lightning import errors
from lngate.lightning.bolt11 import decode_bolt11
from lngate.lightning.node import (
    HOLD_INVOICE_CLTV,
    Balances,
    Channel,
    ClosedChannel,
    Invoice,
    InvoiceState,
    NodeInfo,
    OnchainTx,
    Payment,
)
from lngate.lightning.node import Network as ChainNetwork
from lngate.lightning.simnet import invoices, keys, onchain, payments
from lngate.lightning.simnet.faults import FaultKind, Faults, node_faults
from lngate.lightning.simnet.store import Clock, Store, block_height, system_clock_ms

EXCHANGE = "exchange"
HUB = "hub"
DEFAULT_WALLETS = ("carol", "dave")
DEFAULT_ONCHAIN_SAT = 20_000_000
DEFAULT_CHANNEL_SAT = 5_000_000
HUB_FEE_BASE_MSAT = 1_000
HUB_FEE_PPM = 100
MAX_PAGE = 1000


MARKER_TTL_S = 0.02  # how stale a read of other handles' commits may be
STATES_CHUNK = 500  # SQLite's bound on a statement's parameters is 32,766 here; stay far below


class SimnetNetwork:
    """Nodes, channels, invoices, payments, wallets and faults, persisted in
    ``state_dir/simnet.sqlite3``. The default topology (exchange<->hub<->carol, hub<->dave) is
    created on first use."""

    def __init__(self, state_dir: Path, *, clock_ms: Clock = system_clock_ms) -> None:
        self.state_dir = Path(state_dir)
        self._store = Store(self.state_dir, clock_ms)
        self._clock_ms = clock_ms
        self.faults = Faults(self._store)
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._own_writes = 0
        self._foreign_writes = (0, -MARKER_TTL_S)  # (data_version, when it was read)
        with self._store.write() as conn:
            if conn.execute("SELECT COUNT(*) FROM nodes").fetchone()[0] == 0:
                _create_default_topology(conn)

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> SimnetNetwork:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def now_ms(self) -> int:
        return self._clock_ms()

    # -- transactions and notification -------------------------------------------------------

    @contextmanager
    def _write(self, node: str | None = None) -> Iterator[sqlite3.Connection]:
        """A write transaction that first resolves what is due; wakes subscribers after."""
        with self._store.write() as conn:
            if node is not None:
                _guard(conn, node)
            payments.resolve_due(conn, self.now_ms())
            invoices.expire_due(conn, self.now_ms() // 1000)
            yield conn
        self._notify()

    @contextmanager
    def _read(self, node: str) -> Iterator[sqlite3.Connection]:
        self.tick()
        with self._store.read() as conn:
            _guard(conn, node)
            yield conn

    def tick(self) -> int:
        """Resolve due payments and expire invoices, if any (lazily: a read first)."""
        now_ms = self.now_ms()
        with self._store.read() as conn:
            due = payments.any_due(conn, now_ms) or invoices.any_expired(conn, now_ms // 1000)
        if not due:
            return 0
        with self._store.write() as conn:
            count = payments.resolve_due(conn, now_ms) + invoices.expire_due(conn, now_ms // 1000)
        self._notify()
        return count

    def change_marker(self) -> tuple[int, int]:
        """A value that differs once anything was committed to the network since it was taken:
        by this handle (counted) or another (SQLite's data_version, read at most every
        ``MARKER_TTL_S``, so that hundreds of waiting subscriptions cost one query)."""
        version, read_at = self._foreign_writes
        now = time.monotonic()
        if now - read_at >= MARKER_TTL_S:
            version = self._store.data_version()
            self._foreign_writes = (version, now)
        return version, self._own_writes

    def _notify(self) -> None:
        self._own_writes += 1
        for loop, event in list(self._waiters):
            if not loop.is_closed():
                loop.call_soon_threadsafe(event.set)

    async def wait_for_change(self, timeout_s: float) -> None:
        """Return when this instance commits a write, or after ``timeout_s``."""
        event = asyncio.Event()
        waiter = (asyncio.get_running_loop(), event)
        self._waiters.add(waiter)
        try:
            await asyncio.wait_for(event.wait(), timeout_s)
        except TimeoutError:
            pass
        finally:
            self._waiters.discard(waiter)

    # -- nodes -------------------------------------------------------------------------------

    def nodes(self) -> list[str]:
        with self._store.read() as conn:
            return [str(r[0]) for r in conn.execute("SELECT name FROM nodes ORDER BY name")]

    def add_node(self, name: str, *, onchain_sat: int = 0) -> str:
        """Add a node (its pubkey is returned); fund it with ``onchain_sat`` if positive."""
        with self._write() as conn:
            pubkey = _add_node(conn, name)
            if onchain_sat > 0:
                onchain.fund(conn, name, onchain_sat)
        return pubkey

    def info(self, node: str) -> NodeInfo:
        with self._read(node) as conn:
            pubkey = conn.execute("SELECT pubkey FROM nodes WHERE name = ?", (node,)).fetchone()
            return NodeInfo(str(pubkey[0]), ChainNetwork.SIMNET, node, block_height(conn))

    def pubkey(self, node: str) -> str:
        return self.info(node).pubkey

    def check_online(self, node: str) -> int:
        """Raise NodeUnreachable if the node is offline; returns its SLOW delay in ms. Every
        call of a ``SimnetNode`` starts here, so it is one statement."""
        rows = self._store.read_statement(
            "SELECT f.kind, f.delay_ms FROM nodes n LEFT JOIN faults f ON f.node = n.name"
            " WHERE n.name = ?",
            (node,),
        )
        if not rows:
            raise errors.InvalidNodeRequest(f"unknown simnet node {node!r}")
        faults = [(FaultKind(str(kind)), int(delay_ms)) for kind, delay_ms in rows if kind]
        if any(kind is FaultKind.OFFLINE for kind, _ in faults):
            raise errors.NodeUnreachable(f"simnet node {node} is offline")
        return max((delay for kind, delay in faults if kind is FaultKind.SLOW), default=0)

    # -- invoices ----------------------------------------------------------------------------

    def create_invoice(
        self,
        node: str,
        amount_msat: int | None,
        *,
        memo: str | None = None,
        description_hash: bytes | None = None,
        expiry_s: int = 3600,
        created_at: int | None = None,
    ) -> Invoice:
        """``created_at`` (unix s) lets tests make an already-expired invoice."""
        with self._write(node) as conn:
            return invoices.create_invoice(
                conn,
                node,
                amount_msat,
                memo=memo,
                description_hash=description_hash,
                expiry_s=expiry_s,
                created_at=self.now_ms() // 1000 if created_at is None else created_at,
            )

    def create_hold_invoice(
        self,
        node: str,
        payment_hash: bytes,
        amount_msat: int,
        *,
        memo: str | None = None,
        expiry_s: int,
        cltv_expiry: int = HOLD_INVOICE_CLTV,
        created_at: int | None = None,
    ) -> Invoice:
        """A hold invoice of ``node`` for ``payment_hash`` (see ``Node.create_hold_invoice``);
        ``created_at`` as for ``create_invoice``."""
        with self._write(node) as conn:
            return invoices.create_hold_invoice(
                conn,
                node,
                payment_hash,
                amount_msat,
                memo=memo,
                expiry_s=expiry_s,
                cltv_expiry=cltv_expiry,
                created_at=self.now_ms() // 1000 if created_at is None else created_at,
            )

    def settle_invoice(self, node: str, preimage: bytes) -> None:
        """Settle ``node``'s ACCEPTED hold invoice of ``sha256(preimage)`` (see
        ``Node.settle_invoice``: a SETTLED one is a no-op)."""
        if len(preimage) != 32:
            raise ValueError("preimage must be 32 bytes")
        payment_hash = hashlib.sha256(preimage).digest()
        with self._write(node) as conn:
            invoice = invoices.lookup_invoice(conn, node, payment_hash)
            if invoice.state is InvoiceState.SETTLED:
                return
            if not invoices.is_hold(conn, payment_hash):
                raise errors.InvalidNodeRequest("not a hold invoice")
            if invoice.state is InvoiceState.OPEN:
                raise errors.InvalidNodeRequest("invoice still open: no HTLC is held")
            if invoice.state is InvoiceState.CANCELED:
                raise errors.InvalidNodeRequest("invoice already canceled")
            payments.settle_held(conn, payment_hash, preimage, self.now_ms())

    def lookup_invoice(self, node: str, payment_hash: bytes) -> Invoice:
        with self._read(node) as conn:
            return invoices.lookup_invoice(conn, node, payment_hash)

    def invoice_states(self, payment_hashes: list[bytes]) -> dict[bytes, tuple[str, int]]:
        """(state, amount paid) of each of these invoices that exists: one cheap read for all
        the invoices a node's subscriptions follow."""
        found: dict[bytes, tuple[str, int]] = {}
        with self._store.read() as conn:
            for start in range(0, len(payment_hashes), STATES_CHUNK):
                chunk = payment_hashes[start : start + STATES_CHUNK]
                rows = conn.execute(
                    "SELECT payment_hash, state, amount_paid_msat FROM invoices"
                    f" WHERE payment_hash IN ({', '.join('?' * len(chunk))})",
                    chunk,
                ).fetchall()
                found.update((bytes(h), (str(s), int(a))) for h, s, a in rows)
        return found

    def cancel_invoice(self, node: str, payment_hash: bytes) -> None:
        """Cancel an OPEN or ACCEPTED invoice (held HTLCs are failed back); a CANCELED one is
        a no-op, a SETTLED one raises ``InvalidNodeRequest``."""
        with self._write(node) as conn:
            invoice = invoices.lookup_invoice(conn, node, payment_hash)
            if invoice.state is InvoiceState.SETTLED:
                raise errors.InvalidNodeRequest("invoice already settled")
            if invoice.state is not InvoiceState.CANCELED:
                invoices.set_state(conn, payment_hash, InvoiceState.CANCELED)
                payments.fail_for_canceled_invoice(conn, payment_hash, self.now_ms())

    def settled_invoices_after(
        self, node: str, settle_index: int, limit: int = 100
    ) -> list[Invoice]:
        with self._read(node) as conn:
            return invoices.settled_after(conn, node, settle_index, min(limit, MAX_PAGE))

    def invoice_updates_after(
        self, node: str, seq: int, limit: int = 100
    ) -> list[tuple[int, Invoice]]:
        with self._read(node) as conn:
            return invoices.events_after(conn, node, seq, min(limit, MAX_PAGE))

    def last_invoice_update(self) -> int:
        with self._store.read() as conn:
            return invoices.last_event_seq(conn)

    # -- payments ----------------------------------------------------------------------------

    def pay(
        self, node: str, bolt11: str, *, amount_msat: int | None = None, fee_limit_msat: int
    ) -> Payment:
        """Start a payment from ``node``; returns it SUCCEEDED, FAILED or IN_FLIGHT (a fault
        holds it). Raises the typed error when it fails before any HTLC leaves (the payment is
        then recorded FAILED, so it may be retried)."""
        decoded = decode_bolt11(bolt11)
        amount = payments.payment_amount_msat(decoded, amount_msat)
        with self._write(node) as conn:
            outcome = payments.start_payment(
                conn, node, decoded, amount, fee_limit_msat, self.now_ms()
            )
        if outcome.error is not None:
            raise outcome.error
        return outcome.payment

    def track_payment(self, node: str, payment_hash: bytes) -> Payment:
        with self._read(node) as conn:
            return payments.get_payment(conn, node, payment_hash)

    def release_payment(self, payment_hash: bytes, *, succeed: bool = True) -> int:
        """Resolve in-flight payments of a hash now (a test's hand on a held HTLC)."""
        with self._write() as conn:
            return payments.release(conn, payment_hash, succeed=succeed, now_ms=self.now_ms())

    # -- wallets and channels ----------------------------------------------------------------

    def balances(self, node: str) -> Balances:
        with self._read(node) as conn:
            return onchain.balances(conn, node)

    def new_address(self, node: str) -> str:
        with self._write(node) as conn:
            return onchain.new_address(conn, node)

    def send_onchain(self, node: str, address: str, amount_sat: int, sat_per_vbyte: int) -> str:
        with self._write(node) as conn:
            return onchain.send_onchain(conn, node, address, amount_sat, sat_per_vbyte)

    def list_onchain_transactions(self, node: str) -> list[OnchainTx]:
        with self._read(node) as conn:
            return onchain.list_transactions(conn, node)

    def open_channel(
        self,
        node: str,
        peer: str,
        amount_sat: int,
        *,
        push_sat: int = 0,
        close_address: str | None = None,
    ) -> str:
        with self._write(node) as conn:
            return onchain.open_channel(
                conn, node, peer, amount_sat, push_sat=push_sat, close_address=close_address
            )

    def list_channels(self, node: str) -> list[Channel]:
        with self._read(node) as conn:
            return onchain.list_channels(conn, node)

    def close_channel(self, node: str, channel_point: str, *, cooperative: bool = True) -> str:
        """Close a channel of ``node`` (cooperatively, or by force from ``node``); both sides
        are paid on chain at once. Returns the closing txid (see ``onchain.close_channel``)."""
        with self._write(node) as conn:
            return onchain.close_channel(conn, node, channel_point, cooperative=cooperative)

    def list_closed_channels(self, node: str) -> list[ClosedChannel]:
        with self._read(node) as conn:
            return onchain.list_closed_channels(conn, node)

    def fund_onchain(self, node: str, amount_sat: int) -> str:
        """Credit the node's wallet (no fault applies); returns the txid."""
        with self._write() as conn:
            _guard_exists(conn, node)
            return onchain.fund(conn, node, amount_sat)


def _guard_exists(conn: sqlite3.Connection, node: str) -> None:
    if conn.execute("SELECT 1 FROM nodes WHERE name = ?", (node,)).fetchone() is None:
        raise errors.InvalidNodeRequest(f"unknown simnet node {node!r}")


def _guard(conn: sqlite3.Connection, node: str) -> None:
    _guard_exists(conn, node)
    if any(f.kind is FaultKind.OFFLINE for f in node_faults(conn, node)):
        raise errors.NodeUnreachable(f"simnet node {node} is offline")


def _add_node(conn: sqlite3.Connection, name: str) -> str:
    if not name or len(name) > 32 or not name.replace("-", "").replace("_", "").isalnum():
        raise errors.InvalidNodeRequest(f"bad node name {name!r}")
    secret = keys.new_node_secret()
    pubkey = keys.node_pubkey(secret)
    try:
        conn.execute(
            "INSERT INTO nodes (name, secret, pubkey, onchain_sat) VALUES (?, ?, ?, 0)",
            (name, secret, pubkey),
        )
    except sqlite3.IntegrityError as exc:
        raise errors.InvalidNodeRequest(f"node {name!r} exists") from exc
    return pubkey


def _create_default_topology(conn: sqlite3.Connection) -> None:
    for name in (EXCHANGE, HUB, *DEFAULT_WALLETS):
        _add_node(conn, name)
        onchain.fund(conn, name, DEFAULT_ONCHAIN_SAT)
    half = DEFAULT_CHANNEL_SAT // 2
    for left, right in ((EXCHANGE, HUB), *((HUB, wallet) for wallet in DEFAULT_WALLETS)):
        point = onchain.open_channel(conn, left, right, DEFAULT_CHANNEL_SAT, push_sat=half)
        onchain.set_channel_policy(conn, point, HUB, HUB_FEE_BASE_MSAT, HUB_FEE_PPM)
