"""The exchange as a watch-only lnd whose seed lives on a remote signer (``remote-signer`` mode).

- The production side holds no private key: lnd reports every account of the exchange's wallet
  watch-only (and the signer's not), the node's identity is the signer's, and no file the
  production side holds (the exchange's data dir, lngate.toml, the macaroons) contains a seed,
  an extended private key or btcwallet's private key records. Each search is shown to find what
  it looks for in a control first (the signer's wallet, a generated tprv and mnemonic).
- The macaroon the exchange presents to the signer carries exactly remote-signing.md's
  permissions: it signs, and lnd refuses it a balance, an invoice, channels and accounts.
- The signer opens one listening socket, its gRPC port (in its own network namespace when the
  host allows), and no REST.
- `lngate regtest status` and `lngate regtest node stop|start` (every mode: bob; remote-signer
  mode: the signer and the watch-only exchange, which unlocks itself and reconnects).

The signer's faults, with lngate running on the exchange, are in test_signer_faults.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from embit import bip32, bip39
from embit.networks import NETWORKS

from lngate.regtest import SIGNER, SIGNER_PERMISSIONS, LncliError, Network
from lngate.regtest.remote_signer import SIGNER_MACAROON_ROOT_KEY_ID
from tests.regtest.lngate_helpers import bob_invoice, pay

pytestmark = pytest.mark.regtest
remote_signer_only = pytest.mark.regtest_modes("remote-signer")

WALLET_DB = Path("data/chain/bitcoin/regtest/wallet.db")
# btcwallet's waddrmgr keeps private key material under these keys of its buckets (the master
# private key parameters, the crypto private and script keys, the master HD private key, the
# coin-type private keys); a watch-only wallet has none of them (waddrmgr deletePrivateKeys).
PRIVATE_KEY_RECORDS = (b"mpriv", b"cpriv", b"cscript", b"mhdpriv", b"ctpriv")
# A BIP32 extended private key in base58 (xprv/tprv and the SLIP-132 forms) is 111 characters.
EXTENDED_PRIVATE_KEY = re.compile(rb"\b[xtyzuvYZUV]prv[1-9A-HJ-NP-Za-km-z]{100,112}")
PEM_PRIVATE_KEY = re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----")
SEED_WORDS = re.compile(rb"aezeed|cipher_seed|mnemonic", re.IGNORECASE)
# lnd's aezeed and BIP39 both use BIP39's English list: 12 or more of its words in a row.
BIP39_WORDS = frozenset(bip39.WORDLIST)
MNEMONIC_RUN = 12


def production_files(regtest: Network) -> list[Path]:
    """Every file of the production side: the exchange's data dir (what it was handed of the
    signer included), lngate.toml and the macaroons lngate holds."""
    roots = [
        Path(regtest.nodes["exchange"].lnddir),
        Path(regtest.state_dir) / "run" / "macaroons",
        Path(regtest.lngate_toml),
    ]
    files = []
    for root in roots:
        files.extend(p for p in ([root] if root.is_file() else root.rglob("*")) if p.is_file())
    return sorted(files)


def mnemonic_runs(data: bytes) -> int:
    """The longest run of consecutive BIP39 words in ``data``, read as text."""
    longest = run = 0
    for word in re.split(rb"[^a-z]+", data.lower()):
        run = run + 1 if word and word.decode() in BIP39_WORDS else 0
        longest = max(longest, run)
    return longest


def secrets_in(data: bytes) -> list[str]:
    found = []
    if EXTENDED_PRIVATE_KEY.search(data):
        found.append("extended private key")
    if SEED_WORDS.search(data):
        found.append("seed word")
    if mnemonic_runs(data) >= MNEMONIC_RUN:
        found.append("mnemonic")
    if PEM_PRIVATE_KEY.search(data):
        found.append("PEM private key")
    return found


def accounts(regtest: Network, name: str) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = regtest.lncli(name, "wallet", "accounts", "list")["accounts"]
    return listed


@remote_signer_only
def test_the_exchange_holds_no_private_key(regtest: Network) -> None:
    exchange, signer = regtest.nodes["exchange"], regtest.nodes[SIGNER]

    # lnd's own word: every account of the exchange's wallet is watch-only, none of the
    # signer's is, and they are the same accounts (the xpubs the exchange was handed).
    on_exchange, on_signer = accounts(regtest, "exchange"), accounts(regtest, SIGNER)
    assert on_exchange and all(a["watch_only"] for a in on_exchange)
    assert on_signer and not any(a["watch_only"] for a in on_signer)

    def keys(listed: list[dict[str, Any]]) -> set[tuple[str, str]]:
        return {(a["derivation_path"], a["extended_public_key"]) for a in listed}

    assert keys(on_exchange) == keys(on_signer)
    paths = {a["derivation_path"] for a in on_exchange}
    assert {"m/49'/0'/0'", "m/84'/0'/0'", "m/86'/0'/0'", "m/1017'/1'/0'"} <= paths
    # The node key is a key of the signer's: lnd reports one identity for both.
    identity = regtest.rest("exchange", "GET", "/v1/getinfo")["identity_pubkey"]
    assert identity == regtest.lncli(SIGNER, "getinfo")["identity_pubkey"] == exchange.pubkey

    # On disk: btcwallet's private key records are in the signer's wallet and not in the
    # exchange's (the control shows the search finds them where they are).
    signer_db = (Path(signer.lnddir) / WALLET_DB).read_bytes()
    exchange_db = (Path(exchange.lnddir) / WALLET_DB).read_bytes()
    assert all(record in signer_db for record in PRIVATE_KEY_RECORDS)
    assert [r for r in PRIVATE_KEY_RECORDS if r in exchange_db] == []
    assert b"watchonly" in exchange_db

    # No file of the production side holds a seed, an extended private key or a PEM private
    # key, but lnd's TLS key (a transport key: it signs nothing of the wallet's).
    files = production_files(regtest)
    assert Path(exchange.lnddir) / WALLET_DB in files
    assert Path(exchange.signer_macaroon).with_name("accounts.json") in files
    found = {str(p): secrets_in(p.read_bytes()) for p in files}
    leaks = {path: what for path, what in found.items() if what}
    assert leaks == {str(Path(exchange.lnddir) / "tls.key"): ["PEM private key"]}


def test_the_secret_searches_find_what_they_look_for() -> None:
    """The controls of the scan above: a generated tprv and mnemonic are found."""
    root = bip32.HDKey.from_seed(os.urandom(32), version=NETWORKS["test"]["xprv"])
    mnemonic = bip39.mnemonic_from_bytes(os.urandom(16))  # 12 words
    assert secrets_in(b'{"key": "' + root.to_base58().encode() + b'"}') == ["extended private key"]
    assert secrets_in(b"\x00\x01" + mnemonic.encode() + b"\x00") == ["mnemonic"]
    assert secrets_in(b"the aezeed cipher seed") == ["seed word"]
    public = root.to_public().to_base58().encode()
    assert secrets_in(public) == []  # an xpub is not a secret


@remote_signer_only
def test_the_signer_macaroon_signs_and_does_nothing_else(regtest: Network) -> None:
    macaroon = Path(regtest.nodes["exchange"].signer_macaroon)
    printed = regtest.lncli(SIGNER, "printmacaroon", f"--macaroon_file={macaroon}")
    assert sorted(printed["permissions"]) == sorted(SIGNER_PERMISSIONS)
    assert printed["root_key_id"] == str(SIGNER_MACAROON_ROOT_KEY_ID)  # revocable on its own
    assert oct(macaroon.stat().st_mode & 0o777) == "0o600"

    # It signs (message:write) ...
    signed = regtest.lncli(SIGNER, "signmessage", "lngate", macaroon=macaroon)
    assert signed["signature"]
    # ... and lnd refuses it reads of the signer's node and wallet, invoices and channels.
    # (onchain:write, which SignPsbt needs, would also let it call SendCoins; the signer has no
    # chain backend and so knows no coin to send. What it signs, it signs for whoever holds
    # this macaroon and can reach the port: the production host, by design.)
    for refused in (
        ("walletbalance",),
        ("channelbalance",),
        ("addinvoice", "1000"),
        ("listchannels",),
        ("getinfo",),
        ("wallet", "accounts", "list"),
        ("newaddress", "p2wkh"),
    ):
        with pytest.raises(LncliError, match="permission denied"):
            regtest.lncli(SIGNER, *refused, macaroon=macaroon)


def listening_sockets(pid: int) -> set[str]:
    """The TCP sockets process ``pid`` listens on, as ``address:port`` (IPv4), from /proc."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd)
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # 0A: LISTEN
                address, port = local.split(":")
                if table == "tcp":
                    address = ".".join(str(b) for b in reversed(bytes.fromhex(address)))
                found.add(f"{address}:{int(port, 16)}")
    return found


@remote_signer_only
def test_the_signer_listens_on_its_grpc_port_only(regtest: Network) -> None:
    signer = regtest.nodes[SIGNER]
    assert listening_sockets(signer.process.pid) == {signer.rpc_host}
    assert signer.rest_url == "" and signer.p2p_host == ""
    if signer.netns:
        # Its namespace has loopback and one link to the host; nothing else listens in it.
        done = subprocess.run(
            ["ip", "netns", "exec", signer.netns, "cat", "/proc/net/tcp", "/proc/net/tcp6"],
            capture_output=True,
            text=True,
            check=True,
        )
        listening = [line for line in done.stdout.splitlines() if line.split()[3:4] == ["0A"]]
        assert len(listening) == 1, listening
        assert signer.isolation == "netns"
    else:
        assert signer.rpc_host.startswith("127.0.0.1:")
        assert signer.isolation.startswith("loopback")


def cli(regtest: Network, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lngate.cli", "regtest", *args, "--state-dir", regtest.state_dir],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def status(regtest: Network) -> dict[str, Any]:
    done = cli(regtest, "status")
    assert done.returncode == 0, done.stderr
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


def bob_pays_exchange(regtest: Network, amount_msat: int) -> None:
    added = regtest.rest("exchange", "POST", "/v1/invoices", {"value_msat": str(amount_msat)})
    paid = pay(regtest, "bob", added["payment_request"])
    assert paid["status"] == "SUCCEEDED", paid


def test_status_and_node_stop_start(regtest: Network) -> None:
    shown = status(regtest)
    assert shown["mode"] == regtest.mode
    assert cli(regtest, "node", "stop", "bob").returncode == 0
    assert status(regtest)["nodes"]["bob"]["running"] is False
    started = cli(regtest, "node", "start", "bob")
    assert started.returncode == 0, started.stderr
    assert "started: bob" in started.stderr
    regtest.reload()  # the session's network, with the new PIDs
    regtest.wait_route("bob", "exchange")
    bob_pays_exchange(regtest, 5_000)
    again = cli(regtest, "node", "start", "bob")
    assert again.returncode == 1 and "already running" in again.stderr
    assert cli(regtest, "node", "stop", "carol").returncode == 1


@remote_signer_only
def test_status_shows_the_watch_only_node_and_its_signer(regtest: Network) -> None:
    nodes = status(regtest)["nodes"]
    exchange, signer = nodes["exchange"], nodes[SIGNER]
    assert exchange["role"] == "watch-only"
    assert exchange["signer"]["node"] == SIGNER
    assert exchange["signer"]["rpc_host"] == signer["rpc_host"] == regtest.nodes[SIGNER].rpc_host
    assert exchange["signer"]["isolation"] == signer["isolation"]
    assert signer["role"] == "signer" and signer["signs_for"] == ["exchange"]
    assert signer["rest_url"] is None and signer["info"] == {"state": "SERVER_ACTIVE"}
    assert {nodes[n]["role"] for n in ("alice", "bob")} == {"standalone"}


@remote_signer_only
def test_a_restarted_watch_only_node_unlocks_and_reconnects(regtest: Network) -> None:
    """The exchange stopped, then its signer: the exchange may not start before its signer
    (lnd would fail to unlock its wallet); once the signer runs it starts, unlocks its wallet
    itself, is at the tip with its channel active, and pays and is paid."""
    assert cli(regtest, "node", "stop", "exchange").returncode == 0
    assert cli(regtest, "node", "stop", SIGNER).returncode == 0
    refused = cli(regtest, "node", "start", "exchange")
    assert refused.returncode == 1 and "start signer first" in refused.stderr
    started = cli(regtest, "node", "start", SIGNER)
    # Stopped by the operator, the exchange stays stopped: only an exit is restarted.
    assert started.returncode == 0 and "started: signer\n" in started.stderr, started.stderr
    started = cli(regtest, "node", "start", "exchange")
    assert started.returncode == 0, started.stderr
    regtest.reload()
    assert regtest.lnd_state("exchange") == "SERVER_ACTIVE"
    regtest.wait_route("bob", "exchange")
    regtest.wait_route("exchange", "bob")
    bob_pays_exchange(regtest, 6_000)
    bolt11, _ = bob_invoice(regtest, 7_000, "after the watch-only restart")
    paid = pay(regtest, "exchange", bolt11)
    assert paid["status"] == "SUCCEEDED", paid
