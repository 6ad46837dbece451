"""Bringing a regtest network up and down: `up`, `down`, `status`.

`up` builds the description (`lngate.regtest.network`), starts btcd, mines past segwit's
activation, starts the nodes (in remote-signer mode the signer first, and the exchange
watch-only from the signer's xpubs: `lngate.regtest.remote_signer`), funds them, opens
exchange <-> alice <-> bob, waits until bob and the exchange see routes to each other,
bakes the least-privilege macaroons and writes lngate.toml.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import shutil
import time
from pathlib import Path
from typing import Any

from lngate.regtest import remote_signer
from lngate.regtest.network import (
    ANNOUNCE_CONFIRMATIONS,
    CHAIN_TIMEOUT_S,
    CHANNEL_CAPACITY_SAT,
    CHANNEL_PUSH_SAT,
    INITIAL_BLOCKS,
    INVOICE_PERMISSIONS,
    MODES,
    NODE_NAMES,
    REMOTE_SIGNER,
    ROLE_SIGNER,
    ROLE_WATCH_ONLY,
    SAT_PER_VBYTE,
    SIGNER,
    SPENDING_PERMISSIONS,
    STANDALONE,
    WALLET_FUNDING_SAT,
    Btcd,
    Lnd,
    Network,
    _btcd_args,
    _lnd_args,
)
from lngate.regtest.procs import (
    LndRestError,
    Process,
    RegtestError,
    _free_ports,
    _stop,
    wait_until,
)

# ---------------------------------------------------------------------------
# Building the description


def _describe(state_dir: Path, bin_dir: Path, mode: str) -> Network:
    run = state_dir / "run"
    logs = state_dir / "logs"
    ports = iter(_free_ports(3 + 3 * len(NODE_NAMES)))
    btcd_dir = run / "btcd"
    btcd = Btcd(
        rpc_host=f"127.0.0.1:{next(ports)}",
        p2p_host=f"127.0.0.1:{next(ports)}",
        rpc_user="lngate",
        rpc_pass=secrets.token_hex(16),
        rpc_cert=str(btcd_dir / "rpc.cert"),
        rpc_key=str(btcd_dir / "rpc.key"),
        datadir=str(btcd_dir / "data"),
        process=Process("btcd", str(bin_dir / "btcd"), [], str(logs / "btcd.log")),
    )
    nodes = {}
    for name in NODE_NAMES:
        lnddir = run / name
        p2p, rpc, rest = next(ports), next(ports), next(ports)
        nodes[name] = Lnd(
            name=name,
            lnddir=str(lnddir),
            rest_url=f"https://127.0.0.1:{rest}",
            rpc_host=f"127.0.0.1:{rpc}",
            p2p_host=f"127.0.0.1:{p2p}",
            tls_cert=str(lnddir / "tls.cert"),
            admin_macaroon=str(lnddir / "data/chain/bitcoin/regtest/admin.macaroon"),
            process=Process(name, str(bin_dir / "lnd"), [], str(logs / f"{name}.log")),
        )
    if mode == REMOTE_SIGNER:
        _add_signer(nodes, run, logs, bin_dir, next(ports))
    network = Network(
        state_dir=str(state_dir), bin_dir=str(bin_dir), btcd=btcd, nodes=nodes, mode=mode
    )
    for node in nodes.values():
        node.process.args = _lnd_args(node, btcd)
    btcd.process.args = _btcd_args(btcd)
    return network


def _add_signer(nodes: dict[str, Lnd], run: Path, logs: Path, bin_dir: Path, port: int) -> None:
    """The signer (its RPC on 127.0.0.1 until `remote_signer.isolate_signer` moves it into a
    namespace), and the exchange made watch-only: what it holds of the signer lives in its
    own data dir, as it would on a production host."""
    lnddir = run / SIGNER
    signer = Lnd(
        name=SIGNER,
        lnddir=str(lnddir),
        rest_url="",
        rpc_host=f"127.0.0.1:{port}",
        p2p_host="",
        tls_cert=str(lnddir / "tls.cert"),
        admin_macaroon=str(lnddir / "data/chain/bitcoin/regtest/admin.macaroon"),
        process=Process(SIGNER, str(bin_dir / "lnd"), [], str(logs / f"{SIGNER}.log")),
        role=ROLE_SIGNER,
    )
    exchange = nodes["exchange"]
    handed = Path(exchange.lnddir) / "remote-signer"
    exchange.role = ROLE_WATCH_ONLY
    exchange.signer = SIGNER
    exchange.signer_rpc_host = signer.rpc_host
    exchange.signer_tls_cert = str(handed / "tls.cert")
    exchange.signer_macaroon = str(handed / "signer.macaroon")
    exchange.wallet_password_file = str(handed / "wallet.password")
    nodes[SIGNER] = signer


# ---------------------------------------------------------------------------
# Bringing the network up


def _new_address(network: Network, name: str) -> str:
    answer = network.rest(name, "GET", "/v1/newaddress", params={"type": "WITNESS_PUBKEY_HASH"})
    return str(answer["address"])


def _get_mining_address(network: Network) -> str:
    """Start btcd and exchange once, only to learn an address of exchange's wallet.

    btcd can only `generate` to the --miningaddr it was started with, and lnd cannot
    start without a running chain backend, so: btcd (no mining address) -> exchange ->
    address -> stop both. lnd answers RPCs at RPC_ACTIVE, before it is synced (it will
    not reach SERVER_ACTIVE on a chain whose tip is the 2011 genesis block). Both are
    stopped before btcd restarts, because lnd exits if its backend vanishes while it
    waits for the chain to sync.
    """
    network.start_btcd()
    network.start_lnd_process("exchange")
    if network.nodes["exchange"].role == ROLE_WATCH_ONLY:
        remote_signer.init_watch_only(network, "exchange")
    network.wait_lnd_state("exchange", ("RPC_ACTIVE", "SERVER_ACTIVE"))
    address = _new_address(network, "exchange")
    _stop([network.nodes["exchange"].process, network.btcd.process])
    network.save()
    return address


def _connect(network: Network, source: str, target: str) -> None:
    node = network.nodes[target]
    body = {"addr": {"pubkey": node.pubkey, "host": node.p2p_host}, "perm": False, "timeout": "30"}
    try:
        network.rest(source, "POST", "/v1/peers", body)
    except LndRestError as exc:
        if "already connected" not in exc.body:
            raise


def _open_channel(network: Network, funder: str, peer: str) -> None:
    _connect(network, funder, peer)
    body = {
        "node_pubkey": base64.b64encode(bytes.fromhex(network.nodes[peer].pubkey)).decode(),
        "local_funding_amount": str(CHANNEL_CAPACITY_SAT),
        # The push gives the peer a balance in the channel: liquidity both ways.
        "push_sat": str(CHANNEL_PUSH_SAT),
        "sat_per_vbyte": str(SAT_PER_VBYTE),
    }
    network.rest(funder, "POST", "/v1/channels", body)


def _fund_wallets(network: Network, names: list[str]) -> None:
    outputs = {_new_address(network, name): str(WALLET_FUNDING_SAT) for name in names}
    network.rest(
        "exchange",
        "POST",
        "/v1/transactions/many",
        {"AddrToAmount": outputs, "sat_per_vbyte": str(SAT_PER_VBYTE)},
    )
    network.mine(1)
    for name in names:

        def funded(name: str = name) -> bool | None:
            balance = network.rest(name, "GET", "/v1/balance/blockchain")
            return True if int(balance.get("confirmed_balance", "0")) > 0 else None

        wait_until(f"{name}'s on-chain funds", funded, CHAIN_TIMEOUT_S)


def _bake_macaroon(network: Network, path: Path, permissions: tuple[str, ...]) -> None:
    path.unlink(missing_ok=True)  # lncli refuses to overwrite
    network.lncli("exchange", "bakemacaroon", f"--save_to={path}", *permissions)
    # A macaroon is a bearer credential: only the owner may read it.
    path.chmod(0o600)


def _write_lngate_toml(network: Network) -> None:
    node = network.nodes["exchange"]
    q = json.dumps  # a JSON string is a valid TOML basic string
    text = (
        "[node]\n"
        'backend = "lnd"\n'
        "[lnd]\n"
        f"rest_url = {q(node.rest_url)}\n"
        f"tls_cert = {q(node.tls_cert)}\n"
        f"invoice_macaroon = {q(network.invoice_macaroon)}\n"
        f"spending_macaroon = {q(network.spending_macaroon)}\n"
    )
    if node.role == ROLE_WATCH_ONLY:
        # Where lngate checks that the node's signer answers (a TLS handshake pinned to
        # this cert; no request, no credential): lngate.lightning.lnd.signer.
        text += (
            f"signer_rpc_host = {q(node.signer_rpc_host)}\n"
            f"signer_tls_cert = {q(node.signer_tls_cert)}\n"
        )
    path = Path(network.state_dir) / "lngate.toml"
    path.write_text(text)
    network.lngate_toml = str(path)


def _start_signer(network: Network) -> None:
    """Isolate the signer, start it, and hand the exchange what it needs of it."""
    signer = network.nodes[SIGNER]
    signer.isolation = remote_signer.isolate_signer(network, SIGNER)
    network.start_lnd_process(SIGNER)
    network.wait_lnd_state(SIGNER, ("SERVER_ACTIVE",))
    signer.pubkey = str(network.lncli(SIGNER, "getinfo")["identity_pubkey"])
    remote_signer.hand_over(network, "exchange")
    network.save()


def _start_chain(network: Network) -> None:
    network.btcd.mining_address = _get_mining_address(network)
    network.start_btcd()
    network.mine(INITIAL_BLOCKS, wait_synced=False)


def _start_nodes(network: Network) -> None:
    for name in NODE_NAMES:
        network.start_lnd_process(name)
    for name in NODE_NAMES:
        network.wait_lnd_state(name, ("SERVER_ACTIVE",))
    network.wait_synced()
    for name in NODE_NAMES:
        info = network.rest(name, "GET", "/v1/getinfo")
        network.nodes[name].pubkey = str(info["identity_pubkey"])
    exchange = network.nodes["exchange"]
    if exchange.role == ROLE_WATCH_ONLY and exchange.pubkey != network.nodes[SIGNER].pubkey:
        raise RegtestError("the watch-only exchange's identity is not its signer's")
    network.save()


def _open_channels(network: Network) -> None:
    _fund_wallets(network, ["alice", "bob"])
    _open_channel(network, "exchange", "alice")
    _open_channel(network, "alice", "bob")
    network.mine(ANNOUNCE_CONFIRMATIONS)
    for name, count in (("exchange", 1), ("alice", 2), ("bob", 1)):
        network.wait_active_channels(name, count)
    network.wait_route("bob", "exchange")
    network.wait_route("exchange", "bob")


def _bake_macaroons(network: Network) -> None:
    mac_dir = Path(network.state_dir) / "run" / "macaroons"
    mac_dir.mkdir(parents=True, exist_ok=True)
    invoice = mac_dir / "invoice.macaroon"
    spending = mac_dir / "spending.macaroon"
    _bake_macaroon(network, invoice, INVOICE_PERMISSIONS)
    _bake_macaroon(network, spending, SPENDING_PERMISSIONS)
    network.invoice_macaroon = str(invoice)
    network.spending_macaroon = str(spending)


def up(state_dir: Path, bin_dir: Path, *, mode: str = STANDALONE) -> dict[str, Any]:
    """Start btcd and the lnd nodes, fund them, open channels; return network.json.

    ``mode`` is `STANDALONE` (every node holds its seed) or `REMOTE_SIGNER` (the exchange
    is watch-only and a fourth lnd, the signer, holds its seed). On failure everything
    started is stopped again (logs kept) before the error is raised.
    """
    if mode not in MODES:
        raise RegtestError(f"unknown mode {mode!r}; one of {', '.join(MODES)}")
    began = time.monotonic()
    state_dir = Path(state_dir).resolve()
    if (state_dir / "network.json").exists():
        raise RegtestError(f"a regtest network is already described in {state_dir}; run down")
    for sub in ("run/btcd", "logs"):
        (state_dir / sub).mkdir(parents=True, exist_ok=True)
    network = _describe(state_dir, Path(bin_dir).resolve(), mode)
    network.save()
    try:
        if mode == REMOTE_SIGNER:
            _start_signer(network)
        _start_chain(network)
        _start_nodes(network)
        _open_channels(network)
        _bake_macaroons(network)
        _write_lngate_toml(network)
    except BaseException:
        down(state_dir, keep_logs=True)
        raise
    network.up_seconds = round(time.monotonic() - began, 1)
    network.save()
    return network.to_dict()


def down(state_dir: Path, *, keep_logs: bool = False) -> bool:
    """Stop every process of the network by PID and remove its state (and the signer's
    network namespace).

    Returns False when there was no network.json (nothing to do). With ``keep_logs``
    the ``logs/`` directory stays for a post-mortem.
    """
    state_dir = Path(state_dir)
    try:
        network = Network.load(state_dir)
    except RegtestError:
        return False
    signers = [node for node in network.nodes.values() if node.role == ROLE_SIGNER]
    others = [node.process for node in network.nodes.values() if node.role != ROLE_SIGNER]
    # lnd first: it may exit with an error if btcd vanishes under it; a watch-only node
    # before its signer, for the same reason.
    _stop(others)
    _stop([node.process for node in signers])
    _stop([network.btcd.process])
    for signer in signers:
        remote_signer.remove_netns(signer)
    shutil.rmtree(state_dir / "run", ignore_errors=True)
    for name in ("network.json", "lngate.toml", "network.json.tmp"):
        (state_dir / name).unlink(missing_ok=True)
    if not keep_logs:
        shutil.rmtree(state_dir / "logs", ignore_errors=True)
        with contextlib.suppress(OSError):
            state_dir.rmdir()  # only if nothing else lives there
    return True


def status(state_dir: Path) -> dict[str, Any]:
    """The network's processes, each node's role (which is watch-only, where its signer is)
    and, for running nodes, height, sync and channel counts."""
    return Network.load(Path(state_dir)).status()
