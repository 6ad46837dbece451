"""``lngate serve --processes N``: N API processes sharing one port and M worker processes,
all over one PostgreSQL, started and watched by one supervisor process.

Every child is an ordinary lngate process: an API child is ``lngate serve --no-workers
--reuse-port`` (the kernel spreads connections over the processes bound with SO_REUSEPORT), a
worker child is ``lngate worker``. They share nothing but the database (and the data
directory's server key and simnet state), so the same layout can be run by hand or by a
service manager across hosts; the supervisor only saves writing that down. Only the first API
child serves the admin listener: it is one port, for operators.

The supervisor restarts a child that dies (with a bounded backoff), and on SIGTERM or SIGINT
stops them all: SIGTERM first, SIGKILL for any still running after ``STOP_GRACE_S``.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from types import FrameType

from lngate.config import Config
from lngate.store.db import DatabaseUrl, Dialect

log = logging.getLogger(__name__)

MAX_API_PROCESSES = 64
MAX_WORKER_PROCESSES = 16
STOP_GRACE_S = 8.0  # a child's own grace (lngate.server.SHUTDOWN_GRACE_S) and its stop
LISTEN_BACKLOG = 2048
POLL_S = 0.2
RESTART_DELAY_MIN_S = 1.0
RESTART_DELAY_MAX_S = 30.0
HEALTHY_AFTER_S = 60.0  # a child that lived this long restarts at once if it dies


def listen_or_exit(host: str, port: int, *, reuse_port: bool = False) -> list[socket.socket]:
    """Listening sockets on ``host:port``, one for each address it names (as asyncio binds).
    ``reuse_port``: with SO_REUSEPORT, so that other processes may bind the port too.

    A port that cannot be had (in use, an address this host does not have) is ``SystemExit``
    with one line for the operator, ``lngate: cannot listen on 127.0.0.1:8000: address already
    in use``, not uvicorn's traceback from inside a running server.
    """
    bound: list[socket.socket] = []
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            bound.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(LISTEN_BACKLOG)
    except OSError as exc:
        for sock in bound:
            sock.close()
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        reason = exc.strerror or str(exc)
        raise SystemExit(
            f"lngate: cannot listen on {where}: {reason[:1].lower()}{reason[1:]}"
        ) from None
    return bound


@dataclass(frozen=True, slots=True)
class ClusterPlan:
    api_processes: int
    worker_processes: int

    def __post_init__(self) -> None:
        if not 1 <= self.api_processes <= MAX_API_PROCESSES:
            raise ValueError(f"--processes must be between 1 and {MAX_API_PROCESSES}")
        if not 0 <= self.worker_processes <= MAX_WORKER_PROCESSES:
            raise ValueError(f"--worker-processes must be between 0 and {MAX_WORKER_PROCESSES}")


def check_database(config: Config) -> None:
    """Several processes need a database they can share: PostgreSQL."""
    if DatabaseUrl.parse(config.effective_database_url).dialect is not Dialect.POSTGRES:
        raise ValueError(
            "several processes need PostgreSQL (set LNGATE_DATABASE_URL): SQLite is served "
            "by one process, and its replay guard lives in that process's memory"
        )


def child_commands(config: Config, plan: ClusterPlan) -> list[tuple[str, list[str]]]:
    """(name, argv) of every child, API processes first."""
    lngate = [sys.executable, "-m", "lngate.cli"]
    children = []
    for i in range(plan.api_processes):
        admin_port = config.admin_port if i == 0 else 0
        argv = [
            *lngate,
            "serve",
            "--host",
            config.host,
            "--port",
            str(config.port),
            "--admin-port",
            str(admin_port),
            "--reuse-port",
            "--no-workers",
        ]
        children.append((f"api-{i}", argv))
    for i in range(plan.worker_processes):
        children.append((f"worker-{i}", [*lngate, "worker"]))
    return children


@dataclass
class _Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restart_delay_s: float = RESTART_DELAY_MIN_S
    restart_at: float = 0.0

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv)
        self.started_at = time.monotonic()
        log.info("started %s (pid %d)", self.name, self.proc.pid)


@dataclass
class Supervisor:
    children: list[_Child]
    stopping: bool = False
    _signals: list[int] = field(default_factory=list)

    def run(self) -> int:
        for child in self.children:
            child.start()
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            while not self.stopping:
                self._watch()
                time.sleep(POLL_S)
        finally:
            self._stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 0

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._signals.append(signum)
        self.stopping = True

    def _watch(self) -> None:
        now = time.monotonic()
        for child in self.children:
            if child.proc is not None and child.proc.poll() is not None:
                lived_s = now - child.started_at
                if lived_s >= HEALTHY_AFTER_S:
                    child.restart_delay_s = RESTART_DELAY_MIN_S
                log.warning(
                    "%s exited with %s after %.0fs; restarting in %.0fs",
                    child.name,
                    child.proc.returncode,
                    lived_s,
                    child.restart_delay_s,
                )
                child.proc = None
                child.restart_at = now + child.restart_delay_s
                child.restart_delay_s = min(2 * child.restart_delay_s, RESTART_DELAY_MAX_S)
            elif child.proc is None and now >= child.restart_at:
                child.start()

    def _stop_all(self) -> None:
        running = [c.proc for c in self.children if c.proc is not None]
        for proc in running:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for proc in running:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("pid %d did not stop in %.0fs: killing it", proc.pid, STOP_GRACE_S)
                proc.kill()
                proc.wait()


def prepare_cluster(config: Config) -> None:
    """What must happen once, before the children start: check the database is migrated, create
    the server key, and audit a configuration change (once, not once per child)."""
    from lngate.bootstrap import open_core
    from lngate.services.config_audit import ConfigAudit

    _require_migrated(config)
    core = open_core(config)
    try:
        ConfigAudit(core.uow, core.config).record_change_sync()
    finally:
        core.close()


def _require_migrated(config: Config) -> None:
    import psycopg

    from lngate.store.db import Database
    from lngate.store.migrate import available_migrations, current_version

    db = Database(config.effective_database_url)
    try:
        latest = available_migrations(db.dialect)[-1][0]
        try:
            version = current_version(db)
        except psycopg.errors.UndefinedTable:
            version = 0
    finally:
        db.close()
    if version < latest:
        raise ValueError(
            f"the database is at schema version {version}, not {latest}: run `lngate migrate`"
        )


def check_ports(config: Config) -> None:
    """The ports are free (or shared with SO_REUSEPORT) before any child starts: a port in use
    is one line and an exit, not children that fail and are restarted for ever."""
    ports = [(config.host, config.port, True)]
    if config.admin_port:
        ports.append((config.admin_host, config.admin_port, False))
    for host, port, reuse_port in ports:
        for sock in listen_or_exit(host, port, reuse_port=reuse_port):
            sock.close()


def run_cluster(config: Config, plan: ClusterPlan) -> int:
    check_database(config)
    check_ports(config)
    prepare_cluster(config)
    children = [_Child(name, argv) for name, argv in child_commands(config, plan)]
    log.info(
        "lngate: %d API processes on http://%s:%d, %d worker processes",
        plan.api_processes,
        config.host,
        config.port,
        plan.worker_processes,
    )
    return Supervisor(children).run()
