"""``lngate simnet ...``: drive the simulated network's external wallets from a shell.

Every command opens ``<data_dir>/simnet`` (``--data-dir``, else ``$LNGATE_DATA_DIR``, else
``./lngate-data``), so it acts on the same network as a running ``lngate serve``."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from lngate.domain.errors import NodeError
from lngate.lightning.simnet.faults import FaultKind
from lngate.lightning.simnet.network import EXCHANGE, SimnetNetwork

app = typer.Typer(help="The simulated Lightning network (simnet).", no_args_is_help=True)
fault_app = typer.Typer(help="Inject or clear faults.", no_args_is_help=True)
app.add_typer(fault_app, name="fault")

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="lngate data dir (default: $LNGATE_DATA_DIR or ./lngate-data)"),
]


def simnet_dir(data_dir: Path | None) -> Path:
    base = data_dir or Path(os.environ.get("LNGATE_DATA_DIR") or "lngate-data")
    return base / "simnet"


def _open(data_dir: Path | None) -> SimnetNetwork:
    return SimnetNetwork(simnet_dir(data_dir))


def _fail(exc: NodeError) -> typer.Exit:
    typer.echo(f"error: {exc.code}: {exc.message}", err=True)
    return typer.Exit(code=1)


@app.command()
def wallets(
    data_dir: DataDir = None, as_json: Annotated[bool, typer.Option("--json")] = False
) -> None:
    """Balances of the external wallets (every node but the exchange's)."""
    with _open(data_dir) as net:
        rows = []
        for name in net.nodes():
            if name == EXCHANGE:
                continue
            b = net.balances(name)
            rows.append(
                {
                    "wallet": name,
                    "pubkey": net.pubkey(name),
                    "onchain_sat": b.onchain_confirmed_sat,
                    "channel_local_msat": b.channel_local_msat,
                    "channel_remote_msat": b.channel_remote_msat,
                    "pending_htlcs_msat": b.pending_htlcs_msat,
                }
            )
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        typer.echo(
            f"{row['wallet']:<10} onchain {row['onchain_sat']:>12} sat  local"
            f" {row['channel_local_msat']:>15} msat  remote {row['channel_remote_msat']:>15} msat"
        )


@app.command()
def invoice(
    wallet: str,
    amount_sat: int,
    memo: Annotated[str | None, typer.Option("--memo")] = None,
    expiry_s: Annotated[int, typer.Option("--expiry-s")] = 3600,
    data_dir: DataDir = None,
) -> None:
    """Print a BOLT11 invoice from WALLET (AMOUNT_SAT 0 for an amountless one)."""
    with _open(data_dir) as net:
        try:
            inv = net.create_invoice(
                wallet, amount_sat * 1000 if amount_sat else None, memo=memo, expiry_s=expiry_s
            )
        except NodeError as exc:
            raise _fail(exc) from exc
    typer.echo(inv.bolt11)


@app.command()
def pay(
    wallet: str,
    bolt11: str,
    amount_sat: Annotated[int | None, typer.Option("--amount-sat")] = None,
    fee_limit_sat: Annotated[int, typer.Option("--fee-limit-sat")] = 1000,
    data_dir: DataDir = None,
) -> None:
    """Pay BOLT11 from WALLET; prints the payment as JSON."""
    with _open(data_dir) as net:
        try:
            payment = net.pay(
                wallet,
                bolt11,
                amount_msat=None if amount_sat is None else amount_sat * 1000,
                fee_limit_msat=fee_limit_sat * 1000,
            )
        except NodeError as exc:
            raise _fail(exc) from exc
    out = asdict(payment)
    out["payment_hash"] = payment.payment_hash.hex()
    out["preimage"] = payment.preimage.hex() if payment.preimage else None
    typer.echo(json.dumps(out))


@app.command()
def fund(node: str, amount_sat: int, data_dir: DataDir = None) -> None:
    """Credit NODE's on-chain wallet with AMOUNT_SAT; prints the txid."""
    with _open(data_dir) as net:
        try:
            typer.echo(net.fund_onchain(node, amount_sat))
        except NodeError as exc:
            raise _fail(exc) from exc


@app.command("close-channel")
def close_channel(
    node: str,
    channel_point: str,
    force: Annotated[bool, typer.Option("--force", help="force close from NODE")] = False,
    data_dir: DataDir = None,
) -> None:
    """Close NODE's channel CHANNEL_POINT (txid:index), cooperatively unless --force: each side
    is paid on chain (cooperatively, to its upfront shutdown address if it has one). Prints the
    closing txid."""
    with _open(data_dir) as net:
        try:
            typer.echo(net.close_channel(node, channel_point, cooperative=not force))
        except NodeError as exc:
            raise _fail(exc) from exc


@fault_app.command("set")
def fault_set(
    kind: FaultKind,
    node: Annotated[str | None, typer.Option("--node")] = None,
    payment_hash: Annotated[str | None, typer.Option("--payment-hash", help="hex")] = None,
    hold_ms: Annotated[int, typer.Option("--hold-ms")] = 0,
    fail: Annotated[bool, typer.Option("--fail", help="stuck: fail after hold")] = False,
    delay_ms: Annotated[int, typer.Option("--delay-ms")] = 0,
    fee_base_msat: Annotated[int, typer.Option("--fee-base-msat")] = 0,
    fee_ppm: Annotated[int, typer.Option("--fee-ppm")] = 0,
    data_dir: DataDir = None,
) -> None:
    """Inject a fault for a node and/or a payment hash."""
    if node is None and payment_hash is None:
        raise typer.BadParameter("give --node and/or --payment-hash")
    with _open(data_dir) as net:
        try:
            fault = net.faults.set(
                kind,
                node=node,
                payment_hash=None if payment_hash is None else bytes.fromhex(payment_hash),
                hold_ms=hold_ms,
                succeed=not fail,
                delay_ms=delay_ms,
                fee_base_msat=fee_base_msat,
                fee_ppm=fee_ppm,
            )
        except NodeError as exc:
            raise _fail(exc) from exc
    typer.echo(f"fault {fault.id} set: {fault.kind}")


@fault_app.command("clear")
def fault_clear(
    node: Annotated[str | None, typer.Option("--node")] = None,
    kind: Annotated[FaultKind | None, typer.Option("--kind")] = None,
    data_dir: DataDir = None,
) -> None:
    """Remove faults (all, or those of --node / --kind)."""
    with _open(data_dir) as net:
        typer.echo(f"{net.faults.clear(node=node, kind=kind)} fault(s) cleared")


@fault_app.command("list")
def fault_list(data_dir: DataDir = None) -> None:
    with _open(data_dir) as net:
        for fault in net.faults.list():
            hash_hex = fault.payment_hash.hex() if fault.payment_hash else "-"
            typer.echo(f"{fault.id} {fault.kind} node={fault.node or '-'} hash={hash_hex}")


@fault_app.command("lose-funds")
def fault_lose_funds(
    node: str,
    channel_msat: Annotated[int, typer.Option("--channel-msat")] = 0,
    onchain_sat: Annotated[int, typer.Option("--onchain-sat")] = 0,
    data_dir: DataDir = None,
) -> None:
    """NODE loses funds behind the ledger's back (no invoice, payment or tx)."""
    with _open(data_dir) as net:
        try:
            net.faults.lose_funds(node, channel_msat=channel_msat, onchain_sat=onchain_sat)
        except NodeError as exc:
            raise _fail(exc) from exc


if __name__ == "__main__":
    app()
