"""The regtest network's processes: errors, waiting with deadlines, starting and stopping
daemons by PID (`lngate.regtest.network` describes the network and uses these)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx

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


class LncliError(RegtestError):
    """An ``lncli`` call (gRPC) exited non-zero; ``output`` is what it printed."""

    def __init__(self, node: str, args: list[str], output: str) -> None:
        super().__init__(f"{node}: lncli {' '.join(args)} failed: {output[:500]}")
        self.output = output


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
        except (
            httpx.HTTPError,
            OSError,
            subprocess.TimeoutExpired,
            LndRestError,
            LncliError,
            ValueError,
            KeyError,
        ) as exc:
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
    # Run exe under this command (``ip netns exec NS``), which execs it in place: the PID
    # is then exe's own, as `_is_ours` expects.
    wrapper: list[str] = field(default_factory=list)


def _spawn(proc: Process) -> None:
    _reap_exited()
    with open(proc.log, "ab") as log:
        # A new session: the daemons outlive a `lngate regtest up` that returns,
        # and a Ctrl-C in that terminal does not reach them.
        popen = subprocess.Popen(
            [*proc.wrapper, proc.exe, *proc.args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _CHILDREN[popen.pid] = popen
    proc.pid = popen.pid


def _reap_exited() -> None:
    """Forget (and reap) the children that exited by themselves, as a watch-only lnd does when
    its signer goes away: a node started again has a new PID, and the old Popen would otherwise
    stay a zombie until Python warns about it at exit."""
    for pid, popen in list(_CHILDREN.items()):
        if popen.poll() is not None:
            del _CHILDREN[pid]


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
