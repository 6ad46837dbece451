"""A real ``lngate serve`` process on a fresh data directory, and the CLI beside it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port


@dataclass
class Served:
    url: str
    data_dir: Path
    env: dict[str, str]
    admin_url: str
    log_path: Path

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "lngate.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=check,
            timeout=60,
        )

    def cli_json(self, *args: str) -> dict[str, object]:
        result: dict[str, object] = json.loads(self.cli(*args).stdout)
        return result


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    port = free_port()
    data_dir = tmp_path / "lngate-data"
    env = {**os.environ, "LNGATE_DATA_DIR": str(data_dir)}
    env.pop("LNGATE_DATABASE_URL", None)
    env.pop("LNGATE_CONFIG", None)
    log = (tmp_path / "serve.log").open("w")
    admin_port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lngate.cli",
            "serve",
            "--port",
            str(port),
            "--admin-port",
            str(admin_port),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((tmp_path / "serve.log").read_text())
            time.sleep(0.05)
        yield Served(url, data_dir, env, f"http://127.0.0.1:{admin_port}", tmp_path / "serve.log")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
