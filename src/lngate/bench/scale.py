"""HTTP transfers on PostgreSQL through 1, 2, 4... API processes (``lngate serve --processes
N``), side by side in one run, with the CPU that each process, PostgreSQL and wrk used.

CPU is read from ``/proc`` (Linux): user + system time of each process over the wrk run,
as a percentage of one core (so 2 cores fully used is 200 %).
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from lngate.bench.http import http_result, presign, run_wrk, start_processes, wait_for_server
from lngate.bench.stats import Result

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class ScaleResult:
    processes: int
    result: Result
    api_cpu_pct: list[float]
    postgres_cpu_pct: float
    wrk_cpu_pct: float
    machine_busy_pct: float  # of all cores together, from /proc/stat
    steal_pct: float  # of all cores together: taken by the hypervisor

    def row(self) -> str:
        per = " + ".join(f"{c:.0f}" for c in self.api_cpu_pct)
        r = self.result
        return (
            f"| {self.processes} | {r.ops_per_s:,.0f} | {r.p50_ms:.1f} | {r.p99_ms:.1f} | "
            f"{r.errors} | {per} | {self.postgres_cpu_pct:.0f} | {self.wrk_cpu_pct:.0f} | "
            f"{self.machine_busy_pct:.0f} | {self.steal_pct:.0f} |"
        )


SCALE_HEADER = (
    "| API processes | transfers/s | p50 ms | p99 ms | errors | CPU % per API process "
    "| PostgreSQL CPU % | wrk CPU % | machine busy % | steal % |\n"
    "|---|---|---|---|---|---|---|---|---|---|"
)


def _cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return sorted(found)


def _postgres_pids(url: str) -> list[int]:
    """The postmaster of ``url`` and every process it forked (backends, WAL writer...)."""
    with psycopg.connect(url, autocommit=True) as conn:
        backend = int(conn.execute("SELECT pg_backend_pid()").fetchone()[0])  # type: ignore[index]
        # read while connected: the backend exits with its connection
        stat = Path(f"/proc/{backend}/stat").read_text().rsplit(")", 1)[1].split()
    postmaster = int(stat[1])
    return [postmaster, *_children(postmaster)]


def _machine() -> tuple[float, float, float]:
    """(busy, stolen, total) CPU ticks of the machine so far. Steal is time the hypervisor gave
    our virtual CPUs to someone else: a run with much of it measured a busy host, not lngate."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in fields)
    busy = user + nice + system + irq + softirq
    return float(busy), float(steal), float(busy + idle + iowait + steal)


def _wait_for_children(supervisor: int, count: int, deadline_s: float = 30) -> list[int]:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        children = _children(supervisor)
        if len(children) == count:
            return children
        time.sleep(0.05)
    raise RuntimeError(f"lngate serve --processes {count} did not start its children")


def bench_scale(
    url: str,
    env: dict[str, str],
    port: int,
    creds: list[dict[str, str]],
    *,
    processes: int,
    concurrency: int,
    duration_s: int,
    workdir: Path,
) -> ScaleResult:
    base = f"http://127.0.0.1:{port}"
    label = f"postgresql, {processes} API"
    warmup = presign(
        creds, concurrency=concurrency, duration_s=1, workdir=workdir, tag=f"w{processes}"
    )
    requests_file = presign(
        creds, concurrency=concurrency, duration_s=duration_s, workdir=workdir, tag=str(processes)
    )
    supervisor = start_processes(env, port, processes, worker_processes=0)
    try:
        wait_for_server(base)
        api = _wait_for_children(supervisor.pid, processes)
        run_wrk(base, warmup, concurrency, 2)  # every child bound, connected and warm
        postgres = _postgres_pids(url)
        before = [_cpu_s(p) for p in api], sum(_cpu_s(p) for p in postgres), _machine()
        wrk_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        stats = run_wrk(base, requests_file, concurrency, duration_s)
        wall_s = time.monotonic() - started
        wrk_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        postgres = _postgres_pids(url)  # backends come and go; the long-lived ones count
        api_cpu = [100 * (_cpu_s(p) - b) / wall_s for p, b in zip(api, before[0], strict=True)]
        pg_cpu = 100 * (sum(_cpu_s(p) for p in postgres) - before[1]) / wall_s
        wrk_cpu = wrk_after.ru_utime + wrk_after.ru_stime - wrk_before.ru_utime
        wrk_cpu -= wrk_before.ru_stime
        busy, steal, total = (after - b for after, b in zip(_machine(), before[2], strict=True))
        result = http_result(label, concurrency, stats)
        return ScaleResult(
            processes,
            result,
            api_cpu,
            pg_cpu,
            100 * wrk_cpu / wall_s,
            100 * busy / max(1.0, total),
            100 * steal / max(1.0, total),
        )
    finally:
        supervisor.send_signal(signal.SIGTERM)
        supervisor.wait(timeout=60)
