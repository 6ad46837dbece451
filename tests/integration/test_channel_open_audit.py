"""Opening a channel is one audited use case, whichever door it comes through: ``lngate channels
open`` at the shell and ``POST /admin/v1/channels`` leave the same ``channel.open`` record, in
the chain, and an open the node refused leaves none. On simnet, SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lngate.bootstrap import accounts_for, open_core
from lngate.cli import app
from lngate.client import AsyncClient
from lngate.config import Config
from lngate.lightning.simnet import SimnetNetwork, SimnetNode
from lngate.store import audit
from lngate.store import treasury as store
from lngate.store.audit import AuditRecord
from lngate.store.users import Role
from tests import treasury_support as ts
from tests.conftest import LiveServer, started_core


def _cold_addresses(config: Config, count: int) -> list[str]:
    """Addresses of a wallet the exchange node holds no key to, standing in for cold storage."""
    with SimnetNetwork(config.simnet_dir) as net:
        return [net.new_address("dave") for _ in range(count)]


def _audit(config: Config) -> tuple[list[AuditRecord], list[str]]:
    """The audit log and the breaks in its chain, read by a core of our own."""
    core = open_core(config)
    try:
        return core.uow.read_sync(audit.records), core.uow.read_sync(audit.verify)
    finally:
        core.close()


def _channel_opens(records: list[AuditRecord]) -> list[AuditRecord]:
    return [r for r in records if r.action == "channel.open"]


@pytest.fixture
def shell(config: Config, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """The CLI over the test's data directory and database, run by operator ``olivia``."""
    monkeypatch.setenv("LNGATE_DATA_DIR", str(config.data_dir))
    monkeypatch.setenv("LNGATE_DATABASE_URL", config.database_url)
    monkeypatch.delenv("LNGATE_CONFIG", raising=False)
    monkeypatch.setenv("USER", "olivia")
    return CliRunner()


def test_lngate_channels_open_is_audited(config: Config, shell: CliRunner, tmp_path: Path) -> None:
    cold = _cold_addresses(config, 2)
    listing = tmp_path / "cold.txt"
    listing.write_text("\n".join(cold) + "\n")
    imported = shell.invoke(app, ["cold", "import", str(listing)])
    assert imported.exit_code == 0, imported.output

    args = ["channels", "open", "carol", "100000", "--push-sat", "1000"]
    result = shell.invoke(app, [*args, "--reason", "outbound liquidity"])
    assert result.exit_code == 0, result.output
    opened = json.loads(result.stdout)
    assert opened["close_address"] == cold[0] and opened["peer"] == "carol"

    records, problems = _audit(config)
    assert problems == []
    (record,) = _channel_opens(records)
    assert (record.actor, record.subject, record.reason) == (
        "cli:olivia",
        "peer:carol",
        "outbound liquidity",
    )
    assert record.details == opened  # what the command printed is what was audited
    assert record.seq == records[-1].seq  # nothing written after it

    # Without --reason the record still says where it came from.
    again = shell.invoke(app, ["channels", "open", "carol", "100000"])
    assert again.exit_code == 0, again.output
    records, problems = _audit(config)
    assert problems == []
    assert [(r.actor, r.reason) for r in _channel_opens(records)] == [
        ("cli:olivia", "outbound liquidity"),
        ("cli:olivia", "cli"),
    ]


def test_an_open_the_node_refused_is_not_audited(
    config: Config, shell: CliRunner, tmp_path: Path
) -> None:
    listing = tmp_path / "cold.txt"
    listing.write_text("\n".join(_cold_addresses(config, 2)) + "\n")
    assert shell.invoke(app, ["cold", "import", str(listing)]).exit_code == 0

    # 1 000 sat is below the node's minimum channel size: lngate lets it through, the node not.
    refused = shell.invoke(app, ["channels", "open", "carol", "1000"])
    assert refused.exit_code == 2, refused.output
    assert json.loads(refused.stderr)["error"]["code"] == "INVALID_NODE_REQUEST"

    records, problems = _audit(config)
    assert problems == [] and _channel_opens(records) == []
    core = open_core(config)
    try:
        # The cold address was handed out before the node was asked and stays so, unused.
        assert core.uow.read_sync(store.counts) == store.ColdCounts(free=1, pending=1, used=0)
    finally:
        core.close()


async def test_the_admin_api_open_is_audited_by_the_use_case(config: Config) -> None:
    cold = _cold_addresses(config, 2)
    with started_core(config) as core, LiveServer(core, watcher=False, admin=True) as server:
        cold_storage = ts.cold_storage(core, SimnetNode(server.network))
        await cold_storage.import_addresses("\n".join(cold))
        creds = accounts_for(core).create_user_sync("root", Role.ADMIN)
        async with AsyncClient(server.admin_url, creds.api_key, creds.api_secret) as admin:
            peer = server.network.pubkey("carol")
            r = await admin.post("/admin/v1/channels", {"peer": peer, "amount_sat": 200_000})
            assert r.status_code == 200, r.text
            opened = r.json()
            page = (await admin.get("/admin/v1/audit")).json()
    assert opened["close_address"] == cold[0]
    (shown,) = [r for r in page["records"] if r["action"] == "channel.open"]
    assert (shown["actor"], shown["subject"], shown["reason"]) == (
        f"admin:{creds.user_id}",
        f"peer:{peer}",
        "admin API",
    )
    assert shown["details"] == opened
    records, problems = _audit(config)
    assert problems == [] and len(_channel_opens(records)) == 1  # one record, not two
