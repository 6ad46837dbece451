"""Operating a real ``lngate serve``: logs, audit, admin commands and the admin API."""

from __future__ import annotations

import json

from lngate.client import Client
from tests.e2e.conftest import Served


def test_logs_are_json_with_request_ids_and_never_hold_a_secret(served: Served) -> None:
    alice = served.cli_json("user", "create", "alice")
    served.cli_json("user", "create", "bob")
    served.cli_json("admin", "adjust", "alice", "5000", "--reason", "seed")
    served.cli_json("admin", "freeze", "alice", "--reason", "suspicious activity")
    with Client(served.url, str(alice["api_key"]), str(alice["api_secret"])) as api:
        refused = api.post("/v1/transfers", {"to": "bob", "amount_msat": 1000})
        assert refused.status_code == 403
        request_id = refused.headers["X-Request-Id"]
        assert api.get("/v1/account").status_code == 200
    served.cli_json("admin", "unfreeze", "alice", "--reason", "cleared")
    log = served.log_path.read_text()
    assert str(alice["api_secret"]) not in log
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    frozen = [e for e in lines if "ACCOUNT_FROZEN" in e["msg"]]
    assert frozen and frozen[0]["request_id"] == request_id and frozen[0]["level"] == "warning"
    assert frozen[0]["user_id"] == alice["user_id"]


def test_admin_actions_and_the_configuration_are_audited(served: Served) -> None:
    served.cli_json("user", "create", "alice")
    served.cli_json("admin", "halt", "--reason", "drill")
    served.cli_json("admin", "resume", "--reason", "drill over")
    ops = served.cli_json("admin", "key", "create", "ops")
    with Client(served.admin_url, str(ops["api_key"]), str(ops["api_secret"])) as admin:
        records = admin.get("/admin/v1/audit").json()["records"]
        assert [r["action"] for r in records][:3] == [
            "config.change",
            "withdrawals.halt",
            "withdrawals.resume",
        ]
        assert admin.post("/admin/v1/users/alice/freeze", {"reason": "test"}).json()["changed"]
        assert admin.get("/admin/v1/users/alice").json()["status"] == "frozen"
    verify = served.cli_json("audit", "verify")
    assert verify["ok"] is True and verify["records"] == 4


def test_the_review_queue_from_the_command_line(served: Served) -> None:
    alice = served.cli_json("user", "create", "alice")
    served.cli_json("admin", "adjust", "alice", "2000000000", "--reason", "seed")
    big = [served.cli("simnet", "invoice", "carol", "300000").stdout.strip() for _ in range(2)]
    with Client(served.url, str(alice["api_key"]), str(alice["api_secret"])) as api:
        ids = [api.post("/v1/withdrawals", {"bolt11": b}).json()["id"] for b in big]
        queue = json.loads(served.cli("admin", "withdrawals").stdout)
        assert sorted(w["id"] for w in queue) == sorted(ids)
        assert (
            served.cli_json("admin", "approve", ids[0], "--reason", "known customer")["status"]
            == "approved"
        )
        assert served.cli_json("admin", "reject", ids[1], "--reason", "unusual")["status"] == (
            "rejected"
        )
        again = served.cli("admin", "approve", ids[1], check=False)
        assert again.returncode == 2 and "NOT_IN_REVIEW" in again.stderr
        assert api.get(f"/v1/withdrawals/{ids[1]}").json()["note"] == "unusual"
