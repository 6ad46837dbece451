"""A real regtest Lightning network: one btcd and three lnd nodes on loopback.

The nodes are ``exchange`` (the node lngate drives), ``alice`` (a routing node) and
``bob`` (a customer's wallet). `up` leaves them with two public channels,
exchange <-> alice and alice <-> bob, each with liquidity on both sides, so that bob
can pay exchange through alice and exchange can pay bob.

Every process binds to 127.0.0.1 only. Every wait polls a condition with a deadline;
nothing sleeps for a fixed time hoping a thing is ready.

State directory layout (``down`` removes all of it but ``logs/`` when asked to keep it)::

    network.json        every detail a test needs (see `Network`)
    lngate.toml         config for lngate, pointing at the exchange node
    run/btcd/           btcd data dir and its RPC TLS cert and key
    run/<node>/         lnd's --lnddir for exchange, alice and bob
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
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import functools
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

NODE_NAMES = ("exchange", "alice", "bob")

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
STOP_TIMEOUT_S = 30.0
POLL_INTERVAL_S = 0.1

T = TypeVar("T")


class RegtestError(RuntimeError):
    """The regtest network could not be started, reached or stopped."""


class LndRestError(RegtestError):
    """An lnd REST call answered with a non-2xx status."""

    def __init__(self, node: str, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{node}: {method} {path} -> HTTP {status}: {body[:500]}")
        self.status = status
        self.body = body


# ---------------------------------------------------------------------------
# Waiting


def wait_until(
    what: str,
    check: Callable[[], T | None],
    timeout_s: float,
    *,
    interval_s: float = POLL_INTERVAL_S,
    alive: Callable[[], None] | None = None,
) -> T:
    """Poll ``check`` until it returns something other than None, or fail at the deadline.

    ``check`` may raise: connection errors while a daemon starts are expected, so the
    last exception is kept for the timeout message instead of ending the wait.
    ``alive`` is called on every round so that a crashed process fails the wait at
    once instead of at the deadline.
    """
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while True:
        if alive is not None:
            alive()
        try:
            result = check()
        except (httpx.HTTPError, OSError, LndRestError, ValueError, KeyError) as exc:
            last_error = exc
        else:
            if result is not None:
                return result
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise RegtestError(f"timed out after {timeout_s:.0f}s waiting for {what}{detail}")
        time.sleep(interval_s)


# ---------------------------------------------------------------------------
# Processes

# Popen objects of the processes started by this Python process. Keeping them lets
# `_stop` reap its own children (no zombies) and stops Python warning about a Popen
# collected while its process runs; processes started by another process (say, a
# `lngate regtest up` before) are stopped by PID alone.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@dataclass
class Process:
    """A daemon this module started: enough to check it, stop it and start it again."""

    name: str
    exe: str
    args: list[str]
    log: str
    pid: int = 0


def _spawn(proc: Process) -> None:
    with open(proc.log, "ab") as log:
        # A new session: the daemons outlive a `lngate regtest up` that returns,
        # and a Ctrl-C in that terminal does not reach them.
        popen = subprocess.Popen(
            [proc.exe, *proc.args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _CHILDREN[popen.pid] = popen
    proc.pid = popen.pid


def _is_ours(proc: Process) -> bool:
    """True when proc.pid still runs proc.exe (a PID from an old network.json may be reused)."""
    if proc.pid <= 0:
        return False
    try:
        exe = os.readlink(f"/proc/{proc.pid}/exe")
    except OSError:
        return False
    # A rebuilt binary shows as "<path> (deleted)" in a process started before.
    return exe == proc.exe or exe.startswith(proc.exe + " ")


def _running(proc: Process) -> bool:
    popen = _CHILDREN.get(proc.pid)
    if popen is not None:
        return popen.poll() is None
    return _is_ours(proc)


def _check_running(proc: Process) -> None:
    if not _running(proc):
        raise RegtestError(f"{proc.name} (pid {proc.pid}) exited; log tail:\n{_log_tail(proc)}")


def _log_tail(proc: Process, lines: int = 30) -> str:
    try:
        text = Path(proc.log).read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _signal(proc: Process, sig: signal.Signals) -> None:
    if _running(proc):
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, sig)


def _wait_exit(proc: Process, timeout_s: float) -> bool:
    popen = _CHILDREN.get(proc.pid)
    if popen is not None:
        try:
            popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return False
        del _CHILDREN[proc.pid]
        return True
    try:
        wait_until(
            f"{proc.name} to exit",
            lambda: True if not _is_ours(proc) else None,
            timeout_s,
        )
    except RegtestError:
        return False
    return True


def _stop(procs: list[Process], timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM all of ``procs`` at once, then SIGKILL whichever outlives the deadline."""
    for proc in procs:
        _signal(proc, signal.SIGTERM)
    for proc in procs:
        if not _wait_exit(proc, timeout_s):
            _signal(proc, signal.SIGKILL)
            _wait_exit(proc, 5.0)
        proc.pid = 0


# ---------------------------------------------------------------------------
# Network description


def _free_ports(count: int) -> list[int]:
    """Ports the kernel hands out as free on 127.0.0.1, all held open until all are chosen."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for sock in socks:
            sock.close()


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
    name: str
    lnddir: str
    rest_url: str
    rpc_host: str
    p2p_host: str
    tls_cert: str
    admin_macaroon: str
    process: Process
    pubkey: str = ""


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
        with _lnd_client(node, macaroon, timeout_s) as client:
            resp = client.request(method, path, json=json, params=params)
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

    def lnd_state(self, node_name: str) -> str:
        # GET /v1/state needs no macaroon: it answers before the wallet even exists.
        node = self.nodes[node_name]
        with httpx.Client(
            base_url=node.rest_url, verify=_tls_context(node.tls_cert), timeout=10
        ) as client:
            resp = client.get("/v1/state")
        resp.raise_for_status()
        return str(resp.json()["state"])

    def wait_lnd_state(self, node_name: str, states: tuple[str, ...]) -> None:
        node = self.nodes[node_name]

        def reached() -> bool | None:
            if not Path(node.tls_cert).exists():
                return None
            return True if self.lnd_state(node_name) in states else None

        wait_until(
            f"{node_name} to reach {'/'.join(states)}",
            reached,
            PROCESS_START_TIMEOUT_S,
            interval_s=0.25,
            alive=lambda: _check_running(node.process),
        )
        # The admin macaroon is written when the wallet is created, before RPC_ACTIVE.
        wait_until(
            f"{node_name}'s admin.macaroon",
            lambda: True if Path(node.admin_macaroon).exists() else None,
            10,
        )

    def running_nodes(self) -> list[str]:
        return [name for name, node in self.nodes.items() if _running(node.process)]

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
        """Start one lnd and wait for SERVER_ACTIVE."""
        self.start_lnd_process(name)
        self.wait_lnd_state(name, ("SERVER_ACTIVE",))

    def restart_lnd(self, name: str, *, wait_channels: bool = True) -> None:
        """Stop one lnd and start it again on the same data dir and ports.

        Waits for SERVER_ACTIVE, for the chain tip, and (by default) until its channels
        are active again, which needs its peers to reconnect.
        """
        node = self.nodes[name]
        channels = 0
        if wait_channels:
            listed = self.rest(name, "GET", "/v1/channels")
            channels = len(listed.get("channels", []))
        _stop([node.process])
        self.save()
        self.start_lnd(name)
        self.wait_synced([name])
        if channels:
            self.wait_active_channels(name, channels)

    # -- summaries ----------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Liveness of every process, and for each running lnd its height and channels."""
        result: dict[str, Any] = {"state_dir": self.state_dir, "btcd": {}, "nodes": {}}
        btcd_up = _running(self.btcd.process)
        result["btcd"] = {"pid": self.btcd.process.pid, "running": btcd_up}
        if btcd_up:
            result["btcd"]["block_height"] = _or_error(self.block_height)
        for name, node in self.nodes.items():
            entry: dict[str, Any] = {
                "pid": node.process.pid,
                "running": _running(node.process),
                "rest_url": node.rest_url,
                "pubkey": node.pubkey,
            }
            if entry["running"]:
                entry["info"] = _or_error(functools.partial(_info_summary, self, name))
            result["nodes"][name] = entry
        return result


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
    except (httpx.HTTPError, OSError, RegtestError) as exc:
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
# Building the description


def _describe(state_dir: Path, bin_dir: Path) -> Network:
    run = state_dir / "run"
    logs = state_dir / "logs"
    ports = iter(_free_ports(2 + 3 * len(NODE_NAMES)))
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
    network = Network(state_dir=str(state_dir), bin_dir=str(bin_dir), btcd=btcd, nodes=nodes)
    for node in nodes.values():
        node.process.args = _lnd_args(node, btcd)
    btcd.process.args = _btcd_args(btcd)
    return network


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
    return [
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
        # A wallet with a random seed, unlocked on start: a throwaway test network.
        "--noseedbackup",
        "--nobootstrap",
        "--bitcoin.defaultchanconfs=1",
        # Fast gossip, so a new channel reaches bob's graph in well under a second.
        "--trickledelay=50",
        "--gossip.sub-batch-delay=5ms",
        "--accept-keysend",
        "--debuglevel=info",
    ]


# ---------------------------------------------------------------------------
# Bringing the network up


def _start_btcd(network: Network) -> None:
    btcd = network.btcd
    btcd.process.args = _btcd_args(btcd)
    _spawn(btcd.process)
    network.save()
    wait_until(
        "btcd's RPC",
        lambda: network.block_height() if Path(btcd.rpc_cert).exists() else None,
        PROCESS_START_TIMEOUT_S,
        interval_s=0.2,
        alive=lambda: _check_running(btcd.process),
    )


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
    _start_btcd(network)
    network.start_lnd_process("exchange")
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
    node = network.nodes["exchange"]
    cmd = [
        str(Path(network.bin_dir) / "lncli"),
        "--network=regtest",
        f"--rpcserver={node.rpc_host}",
        f"--tlscertpath={node.tls_cert}",
        f"--macaroonpath={node.admin_macaroon}",
        "bakemacaroon",
        f"--save_to={path}",
        *permissions,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise RegtestError(f"lncli bakemacaroon failed: {done.stderr or done.stdout}")
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
    path = Path(network.state_dir) / "lngate.toml"
    path.write_text(text)
    network.lngate_toml = str(path)


def _start_chain(network: Network) -> None:
    network.btcd.mining_address = _get_mining_address(network)
    _start_btcd(network)
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


def up(state_dir: Path, bin_dir: Path) -> dict[str, Any]:
    """Start btcd and the three lnd nodes, fund them, open channels; return network.json.

    On failure everything started is stopped again (logs kept) before the error is raised.
    """
    began = time.monotonic()
    state_dir = Path(state_dir).resolve()
    if (state_dir / "network.json").exists():
        raise RegtestError(f"a regtest network is already described in {state_dir}; run down")
    for sub in ("run/btcd", "logs"):
        (state_dir / sub).mkdir(parents=True, exist_ok=True)
    network = _describe(state_dir, Path(bin_dir).resolve())
    network.save()
    try:
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
    """Stop every process of the network by PID and remove its state.

    Returns False when there was no network.json (nothing to do). With ``keep_logs``
    the ``logs/`` directory stays for a post-mortem.
    """
    state_dir = Path(state_dir)
    try:
        network = Network.load(state_dir)
    except RegtestError:
        return False
    lnds = [node.process for node in network.nodes.values()]
    # lnd first: it may exit with an error if btcd vanishes under it.
    _stop(lnds)
    _stop([network.btcd.process])
    shutil.rmtree(state_dir / "run", ignore_errors=True)
    for name in ("network.json", "lngate.toml", "network.json.tmp"):
        (state_dir / name).unlink(missing_ok=True)
    if not keep_logs:
        shutil.rmtree(state_dir / "logs", ignore_errors=True)
        with contextlib.suppress(OSError):
            state_dir.rmdir()  # only if nothing else lives there
    return True


def status(state_dir: Path) -> dict[str, Any]:
    """The network's processes and, for running nodes, height, sync and channel counts."""
    return Network.load(Path(state_dir)).status()
