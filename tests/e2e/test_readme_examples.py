"""The README's documented examples work, verbatim, against a real ``lngate serve``."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from lngate.domain.webhooks import new_secret
from tests.e2e.conftest import Served

README = Path(__file__).resolve().parents[2] / "README.md"


def example(name: str) -> str:
    match = re.search(rf"<!-- example:{name} -->\n```\w+\n(.*?)```", README.read_text(), re.S)
    assert match, f"README has no {name} example"
    return match.group(1)


def with_credentials(code: str, key: str, secret: str, url: str) -> str:
    code = code.replace("lk_...", key).replace('SECRET="..."', f'SECRET="{secret}"')
    code = code.replace("SECRET=...", f"SECRET={secret}").replace('"..."', f'"{secret}"')
    return code.replace("http://127.0.0.1:8000", url)


def test_curl_example_reads_the_account_and_transfers(served: Served) -> None:
    alice = served.cli_json("user", "create", "alice")
    served.cli_json("user", "create", "bob")
    served.cli_json("admin", "adjust", "alice", "5000", "--reason", "readme test")
    script = with_credentials(
        example("curl"), str(alice["api_key"]), str(alice["api_secret"]), served.url
    )
    out = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    assert '"username":"alice"' in out and '"available_msat":5000' in out
    assert '"to":"bob"' in out and '"amount_msat":1000' in out


def test_python_example_reads_the_account_and_transfers(served: Served) -> None:
    alice = served.cli_json("user", "create", "alice")
    served.cli_json("user", "create", "bob")
    served.cli_json("admin", "adjust", "alice", "5000", "--reason", "readme test")
    code = with_credentials(
        example("python"), str(alice["api_key"]), str(alice["api_secret"]), served.url
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    assert "'available_msat': 5000" in out
    assert out.splitlines()[1].startswith("201")


def test_data_dir_is_accepted_before_or_after_the_subcommand(served: Served) -> None:
    env_free = {k: v for k, v in served.env.items() if k != "LNGATE_DATA_DIR"}
    before = subprocess.run(
        [sys.executable, "-m", "lngate.cli", "--data-dir", str(served.data_dir), "reconcile"],
        env=env_free,
        capture_output=True,
        text=True,
        timeout=60,
    )
    after = subprocess.run(
        [sys.executable, "-m", "lngate.cli", "reconcile", "--data-dir", str(served.data_dir)],
        env=env_free,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert before.returncode == after.returncode == 0
    # both read the same books (each run is a new stored report, with its own id)
    assert json.loads(before.stdout)["ledger"] == json.loads(after.stdout)["ledger"]
    assert json.loads(before.stdout)["required_msat"] == json.loads(after.stdout)["required_msat"]


def test_reconcile_and_audit_fail_loudly_when_the_books_are_tampered_with(served: Served) -> None:
    import sqlite3

    served.cli_json("user", "create", "alice")
    served.cli_json("admin", "adjust", "alice", "5000", "--reason", "seed")
    assert served.cli("reconcile", check=False).returncode == 0
    assert served.cli("audit", "verify", check=False).returncode == 0
    db = sqlite3.connect(served.data_dir / "lngate.sqlite3")
    db.execute("UPDATE accounts SET credits_posted = credits_posted + 1 WHERE kind = 'user'")
    db.execute("UPDATE audit_log SET reason = 'edited' WHERE seq = 1")
    db.commit()
    db.close()
    broken = served.cli("reconcile", check=False)
    assert broken.returncode == 1 and '"ok": false' in broken.stdout
    tampered = served.cli("audit", "verify", check=False)
    assert tampered.returncode == 1 and "altered" in tampered.stdout


def test_simnet_cli_invoice_decodes(served: Served) -> None:
    bolt11 = served.cli("simnet", "invoice", "carol", "1500").stdout.strip()
    decoded = served.cli_json("decode", bolt11)
    assert decoded["amount_msat"] == 1_500_000
    assert decoded["network"] == "regtest"
    bad = served.cli("decode", bolt11[:-3] + "qqq", check=False)
    assert bad.returncode == 2 and "INVALID_INVOICE" in bad.stderr


def test_shop_backend_example_creates_an_order_and_verifies_only_genuine_webhooks(
    served: Served,
) -> None:
    shop = served.cli_json("user", "create", "shop", "--role", "merchant")
    webhook_secret = new_secret()
    code = with_credentials(
        example("shop"), str(shop["api_key"]), str(shop["api_secret"]), served.url
    ).replace("whsec_...", webhook_secret)
    # What the shop's HTTP handler would be handed: a webhook signed as lngate signs it, the
    # same one with another body, and one signed with another secret.
    code += f"""
import json, time
from lngate.domain.webhooks import new_secret, signed_headers
body = json.dumps({{"type": "order.paid", "timestamp": "t", "data": order}}).encode()
headers = dict(signed_headers({webhook_secret!r}, "msg_1", int(time.time()), body))
print("genuine", paid_order(body, headers)["id"] == order["id"])
print("tampered", paid_order(body.replace(b"open", b"paid"), headers))
other = dict(signed_headers(new_secret(), "msg_1", int(time.time()), body))
print("forged", paid_order(body, other))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    ).stdout.splitlines()
    status, checkout_url = out[0].split()
    assert status == "open" and checkout_url.startswith(f"{served.url}/pay/ord_")
    assert out[1:] == ["genuine True", "tampered None", "forged None"]
