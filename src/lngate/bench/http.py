"""Internal transfers through the HTTP API, driven by wrk against a real ``lngate serve``.

A Python client tops out near 500 requests/s here (NOTES.md), so wrk drives the server. wrk's
Lua has no HMAC, so requests are signed beforehand: each carries a unique memo (hence a unique
signature) and the benchmark server gets a wide receive window. Nothing else differs from
production: same server, same signature check, same replay guard, same group-commit writer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from lngate.bench.stats import Result
from lngate.client import signed_headers

WRK_SCRIPT = r"""
local requests = {}
local n, i = 0, 0
local path = os.getenv("LNGATE_BENCH_PATH") or "/v1/transfers"
local thread_counter = 0
function setup(thread)
  thread:set("file", string.format("%s.%d", os.getenv("LNGATE_BENCH_REQUESTS"), thread_counter))
  thread_counter = thread_counter + 1
end
function init(args)
  for line in io.lines(file) do
    local key, ts, sig, idem, body = line:match("^(.-)\t(.-)\t(.-)\t(.-)\t(.*)$")
    n = n + 1
    requests[n] = wrk.format("POST", path, {
      ["Content-Type"] = "application/json", ["X-Lngate-Key"] = key,
      ["X-Lngate-Timestamp"] = ts, ["X-Lngate-Signature"] = sig, ["Idempotency-Key"] = idem,
    }, body)
  end
end
function request()
  i = i + 1
  if i > n then i = 1 end
  return requests[i]
end
function done(summary, latency, requests)
  io.stderr:write(string.format(
    '{"requests": %d, "seconds": %f, "p50_us": %d, "p99_us": %d, "status_errors": %d, ' ..
    '"socket_errors": %d}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50), latency:percentile(99),
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout))
end
"""


def write_presigned(path: Path, creds: list[dict[str, str]], per_thread: int, threads: int) -> None:
    stamp = 0
    stamp_ms = int(time.time() * 1000)
    for t in range(threads):
        with open(f"{path}.{t}", "w") as fh:
            for i in range(per_thread):
                stamp += 1
                sender = creds[(t * per_thread + i) % len(creds)]
                recipient = creds[(t * per_thread + i + 1) % len(creds)]["username"]
                body = json.dumps({"to": recipient, "amount_msat": 1000, "memo": f"b{stamp}"})
                # pre-signed: one fixed timestamp (the benchmark server's window is wide)
                h = signed_headers(
                    sender["api_key"],
                    sender["api_secret"],
                    "POST",
                    "/v1/transfers",
                    body.encode(),
                    timestamp_ms=stamp_ms,
                )
                fh.write(
                    "\t".join(
                        [
                            sender["api_key"],
                            h["X-Lngate-Timestamp"],
                            h["X-Lngate-Signature"],
                            f"k{stamp}",
                            body,
                        ]
                    )
                    + "\n"
                )


def wait_for_server(url: str, deadline_s: float = 30) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"lngate serve did not answer at {url}")


def run_wrk(
    url: str, requests_file: Path, concurrency: int, duration_s: int, path: str = "/v1/transfers"
) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT)
    threads = min(2, concurrency)
    proc = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{concurrency}",
            f"-d{duration_s}s",
            "--timeout",
            "10s",
            "-s",
            script.name,
            url,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "LNGATE_BENCH_REQUESTS": str(requests_file), "LNGATE_BENCH_PATH": path},
        check=True,
    )
    os.unlink(script.name)
    line = [ln for ln in proc.stderr.splitlines() if ln.startswith("{")][-1]
    return dict(json.loads(line))


def presign(
    creds: list[dict[str, str]], *, concurrency: int, duration_s: int, workdir: Path, tag: str
) -> Path:
    """Enough unique signed requests that none repeats within the run (a repeat is a replay)."""
    threads = min(2, concurrency)
    per_thread = max(2_000, 6_000 * duration_s // threads)
    requests_file = workdir / f"presigned-{tag}-{concurrency}"
    write_presigned(requests_file, creds, per_thread, threads)
    return requests_file


def http_result(
    database: str, concurrency: int, stats: dict[str, float], name: str = "transfers, HTTP API"
) -> Result:
    errors = int(stats["status_errors"] + stats["socket_errors"])
    return Result(
        name,
        database,
        concurrency,
        int(stats["requests"]) - errors,
        stats["seconds"],
        stats["p50_us"] / 1000,
        stats["p99_us"] / 1000,
        errors,
        "wrk, pre-signed",
    )


def bench_http(
    url: str,
    database: str,
    creds: list[dict[str, str]],
    *,
    concurrency: int,
    duration_s: int,
    workdir: Path,
) -> Result:
    requests_file = presign(
        creds, concurrency=concurrency, duration_s=duration_s, workdir=workdir, tag=database
    )
    return http_result(database, concurrency, run_wrk(url, requests_file, concurrency, duration_s))


def start_server(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "lngate.cli", "serve", "--port", str(port), "--admin-port", "0"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def start_processes(
    env: dict[str, str], port: int, processes: int, *, worker_processes: int
) -> subprocess.Popen[bytes]:
    """``lngate serve --processes N --worker-processes W``: a supervisor and its children."""
    argv = [sys.executable, "-m", "lngate.cli", "serve", "--processes", str(processes)]
    argv += ["--worker-processes", str(worker_processes), "--port", str(port), "--admin-port", "0"]
    return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
