"""`lngate regtest up|down|status|node`: the regtest network from the command line.

The main CLI mounts `app` as its `regtest` sub-command.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Annotated, Any

import typer

from lngate.regtest.bringup import down, status, up
from lngate.regtest.network import REMOTE_SIGNER, STANDALONE, Network
from lngate.regtest.procs import RegtestError

app = typer.Typer(
    help="A real regtest Lightning network: btcd and lnd exchange, alice, bob "
    "(and signer, with --remote-signer)."
)
node_app = typer.Typer(help="Stop or start one process of the network.")
app.add_typer(node_app, name="node")

DEFAULT_STATE_DIR = Path("lngate-data/regtest")
StateDir = Annotated[
    Path, typer.Option("--state-dir", help="Where network.json, lngate.toml, data and logs live.")
]
BinDir = Annotated[
    Path | None,
    typer.Option(
        "--bin-dir",
        help="Directory with lnd, lncli, btcd, btcctl. Default: $LNGATE_REGTEST_BIN, "
        "else the output of scripts/build-regtest.sh (builds on first use).",
    ),
]


def build_script() -> Path:
    """scripts/build-regtest.sh of the source checkout this package runs from."""
    return Path(__file__).resolve().parents[3] / "scripts" / "build-regtest.sh"


def resolve_bin_dir(bin_dir: Path | None) -> Path:
    if bin_dir is not None:
        return bin_dir
    from_env = os.environ.get("LNGATE_REGTEST_BIN")
    if from_env:
        return Path(from_env)
    script = build_script()
    if not script.exists():
        raise RegtestError(f"no --bin-dir given and no build script at {script}")
    # The script prints progress on stderr (passed through) and the bin dir on stdout.
    done = subprocess.run(
        ["bash", str(script)], stdout=subprocess.PIPE, text=True, timeout=3600, check=False
    )
    if done.returncode != 0:
        raise RegtestError(f"{script} failed with exit code {done.returncode}")
    return Path(done.stdout.strip().splitlines()[-1])


def _print(data: dict[str, Any]) -> None:
    typer.echo(json.dumps(data, indent=2))


@app.command("up")
def up_command(
    state_dir: StateDir = DEFAULT_STATE_DIR,
    bin_dir: BinDir = None,
    remote_signer: Annotated[
        bool,
        typer.Option(
            "--remote-signer",
            help="Run exchange watch-only: its seed is held by a fourth lnd, 'signer', "
            "which opens one gRPC port and nothing else (in its own network namespace "
            "when the host allows).",
        ),
    ] = False,
) -> None:
    """Build the binaries if needed, start the network and print network.json."""
    mode = REMOTE_SIGNER if remote_signer else STANDALONE
    try:
        network = up(state_dir, resolve_bin_dir(bin_dir), mode=mode)
    except RegtestError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    _print(network)
    typer.echo(f"lngate config: {network['lngate_toml']}", err=True)


@app.command("down")
def down_command(
    state_dir: StateDir = DEFAULT_STATE_DIR,
    keep_logs: Annotated[bool, typer.Option(help="Keep logs/ after stopping.")] = False,
) -> None:
    """Stop every process of the network and remove its state."""
    if not down(state_dir, keep_logs=keep_logs):
        typer.echo(f"no regtest network in {state_dir}", err=True)


@app.command("status")
def status_command(state_dir: StateDir = DEFAULT_STATE_DIR) -> None:
    """Print the processes' liveness and each node's height, sync and channels."""
    try:
        _print(status(state_dir))
    except RegtestError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


NodeName = Annotated[str, typer.Argument(help="btcd, exchange, alice, bob or signer")]


@node_app.command("stop")
def node_stop_command(name: NodeName, state_dir: StateDir = DEFAULT_STATE_DIR) -> None:
    """Stop one process (SIGTERM; SIGKILL past 30 s). Its data stays."""
    try:
        network = Network.load(state_dir)
        stopped = network.stop_node(name)
    except RegtestError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"{name}: {'stopped' if stopped else 'was not running'}", err=True)


@node_app.command("start")
def node_start_command(name: NodeName, state_dir: StateDir = DEFAULT_STATE_DIR) -> None:
    """Start one stopped process again and wait until it serves, is at the chain tip and its
    channels to running peers are active. Starting a signer also starts the watch-only
    nodes lnd shut down while their signer was away."""
    try:
        network = Network.load(state_dir)
        started = network.start_node(name)
    except RegtestError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"started: {', '.join(started)}", err=True)
