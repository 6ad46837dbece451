"""A real regtest Lightning network: one btcd and three lnd nodes (four with a remote signer).

The nodes are ``exchange`` (the node lngate drives), ``alice`` (a routing node) and
``bob`` (a customer's wallet). `up` leaves them with two public channels,
exchange <-> alice and alice <-> bob, each with liquidity on both sides, so that bob
can pay exchange through alice and exchange can pay bob.

Two modes (`MODES`):

- ``standalone``: every lnd holds its own seed.
- ``remote-signer``: ``exchange`` is a watch-only lnd that holds public keys only; a
  fourth lnd, ``signer``, holds its seed and signs for it over one gRPC connection
  (lnd's remote signing, docs/remote-signing.md). The signer has no chain backend, no
  peer-to-peer listener and no REST listener; its gRPC port is the only one it opens,
  in a network namespace of its own when the host allows one, else on 127.0.0.1.
  See `lngate.regtest.remote_signer`.

This module describes a network and drives its nodes (`lngate.regtest.procs` starts and
stops the processes); `lngate.regtest.bringup` brings a network up and down. Every
process binds to 127.0.0.1 only (the signer to its namespace's address). Every wait polls
a condition with a deadline; nothing sleeps for a fixed time hoping a thing is ready.

State directory layout (``down`` removes all of it but ``logs/`` when asked to keep it)::

    network.json        every detail a test needs (see `Network`)
    lngate.toml         config for lngate, pointing at the exchange node
    run/btcd/           btcd data dir and its RPC TLS cert and key
    run/<node>/         lnd's --lnddir for exchange, alice, bob (and signer)
    run/exchange/remote-signer/
                        remote-signer mode: what the production side holds of the signer
                        (its TLS cert, the signing-only macaroon, the exported account
                        xpubs) and the watch-only wallet's password file
    run/macaroons/      the baked least-privilege macaroons
    logs/<process>.log  stdout and stderr of every process

Macaroons, baked on the exchange node with ``lncli bakemacaroon``
(``entity:action``; lnd checks each RPC against a fixed list of these):

- ``invoice.macaroon``, held by the API process: `INVOICE_PERMISSIONS` =
  ``info:read invoices:read invoices:write offchain:read``. It can create, look up,
  subscribe to and cancel invoices, read node info, and decode payment requests
  (DecodePayReq needs offchain:read). It can neither pay (offchain:write), nor move
  on-chain funds (onchain:write), nor open channels. Side effects of the two broad
  entities, accepted on purpose: offchain:read also lists channels and payments
  (read only), and invoices:write also settles hold invoices given their preimage.
- ``spending.macaroon``, held by the payment worker: `SPENDING_PERMISSIONS` =
  ``address:read address:write info:read invoices:read invoices:write offchain:read
  offchain:write onchain:read onchain:write peers:read peers:write``. It pays and
  tracks payments (router v2), reads balances, sends on-chain (treasury sweeps),
  derives addresses of its own wallet (``Node.new_address``: NewAddress needs
  address:write; it moves nothing that onchain:write could not already move), and
  connects peers and opens and closes channels. It has no ``macaroon``, ``signer`` or
  ``message`` rights.
- remote-signer mode: ``signer.macaroon``, baked on the signer and presented by the
  watch-only exchange: `lngate.regtest.remote_signer.SIGNER_PERMISSIONS`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from lngate.regtest.procs import (
    LncliError,
    LndRestError,
    Process,
    RegtestError,
    _check_running,
    _running,
    _spawn,
    _stop,
    wait_until,
)

NODE_NAMES = ("exchange", "alice", "bob")
SIGNER = "signer"

STANDALONE = "standalone"
REMOTE_SIGNER = "remote-signer"
MODES = (STANDALONE, REMOTE_SIGNER)

# What a node is (`Lnd.role`).
ROLE_STANDALONE = "standalone"  # holds its own seed
ROLE_WATCH_ONLY = "watch-only"  # public keys only; `Lnd.signer` signs for it
ROLE_SIGNER = "signer"  # holds the seed of a watch-only node; no chain, peers or REST

INVOICE_PERMISSIONS = ("info:read", "invoices:read", "invoices:write", "offchain:read")
SPENDING_PERMISSIONS = (
    "address:read",
    "address:write",
    "info:read",
    "invoices:read",
    "invoices:write",
    "offchain:read",
    "offchain:write",
    "onchain:read",
    "onchain:write",
    "peers:read",
    "peers:write",
)

# btcd's regtest activates segwit by BIP9 version bits with a 144-block window:
# started, locked in, active takes three windows (432 blocks). 500 blocks is past
# that and leaves hundreds of coinbase outputs past the 100-block maturity.
INITIAL_BLOCKS = 500
# lnd announces a public channel only after 6 confirmations, and bob can only
# route through channels he has heard announced.
ANNOUNCE_CONFIRMATIONS = 6

CHANNEL_CAPACITY_SAT = 10_000_000
CHANNEL_PUSH_SAT = 4_000_000
WALLET_FUNDING_SAT = 50_000_000
# regtest has no fee market; fixing the rate keeps fee estimation out of the way.
SAT_PER_VBYTE = 2

PROCESS_START_TIMEOUT_S = 120.0
CHAIN_TIMEOUT_S = 120.0
GOSSIP_TIMEOUT_S = 120.0

T = TypeVar("T")


# ---------------------------------------------------------------------------
# Network description


@dataclass
class Btcd:
    rpc_host: str
    p2p_host: str
    rpc_user: str
    rpc_pass: str
    rpc_cert: str
    rpc_key: str
    datadir: str
    process: Process
    mining_address: str = ""


@dataclass
class Lnd:
    """One lnd. A signer has no REST listener (``rest_url`` empty) and no peer-to-peer one
    (``p2p_host`` empty): it is reached with lncli over gRPC (`Network.lncli`) only."""

    name: str
    lnddir: str
    rest_url: str
    rpc_host: str
    p2p_host: str
    tls_cert: str
    admin_macaroon: str
    process: Process
    pubkey: str = ""
    role: str = ROLE_STANDALONE
    # watch-only: the node holding its keys, and the files it was handed of that node
    signer: str = ""
    signer_rpc_host: str = ""
    signer_tls_cert: str = ""
    signer_macaroon: str = ""
    wallet_password_file: str = ""
    # signer: the network namespace it runs in ("" when it shares the host's, on 127.0.0.1)
    netns: str = ""
    netns_host_address: str = ""  # the host's end of the namespace's link
    isolation: str = ""  # "netns", or "loopback (why not a namespace)"

    @property
    def has_rest(self) -> bool:
        return bool(self.rest_url)


@dataclass
class Network:
    """A running (or half-started) regtest network, as stored in ``network.json``."""

    state_dir: str
    bin_dir: str
    btcd: Btcd
    nodes: dict[str, Lnd]
    invoice_macaroon: str = ""
    spending_macaroon: str = ""
    lngate_toml: str = ""
    mode: str = STANDALONE
    started_at: float = field(default_factory=time.time)
    up_seconds: float = 0.0

    # -- persistence --------------------------------------------------------

    @property
    def path(self) -> Path:
        return Path(self.state_dir) / "network.json"

    def save(self) -> None:
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        tmp.replace(self.path)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def load(cls, state_dir: Path) -> Network:
        path = Path(state_dir) / "network.json"
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise RegtestError(f"no regtest network in {state_dir} (no network.json)") from None
        btcd = raw.pop("btcd")
        nodes = raw.pop("nodes")
        return cls(
            btcd=Btcd(**{**btcd, "process": Process(**btcd["process"])}),
            nodes={
                name: Lnd(**{**node, "process": Process(**node["process"])})
                for name, node in nodes.items()
            },
            **raw,
        )

    def reload(self) -> None:
        """Read network.json again, in place: another process (``lngate regtest node ...``)
        may have stopped or started a node since, under a new PID."""
        fresh = Network.load(Path(self.state_dir))
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(fresh, f.name))

    def processes(self) -> list[Process]:
        return [self.btcd.process, *(node.process for node in self.nodes.values())]

    # -- btcd ---------------------------------------------------------------

    def btcd_rpc(self, method: str, params: list[Any] | None = None, timeout_s: float = 60) -> Any:
        """Call btcd's JSON-RPC (over TLS, as lnd also requires) and return its result."""
        body = {"jsonrpc": "1.0", "id": 1, "method": method, "params": params or []}
        with httpx.Client(verify=_tls_context(self.btcd.rpc_cert), timeout=timeout_s) as client:
            resp = client.post(
                f"https://{self.btcd.rpc_host}",
                json=body,
                auth=(self.btcd.rpc_user, self.btcd.rpc_pass),
            )
        resp.raise_for_status()
        answer = resp.json()
        if answer.get("error"):
            raise RegtestError(f"btcd {method}: {answer['error']}")
        return answer["result"]

    def block_height(self) -> int:
        return int(self.btcd_rpc("getblockcount"))

    def mine(self, n: int, *, wait_synced: bool = True) -> list[str]:
        """Mine ``n`` blocks to the exchange's address; by default wait until every lnd
        that runs has seen them, so the caller's next call sees the new height."""
        hashes: list[str] = []
        # In chunks so one RPC call never runs long enough to hit the HTTP timeout.
        while len(hashes) < n:
            chunk = min(100, n - len(hashes))
            hashes.extend(self.btcd_rpc("generate", [chunk], timeout_s=120))
        if wait_synced:
            self.wait_synced()
        return hashes

    # -- lnd ----------------------------------------------------------------

    def rest(
        self,
        node_name: str,
        method: str,
        path: str,
        json: Any = None,
        *,
        params: dict[str, str] | None = None,
        macaroon: Path | None = None,
        timeout_s: float = 60,
    ) -> Any:
        """Call a node's REST API with its admin macaroon (or ``macaroon``); return the JSON."""
        node = self.nodes[node_name]
        if not node.has_rest:
            raise RegtestError(f"{node_name} has no REST listener; use lncli (gRPC)")
        with _lnd_client(node, macaroon, timeout_s) as client:
            resp = client.request(method, path, json=json, params=params)
        if resp.status_code >= 300:
            raise LndRestError(node_name, method, path, resp.status_code, resp.text)
        return resp.json() if resp.content else {}

    def rest_unauthenticated(
        self, node_name: str, method: str, path: str, json: Any = None, timeout_s: float = 60
    ) -> Any:
        """A REST call without a macaroon: the wallet unlocker's (InitWallet, UnlockWallet),
        which lnd serves before any macaroon exists."""
        node = self.nodes[node_name]
        with httpx.Client(
            base_url=node.rest_url, verify=_tls_context(node.tls_cert), timeout=timeout_s
        ) as client:
            resp = client.request(method, path, json=json)
        if resp.status_code >= 300:
            raise LndRestError(node_name, method, path, resp.status_code, resp.text)
        return resp.json() if resp.content else {}

    def pay_invoice(
        self,
        node_name: str,
        payment_request: str,
        *,
        fee_limit_sat: int = 1_000,
        timeout_s: float = 60,
        macaroon: Path | None = None,
        amount_msat: int | None = None,
    ) -> dict[str, Any]:
        """Pay with ``POST /v2/router/send`` and return the final Payment (SUCCEEDED or FAILED);
        ``amount_msat`` for an amountless invoice. Raises LndRestError when lnd refuses the
        request and RegtestError for an error in the stream.

        The endpoint streams one ``{"result": Payment}`` per line as the payment moves.
        """
        body = {
            "payment_request": payment_request,
            "timeout_seconds": int(timeout_s),
            "fee_limit_sat": str(fee_limit_sat),
        }
        if amount_msat is not None:
            body["amt_msat"] = str(amount_msat)
        node = self.nodes[node_name]
        with (
            _lnd_client(node, macaroon, timeout_s + 30) as client,
            client.stream("POST", "/v2/router/send", json=body) as resp,
        ):
            if resp.status_code >= 300:
                resp.read()
                raise LndRestError(
                    node_name, "POST", "/v2/router/send", resp.status_code, resp.text
                )
            for line in resp.iter_lines():
                if not line.strip():
                    continue
                message = _json_loads(line)
                if "error" in message:
                    raise RegtestError(f"{node_name}: payment error {message['error']}")
                payment: dict[str, Any] = message["result"]
                if payment.get("status") in ("SUCCEEDED", "FAILED"):
                    return payment
        raise RegtestError(f"{node_name}: payment stream ended without a final status")

    def lncli(
        self,
        node_name: str,
        *args: str,
        macaroon: Path | None = None,
        timeout_s: float = 60,
    ) -> dict[str, Any]:
        """Run ``lncli`` against a node's gRPC port with its admin macaroon (or ``macaroon``)
        and return the JSON it prints (``{"output": text}`` for a command that prints text).
        The signer, which has no REST listener, is driven so."""
        node = self.nodes[node_name]
        cmd = [
            str(Path(self.bin_dir) / "lncli"),
            "--network=regtest",
            f"--rpcserver={node.rpc_host}",
            f"--tlscertpath={node.tls_cert}",
            f"--macaroonpath={macaroon or node.admin_macaroon}",
            *args,
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
        if done.returncode != 0:
            raise LncliError(node_name, list(args), (done.stderr or done.stdout).strip())
        out = done.stdout.strip()
        # Most commands print JSON; a few print a line of text (bakemacaroon).
        return _json_loads(out) if out.startswith("{") else {"output": out}

    def lnd_state(self, node_name: str) -> str:
        """The wallet state (``/v1/state``, or ``lncli state`` for a node without REST); it
        needs no macaroon: it answers before the wallet even exists."""
        node = self.nodes[node_name]
        if not node.has_rest:
            return str(self.lncli(node_name, "--no-macaroons", "state", timeout_s=10)["state"])
        with httpx.Client(
            base_url=node.rest_url, verify=_tls_context(node.tls_cert), timeout=10
        ) as client:
            resp = client.get("/v1/state")
        resp.raise_for_status()
        return str(resp.json()["state"])

    def wait_lnd_state(
        self, node_name: str, states: tuple[str, ...], *, macaroon: bool = True
    ) -> str:
        """Wait until the node's state is one of ``states`` and return it; with ``macaroon``
        also until its admin.macaroon exists (written when the wallet is created)."""
        node = self.nodes[node_name]

        def reached() -> str | None:
            if not Path(node.tls_cert).exists():
                return None
            state = self.lnd_state(node_name)
            return state if state in states else None

        state = wait_until(
            f"{node_name} to reach {'/'.join(states)}",
            reached,
            PROCESS_START_TIMEOUT_S,
            interval_s=0.25,
            alive=lambda: _check_running(node.process),
        )
        if macaroon:
            wait_until(
                f"{node_name}'s admin.macaroon",
                lambda: True if Path(node.admin_macaroon).exists() else None,
                10,
            )
        return state

    def running_nodes(self) -> list[str]:
        """The lnd nodes that run and that have a chain to follow (every one but a signer)."""
        return [
            name
            for name, node in self.nodes.items()
            if node.role != ROLE_SIGNER and _running(node.process)
        ]

    def watch_only_nodes(self, signer: str) -> list[str]:
        return [name for name, node in self.nodes.items() if node.signer == signer]

    def wait_synced(self, names: list[str] | None = None) -> None:
        """Wait until each node (default: each running one) is synced to btcd's tip."""
        height = self.block_height()
        for name in names if names is not None else self.running_nodes():

            def synced(name: str = name) -> bool | None:
                info = self.rest(name, "GET", "/v1/getinfo")
                at_tip = info.get("synced_to_chain") and int(info["block_height"]) >= height
                return True if at_tip else None

            wait_until(
                f"{name} to sync to height {height}",
                synced,
                CHAIN_TIMEOUT_S,
                alive=functools.partial(_check_running, self.nodes[name].process),
            )

    def wait_active_channels(self, name: str, count: int) -> None:
        def active() -> bool | None:
            channels = self.rest(name, "GET", "/v1/channels", params={"active_only": "true"})
            return True if len(channels.get("channels", [])) >= count else None

        wait_until(f"{name} to have {count} active channel(s)", active, GOSSIP_TIMEOUT_S)

    def wait_route(self, source: str, target: str, amount_sat: int = 100_000) -> None:
        """Wait until ``source`` finds a route to ``target`` in its own channel graph."""
        pubkey = self.nodes[target].pubkey

        def route() -> bool | None:
            # Until the graph has caught up lnd answers "unable to find a path" as an
            # HTTP error, which wait_until records and retries.
            answer = self.rest(source, "GET", f"/v1/graph/routes/{pubkey}/{amount_sat}")
            return True if answer.get("routes") else None

        wait_until(f"a route {source} -> {target}", route, GOSSIP_TIMEOUT_S, interval_s=0.25)

    def start_lnd_process(self, name: str) -> None:
        """Start one lnd (its data dir may be new or reused) without waiting for it."""
        _spawn(self.nodes[name].process)
        self.save()

    def start_lnd(self, name: str) -> None:
        """Start one lnd and wait for SERVER_ACTIVE.

        A watch-only node unlocks its wallet itself (``--wallet-unlock-password-file``) and
        connects to its signer while it does, so its signer must run first: lnd gives up
        (and exits) when it cannot reach the signer within ``remotesigner.timeout``.
        """
        node = self.nodes[name]
        if node.role == ROLE_WATCH_ONLY and not _running(self.nodes[node.signer].process):
            raise RegtestError(
                f"{name} is watch-only and its signer {node.signer!r} is not running: "
                f"start {node.signer} first"
            )
        self.start_lnd_process(name)
        self.wait_lnd_state(name, ("SERVER_ACTIVE",))

    def restart_lnd(self, name: str, *, wait_channels: bool = True) -> None:
        """Stop one lnd and start it again on the same data dir and ports.

        Waits for SERVER_ACTIVE, for the chain tip, and (by default) until its channels
        are active again, which needs its peers to reconnect.
        """
        node = self.nodes[name]
        channels = 0
        if wait_channels and node.has_rest:
            listed = self.rest(name, "GET", "/v1/channels")
            channels = len(listed.get("channels", []))
        _stop([node.process])
        self.save()
        self.start_lnd(name)
        if node.role != ROLE_SIGNER:
            self.wait_synced([name])
        if channels:
            self.wait_active_channels(name, channels)

    # -- one node at a time (``lngate regtest node stop|start NAME``) -----------

    def node_names(self) -> list[str]:
        return ["btcd", *self.nodes]

    def _process_of(self, name: str) -> Process:
        if name == "btcd":
            return self.btcd.process
        if name not in self.nodes:
            raise RegtestError(f"no node {name!r}; the nodes are {', '.join(self.node_names())}")
        return self.nodes[name].process

    def is_running(self, name: str) -> bool:
        return _running(self._process_of(name))

    def stop_node(self, name: str) -> bool:
        """Stop one process of the network (SIGTERM, then SIGKILL past the deadline). Returns
        False when it was not running. Its data stays: `start_node` starts it again."""
        proc = self._process_of(name)
        was_running = _running(proc)
        _stop([proc])
        self.save()
        return was_running

    def start_node(self, name: str) -> list[str]:
        """Start one stopped process of the network again and wait until it serves (and, for
        an lnd with a chain, until it is at the tip and its channels to running peers are
        active). Returns the names started, in order.

        Starting a signer also starts each watch-only node of it that exited without being
        stopped (``stop_node`` clears the PID; an exit leaves it): lnd shuts a watch-only
        node down when it cannot reach its signer, and a supervisor (systemd's
        ``Restart=on-failure``) would start it again once the signer is back.
        """
        proc = self._process_of(name)
        if _running(proc):
            raise RegtestError(f"{name} is already running (pid {proc.pid})")
        if name == "btcd":
            self.start_btcd()
            self.wait_synced()
            return [name]
        self._start_and_settle(name)
        started = [name]
        if self.nodes[name].role == ROLE_SIGNER:
            for dependent in self.watch_only_nodes(name):
                dep = self.nodes[dependent].process
                if dep.pid and not _running(dep):
                    self._start_and_settle(dependent)
                    started.append(dependent)
        return started

    def _start_and_settle(self, name: str) -> None:
        node = self.nodes[name]
        node.process.pid = 0
        self.start_lnd(name)
        if node.role == ROLE_SIGNER:
            return
        self.wait_synced([name])
        self.wait_channels_with_running_peers(name)

    def wait_channels_with_running_peers(self, name: str) -> None:
        """Wait until every channel of ``name`` whose peer runs is active again (lnd
        reconnects to its channel peers by itself)."""
        running = {
            self.nodes[n].pubkey for n in self.running_nodes() if n != name and self.nodes[n].pubkey
        }
        listed = self.rest(name, "GET", "/v1/channels").get("channels", [])
        count = sum(1 for c in listed if c.get("remote_pubkey") in running)
        if count:
            self.wait_active_channels(name, count)

    def start_btcd(self) -> None:
        btcd = self.btcd
        btcd.process.args = _btcd_args(btcd)
        _spawn(btcd.process)
        self.save()
        wait_until(
            "btcd's RPC",
            lambda: self.block_height() if Path(btcd.rpc_cert).exists() else None,
            PROCESS_START_TIMEOUT_S,
            interval_s=0.2,
            alive=lambda: _check_running(btcd.process),
        )

    # -- summaries ----------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Liveness of every process; each node's role (which node is watch-only and where
        its signer is); for each running lnd its height and channels (a signer: its state)."""
        result: dict[str, Any] = {
            "state_dir": self.state_dir,
            "mode": self.mode,
            "btcd": {},
            "nodes": {},
        }
        btcd_up = _running(self.btcd.process)
        result["btcd"] = {"pid": self.btcd.process.pid, "running": btcd_up}
        if btcd_up:
            result["btcd"]["block_height"] = _or_error(self.block_height)
        for name, node in self.nodes.items():
            entry: dict[str, Any] = {
                "role": node.role,
                "pid": node.process.pid,
                "running": _running(node.process),
                "rpc_host": node.rpc_host,
                "rest_url": node.rest_url or None,
                "pubkey": node.pubkey,
            }
            if node.role == ROLE_WATCH_ONLY:
                signer = self.nodes[node.signer]
                entry["signer"] = {
                    "node": node.signer,
                    "rpc_host": signer.rpc_host,
                    "running": _running(signer.process),
                    **_isolation(signer),
                }
            if node.role == ROLE_SIGNER:
                entry.update(_isolation(node))
                entry["signs_for"] = self.watch_only_nodes(name)
            if entry["running"]:
                summary = _signer_summary if node.role == ROLE_SIGNER else _info_summary
                entry["info"] = _or_error(functools.partial(summary, self, name))
            result["nodes"][name] = entry
        return result


def _isolation(signer: Lnd) -> dict[str, Any]:
    return {"isolation": signer.isolation or "loopback", "netns": signer.netns or None}


def _signer_summary(network: Network, name: str) -> dict[str, Any]:
    return {"state": network.lnd_state(name)}


def _info_summary(network: Network, name: str) -> dict[str, Any]:
    info = network.rest(name, "GET", "/v1/getinfo", timeout_s=10)
    return {
        key: info.get(key)
        for key in (
            "block_height",
            "synced_to_chain",
            "synced_to_graph",
            "num_active_channels",
            "num_peers",
        )
    }


def _or_error(call: Callable[[], T]) -> T | str:
    try:
        return call()
    except (httpx.HTTPError, OSError, subprocess.TimeoutExpired, RegtestError) as exc:
        return f"error: {exc}"


def _json_loads(text: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise RegtestError(f"expected a JSON object, got {text[:200]}")
    return value


def _tls_context(cert: str) -> ssl.SSLContext:
    # The daemons' certs are self-signed and name 127.0.0.1, so pinning the cert as the
    # only CA keeps full verification, hostname included.
    return ssl.create_default_context(cafile=cert)


@contextlib.contextmanager
def _lnd_client(node: Lnd, macaroon: Path | None, timeout_s: float) -> Iterator[httpx.Client]:
    mac_hex = Path(macaroon or node.admin_macaroon).read_bytes().hex()
    with httpx.Client(
        base_url=node.rest_url,
        verify=_tls_context(node.tls_cert),
        headers={"Grpc-Metadata-macaroon": mac_hex},
        timeout=timeout_s,
    ) as client:
        yield client


# ---------------------------------------------------------------------------
# Command lines


def _btcd_args(btcd: Btcd) -> list[str]:
    args = [
        "--regtest",
        "--txindex",
        "--nobanning",
        "--nostalldetect",
        f"--datadir={btcd.datadir}",
        f"--logdir={Path(btcd.datadir) / 'logs'}",
        f"--listen={btcd.p2p_host}",
        f"--rpclisten={btcd.rpc_host}",
        f"--rpcuser={btcd.rpc_user}",
        f"--rpcpass={btcd.rpc_pass}",
        # btcd writes a self-signed pair here on its first start; lnd pins the cert.
        f"--rpccert={btcd.rpc_cert}",
        f"--rpckey={btcd.rpc_key}",
        # Each lnd holds several websocket clients (wallet, notifier, fee estimator).
        "--rpcmaxclients=100",
        "--rpcmaxwebsockets=100",
        "--debuglevel=info",
    ]
    if btcd.mining_address:
        args.append(f"--miningaddr={btcd.mining_address}")
    return args


def _lnd_args(node: Lnd, btcd: Btcd) -> list[str]:
    if node.role == ROLE_SIGNER:
        return _signer_args(node)
    args = [
        f"--lnddir={node.lnddir}",
        f"--alias={node.name}",
        f"--listen={node.p2p_host}",
        f"--rpclisten={node.rpc_host}",
        f"--restlisten={node.rest_url.removeprefix('https://')}",
        "--bitcoin.regtest",
        "--bitcoin.node=btcd",
        f"--btcd.rpchost={btcd.rpc_host}",
        f"--btcd.rpcuser={btcd.rpc_user}",
        f"--btcd.rpcpass={btcd.rpc_pass}",
        f"--btcd.rpccert={btcd.rpc_cert}",
        "--nobootstrap",
        "--bitcoin.defaultchanconfs=1",
        # Fast gossip, so a new channel reaches bob's graph in well under a second.
        "--trickledelay=50",
        "--gossip.sub-batch-delay=5ms",
        "--accept-keysend",
        "--debuglevel=info",
    ]
    if node.role == ROLE_WATCH_ONLY:
        return args + _watch_only_args(node)
    # A wallet with a random seed, unlocked on start: a throwaway test network.
    return [*args, "--noseedbackup"]


# lnd checks that it can reach the signer every `interval` and shuts the watch-only node
# down after `attempts` failed checks `backoff` apart (its default: one failed check). Five
# rides out a signer restart of about two minutes; anything that must be signed meanwhile
# (a payment, an incoming HTLC, a peer's handshake) shuts it down at once regardless.
SIGNER_HEALTHCHECK_ARGS = (
    "--healthcheck.remotesigner.interval=1m",
    "--healthcheck.remotesigner.attempts=5",
    "--healthcheck.remotesigner.backoff=30s",
    "--healthcheck.remotesigner.timeout=5s",
)


def _watch_only_args(node: Lnd) -> list[str]:
    return [
        "--remotesigner.enable",
        f"--remotesigner.rpchost={node.signer_rpc_host}",
        f"--remotesigner.tlscertpath={node.signer_tls_cert}",
        f"--remotesigner.macaroonpath={node.signer_macaroon}",
        "--remotesigner.timeout=5s",
        *SIGNER_HEALTHCHECK_ARGS,
        # No --noseedbackup: the wallet is created watch-only from the signer's xpubs
        # (`lngate.regtest.remote_signer.init_watch_only`); lnd waits for that on the first
        # start and unlocks it from this file on every later one.
        f"--wallet-unlock-password-file={node.wallet_password_file}",
        "--wallet-unlock-allow-create",
    ]


def _signer_args(node: Lnd) -> list[str]:
    """lnd's hardening for a signer (docs/remote-signing.md): no peer-to-peer listener, no
    bootstrap, no chain backend; and here no REST either: one gRPC port, nothing else."""
    host = node.rpc_host.rsplit(":", 1)[0]
    return [
        f"--lnddir={node.lnddir}",
        f"--alias={node.name}",
        "--nolisten",
        "--norest",
        "--nobootstrap",
        f"--rpclisten={node.rpc_host}",
        f"--tlsextraip={host}",
        "--bitcoin.regtest",
        "--bitcoin.node=nochainbackend",
        # The seed: random, kept in this node's wallet only (a throwaway test network).
        "--noseedbackup",
        "--debuglevel=info",
    ]
