"""Starting and stopping a real ``lngate serve``: it stops within seconds of SIGTERM or SIGINT
with live event streams and half-sent requests open, and a port it cannot have is one line on
stderr, not a traceback. The same for the supervisor of ``lngate serve --processes N``."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from lngate.client import signed_headers
from tests.conftest import free_port
from tests.e2e.test_scale_out import Cluster, _children
from tests.e2e.test_scale_out import cluster as cluster  # the fixture: PostgreSQL, a data dir

STOP_WITHIN_S = 10.0
START_TIMEOUT_S = 30.0


@dataclass
class Serve:
    """``lngate serve`` with its stdout and stderr in files of their own."""

    proc: subprocess.Popen[bytes]
    port: int
    stderr_path: Path

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1).is_success:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"no lngate on port {self.port}:\n{self.stderr}")

    def stop_within(self, sig: signal.Signals, timeout_s: float = STOP_WITHIN_S) -> float:
        """Send ``sig``; the exit code once it exits, or a failure after ``timeout_s``."""
        started = time.monotonic()
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            pytest.fail(f"lngate serve still running {timeout_s:.0f}s after {sig.name}")
        assert code == 0, self.stderr
        return time.monotonic() - started


@contextmanager
def serve(tmp_path: Path, env: dict[str, str], *args: str) -> Iterator[Serve]:
    port = int(args[args.index("--port") + 1])
    stderr_path = tmp_path / f"serve-{port}.stderr"
    with (tmp_path / f"serve-{port}.stdout").open("wb") as out, stderr_path.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lngate.cli", "serve", *args], env=env, stdout=out, stderr=err
        )
    try:
        yield Serve(proc, port, stderr_path)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lngate.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """One process on SQLite in a fresh data directory."""
    env = {**os.environ, "LNGATE_DATA_DIR": str(tmp_path / "lngate-data")}
    for name in ("LNGATE_DATABASE_URL", "LNGATE_CONFIG", "LNGATE_CRASHPOINTS"):
        env.pop(name, None)
    return env


# -- what a client leaves open ---------------------------------------------------------------


def _request_head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [
        f"{method} {path} HTTP/1.1",
        "Host: 127.0.0.1",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _read_until(sock: socket.socket, marker: bytes) -> bytes:
    received = b""
    while marker not in received:
        chunk = sock.recv(4096)
        assert chunk, f"connection closed before {marker!r}: {received!r}"
        received += chunk
    return received


def open_event_stream(port: int, creds: dict[str, str]) -> socket.socket:
    """``GET /v1/events``, signed, read up to the stream's first comment and left open."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=STOP_WITHIN_S)
    headers = signed_headers(creds["api_key"], creds["api_secret"], "GET", "/v1/events")
    sock.sendall(_request_head("GET", "/v1/events", headers))
    head = _read_until(sock, b": lngate events")
    assert head.startswith(b"HTTP/1.1 200"), head
    return sock


def open_half_sent_body(port: int, creds: dict[str, str]) -> socket.socket:
    """A signed ``POST /v1/transfers`` announcing 1000 body bytes, of which it sends 10."""
    body = json.dumps({"to": "bob", "amount_msat": 1000, "pad": "x" * 1000}).encode()[:1000]
    headers = {
        **signed_headers(creds["api_key"], creds["api_secret"], "POST", "/v1/transfers", body),
        "Content-Type": "application/json",
        "Idempotency-Key": "half-sent",
        "Content-Length": "1000",
    }
    sock = socket.create_connection(("127.0.0.1", port), timeout=STOP_WITHIN_S)
    sock.sendall(_request_head("POST", "/v1/transfers", headers) + body[:10])
    return sock


def open_half_request_line(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=STOP_WITHIN_S)
    sock.sendall(b"GET /v1/acc")
    return sock


@dataclass
class Open:
    streams: list[socket.socket]
    half_sent: list[socket.socket]


@contextmanager
def open_connections(port: int, creds: dict[str, str]) -> Iterator[Open]:
    """Three event streams, two requests with part of their body, one with half a request line."""
    with ExitStack() as stack:
        streams = [stack.enter_context(open_event_stream(port, creds)) for _ in range(3)]
        half_sent = [stack.enter_context(open_half_sent_body(port, creds)) for _ in range(2)]
        stack.enter_context(open_half_request_line(port))
        time.sleep(0.5)  # the server has read what was sent, and waits for the rest
        yield Open(streams, half_sent)


def read_to_end(sock: socket.socket) -> bytes:
    received = b""
    while chunk := sock.recv(4096):
        received += chunk
    return received


def assert_ended(connections: Open) -> None:
    """The server ended each event stream (with the last chunk of a chunked body) and
    answered each request it was still waiting for, before it hung up."""
    for stream in connections.streams:
        received = read_to_end(stream)
        assert received.endswith(b"0\r\n\r\n"), received
    for sock in connections.half_sent:
        received = read_to_end(sock)
        assert received.startswith(b"HTTP/1.1 503 "), received
        assert b"SHUTTING_DOWN" in received, received


def assert_clean(stderr: str) -> None:
    assert "Traceback" not in stderr, stderr
    assert "Exception in ASGI application" not in stderr, stderr
    assert "timeout graceful shutdown exceeded" not in stderr, stderr  # nothing was cancelled


# -- one process -----------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_serve_stops_within_seconds_with_streams_and_half_sent_requests_open(
    tmp_path: Path, env: dict[str, str], sig: signal.Signals
) -> None:
    port, admin_port = free_port(), free_port()
    with serve(tmp_path, env, "--port", str(port), "--admin-port", str(admin_port)) as server:
        server.wait_healthy()
        alice = cli(env, "user", "create", "alice")
        assert alice.returncode == 0, alice.stderr
        assert cli(env, "user", "create", "bob").returncode == 0
        creds = json.loads(alice.stdout)
        with open_connections(port, creds) as connections:
            server.stop_within(sig)
            assert_ended(connections)
        assert_clean(server.stderr)


@pytest.mark.parametrize("listener", ["public", "admin"])
def test_a_port_in_use_is_one_line_on_stderr(
    tmp_path: Path, env: dict[str, str], listener: str
) -> None:
    port, admin_port = free_port(), free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port if listener == "public" else admin_port))
        taken.listen()
        done = cli(env, "serve", "--port", str(port), "--admin-port", str(admin_port))
    assert_one_line_about(done, port if listener == "public" else admin_port)


def assert_one_line_about(done: subprocess.CompletedProcess[str], port: int) -> None:
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert f"127.0.0.1:{port}" in lines[0] and "in use" in lines[0], lines[0]
    assert "Traceback" not in done.stderr


# -- the supervisor of --processes N ---------------------------------------------------------


@pytest.mark.postgres
def test_serve_processes_stops_every_child_within_seconds_of_sigterm(cluster: Cluster) -> None:
    creds = cluster.user("alice", 10_000)
    cluster.user("bob")
    port = free_port()
    args = ("--processes", "2", "--worker-processes", "1", "--port", str(port))
    with serve(cluster.tmp, cluster.env, *args, "--admin-port", str(free_port())) as server:
        server.wait_healthy()
        deadline = time.monotonic() + START_TIMEOUT_S
        while len(children := _children(server.proc.pid)) < 3:
            assert time.monotonic() < deadline, server.stderr
            time.sleep(0.1)
        with open_connections(port, creds) as connections:
            server.stop_within(signal.SIGTERM)
            assert_ended(connections)
        assert all(not Path(f"/proc/{pid}").exists() for pid in children)
        assert_clean(server.stderr)


@pytest.mark.postgres
@pytest.mark.parametrize("listener", ["public", "admin"])
def test_serve_processes_with_a_port_in_use_is_one_line_on_stderr(
    cluster: Cluster, listener: str
) -> None:
    port, admin_port = free_port(), free_port()
    args = ["--processes", "2", "--port", str(port), "--admin-port", str(admin_port)]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port if listener == "public" else admin_port))
        taken.listen()
        started = time.monotonic()
        done = cli(cluster.env, "serve", *args)
    assert time.monotonic() - started < STOP_WITHIN_S  # not children restarted for ever
    assert_one_line_about(done, port if listener == "public" else admin_port)
