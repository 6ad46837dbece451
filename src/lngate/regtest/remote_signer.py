"""Remote signing on the regtest network: ``exchange`` watch-only, its seed on ``signer``.

How lnd splits a node in two (lnd's docs/remote-signing.md; its itest
lnd_remote_signer_test.go does the same on regtest):

1. The signer is an ordinary lnd with a seed, hardened: no peer-to-peer listener, no
   bootstrap, no chain backend (``bitcoin.node=nochainbackend``), and here no REST
   listener either. It opens one gRPC port. When the host allows (root, ``ip netns``)
   it runs in a network namespace of its own, joined to the host by one veth link, so
   that port on the namespace's address is the only way in; else it binds 127.0.0.1.
2. Its account xpubs are exported (``lncli wallet accounts list``, walletrpc
   ListAccounts): BIP49/84/86 account 0 and lnd's internal key families m/1017'/1'/N'.
3. A macaroon is baked on the signer with only what the watch-only node needs of it,
   `SIGNER_PERMISSIONS`, under a root key of its own (`SIGNER_MACAROON_ROOT_KEY_ID`) so
   it can be revoked alone (``lncli deletemacaroonid``).
4. The production side is handed public material only: the signer's TLS cert, that
   macaroon and the xpubs (all under ``run/exchange/remote-signer/``).
5. The watch-only node starts with ``remotesigner.*`` pointing at the signer, and its
   wallet is created watch-only from the xpubs (InitWallet with ``watch_only``; what
   ``lncli createwatchonly`` does). Its node identity is the signer's.

What the production side keeps on disk is checked by tests/regtest/test_remote_signer.py.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

from lngate.regtest.network import ROLE_SIGNER, ROLE_WATCH_ONLY, Lnd, Network, _lnd_args
from lngate.regtest.procs import RegtestError

# docs/remote-signing.md: "A custom macaroon can be baked for the watch-only node, so it
# only gets the minimum required permissions on the signer instance": SignMessage and
# DeriveSharedKey (message:write, signer:generate for the signrpc calls), SignPsbt and
# the key derivations (onchain:write, address:read). No read of balances, invoices or
# channels, no payment, no on-chain send (the signer has no chain to send on).
SIGNER_PERMISSIONS = ("address:read", "message:write", "onchain:write", "signer:generate")
SIGNER_MACAROON_ROOT_KEY_ID = 1

# The signer's gRPC port inside its own network namespace (nothing else listens there).
NETNS_SIGNER_PORT = 10009
# Addresses for the host <-> namespace link: a /30 out of 10.200.0.0-10.250.255.255.
_NETNS_FIRST_OCTET2, _NETNS_LAST_OCTET2 = 200, 250


# ---------------------------------------------------------------------------
# The signer's own network namespace


def isolate_signer(network: Network, signer_name: str) -> str:
    """Put the signer in a network namespace of its own if the host allows it; returns how
    it is isolated (``netns`` or ``loopback``, with the reason it is not a namespace).

    Must run before the signer's first start: its address (and so its TLS cert) changes.
    """
    signer = network.nodes[signer_name]
    tag = secrets.token_hex(4)
    created = _create_netns(tag)
    if isinstance(created, str):
        return f"loopback ({created})"
    name, host_address, ns_address = created
    signer.netns = name
    signer.netns_host_address = host_address
    signer.rpc_host = f"{ns_address}:{NETNS_SIGNER_PORT}"
    ip = shutil.which("ip")
    assert ip is not None  # _create_netns found it
    signer.process.wrapper = [ip, "netns", "exec", name]
    signer.process.args = _lnd_args(signer, network.btcd)
    for dependent in network.watch_only_nodes(signer_name):
        node = network.nodes[dependent]
        node.signer_rpc_host = signer.rpc_host
        node.process.args = _lnd_args(node, network.btcd)
    network.save()
    return "netns"


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)


def _free_link_subnet() -> tuple[str, str] | None:
    """Two addresses of a /30 that no interface of the host uses a /24 of."""
    shown = _ip("-4", "-o", "addr", "show")
    used = shown.stdout if shown.returncode == 0 else ""
    for _ in range(50):
        b = _NETNS_FIRST_OCTET2 + secrets.randbelow(_NETNS_LAST_OCTET2 - _NETNS_FIRST_OCTET2 + 1)
        c = secrets.randbelow(256)
        if f" 10.{b}.{c}." in used:
            continue
        d = 4 * secrets.randbelow(64)
        return f"10.{b}.{c}.{d + 1}", f"10.{b}.{c}.{d + 2}"
    return None


def _create_netns(tag: str) -> tuple[str, str, str] | str:
    """(namespace, host address, namespace address), or why there is none."""
    if shutil.which("ip") is None:
        return "no ip command"
    if os.geteuid() != 0:
        return "not root"
    subnet = _free_link_subnet()
    if subnet is None:
        return "no free link subnet"
    host_address, ns_address = subnet
    name, host_if, ns_if = f"lngate-{tag}", f"lgh{tag}", f"lgs{tag}"
    steps = [
        ("netns", "add", name),
        ("link", "add", host_if, "type", "veth", "peer", "name", ns_if),
        ("link", "set", ns_if, "netns", name),
        ("addr", "add", f"{host_address}/30", "dev", host_if),
        ("link", "set", host_if, "up"),
        ("-n", name, "addr", "add", f"{ns_address}/30", "dev", ns_if),
        ("-n", name, "link", "set", ns_if, "up"),
        ("-n", name, "link", "set", "lo", "up"),
    ]
    for step in steps:
        done = _ip(*step)
        if done.returncode != 0:
            _delete_netns(name, host_if)
            return f"ip {' '.join(step)}: {done.stderr.strip() or done.returncode}"
    return name, host_address, ns_address


def remove_netns(signer: Lnd) -> None:
    """Delete the signer's namespace (its veth pair goes with it). Its lnd must be stopped."""
    if signer.netns:
        _delete_netns(signer.netns, "lgh" + signer.netns.removeprefix("lngate-"))


def _delete_netns(name: str, host_if: str) -> None:
    _ip("netns", "del", name)
    _ip("link", "del", host_if)  # normally gone with the namespace already


# ---------------------------------------------------------------------------
# Handing the production side what it needs of the signer


def export_accounts(network: Network, signer_name: str) -> list[dict[str, Any]]:
    """The signer's accounts (walletrpc ListAccounts): each with its xpub at depth 3."""
    listed = network.lncli(signer_name, "wallet", "accounts", "list")
    accounts: list[dict[str, Any]] = listed.get("accounts", [])
    if not accounts:
        raise RegtestError(f"{signer_name} listed no accounts")
    return accounts


def watch_only_accounts(accounts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """ListAccounts' answer as InitWallet's ``watch_only.accounts``: the purpose, coin type
    and account are the three hardened steps of the derivation path (``m/84'/0'/0'``)."""
    result = []
    for account in accounts:
        path = str(account["derivation_path"])
        steps = path.removeprefix("m/").split("/")
        if not path.startswith("m/") or len(steps) < 3 or not all(s.endswith("'") for s in steps):
            raise RegtestError(f"not an account path (m/purpose'/coin'/account'): {path!r}")
        purpose, coin_type, index = (int(s.rstrip("'")) for s in steps[:3])
        result.append(
            {
                "purpose": purpose,
                "coin_type": coin_type,
                "account": index,
                "xpub": str(account["extended_public_key"]),
            }
        )
    return result


def hand_over(network: Network, watch_only_name: str) -> None:
    """Give the watch-only node its signer's TLS cert, the signing-only macaroon, the
    exported xpubs and a wallet password file (all in its own ``remote-signer/`` dir)."""
    node = network.nodes[watch_only_name]
    signer = network.nodes[node.signer]
    Path(node.signer_tls_cert).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(signer.tls_cert, node.signer_tls_cert)
    bake_signer_macaroon(network, node.signer, Path(node.signer_macaroon))
    accounts = export_accounts(network, node.signer)
    accounts_file = Path(node.signer_macaroon).with_name("accounts.json")
    accounts_file.write_text(json.dumps({"accounts": accounts}, indent=2) + "\n")
    password = Path(node.wallet_password_file)
    password.write_text(secrets.token_hex(16))
    password.chmod(0o600)


def bake_signer_macaroon(network: Network, signer_name: str, path: Path) -> None:
    path.unlink(missing_ok=True)  # lncli refuses to overwrite
    network.lncli(
        signer_name,
        "bakemacaroon",
        f"--save_to={path}",
        f"--root_key_id={SIGNER_MACAROON_ROOT_KEY_ID}",
        *SIGNER_PERMISSIONS,
    )
    # A macaroon is a bearer credential: only the owner may read it.
    path.chmod(0o600)


def init_watch_only(network: Network, name: str) -> None:
    """Create the watch-only wallet of ``name`` (started, waiting for a wallet) from the
    xpubs it was handed: REST InitWallet with ``watch_only``, as ``lncli createwatchonly``.
    lnd writes its admin.macaroon and unlocks it; it connects to its signer as it does."""
    node = network.nodes[name]
    assert node.role == ROLE_WATCH_ONLY
    network.wait_lnd_state(name, ("NON_EXISTING",), macaroon=False)
    exported = json.loads(Path(node.signer_macaroon).with_name("accounts.json").read_text())
    body = {
        "wallet_password": base64.b64encode(Path(node.wallet_password_file).read_bytes()).decode(),
        "watch_only": {
            # 0: scan from the first block; a regtest chain is short.
            "master_key_birthday_timestamp": "0",
            "accounts": watch_only_accounts(exported["accounts"]),
        },
    }
    network.rest_unauthenticated(name, "POST", "/v1/initwallet", body)


def signer_of(network: Network, name: str) -> Lnd:
    node = network.nodes[name]
    if node.role != ROLE_WATCH_ONLY:
        raise RegtestError(f"{name} is not watch-only")
    signer = network.nodes[node.signer]
    assert signer.role == ROLE_SIGNER
    return signer
