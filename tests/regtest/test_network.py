"""Smoke tests of the regtest network itself, over lnd's REST API."""

from __future__ import annotations

import base64
import tomllib
from pathlib import Path
from typing import Any

import pytest

from lngate.regtest import LndRestError, Network

pytestmark = pytest.mark.regtest


def _add_invoice(network: Network, node: str, amount_sat: int, memo: str) -> dict[str, Any]:
    invoice: dict[str, Any] = network.rest(
        node, "POST", "/v1/invoices", {"value": str(amount_sat), "memo": memo}
    )
    return invoice


def _hash_hex(invoice: dict[str, Any]) -> str:
    # REST encodes bytes as base64; the lookup path wants hex.
    return base64.b64decode(invoice["r_hash"]).hex()


def _hop_pubkeys(payment: dict[str, Any]) -> list[str]:
    settled = [htlc for htlc in payment["htlcs"] if htlc["status"] == "SUCCEEDED"]
    assert len(settled) == 1, payment["htlcs"]
    return [hop["pub_key"] for hop in settled[0]["route"]["hops"]]


def _assert_paid(network: Network, payee: str, invoice: dict[str, Any], amount_sat: int) -> None:
    looked_up = network.rest(payee, "GET", f"/v1/invoice/{_hash_hex(invoice)}")
    assert looked_up["state"] == "SETTLED"
    assert int(looked_up["amt_paid_sat"]) == amount_sat


def test_bob_pays_exchange_through_alice(regtest: Network) -> None:
    invoice = _add_invoice(regtest, "exchange", 1_000, "deposit from bob")

    payment = regtest.pay_invoice("bob", invoice["payment_request"])

    assert payment["status"] == "SUCCEEDED", payment.get("failure_reason")
    nodes = regtest.nodes
    assert _hop_pubkeys(payment) == [nodes["alice"].pubkey, nodes["exchange"].pubkey]
    _assert_paid(regtest, "exchange", invoice, 1_000)


def test_exchange_pays_bob_through_alice(regtest: Network) -> None:
    invoice = _add_invoice(regtest, "bob", 2_000, "withdrawal to bob")

    payment = regtest.pay_invoice("exchange", invoice["payment_request"])

    assert payment["status"] == "SUCCEEDED", payment.get("failure_reason")
    nodes = regtest.nodes
    assert _hop_pubkeys(payment) == [nodes["alice"].pubkey, nodes["bob"].pubkey]
    _assert_paid(regtest, "bob", invoice, 2_000)


def test_lngate_toml_points_at_exchange(regtest: Network) -> None:
    config = tomllib.loads(Path(regtest.lngate_toml).read_text())

    assert config["node"] == {"backend": "lnd"}
    lnd = config["lnd"]
    assert lnd["rest_url"] == regtest.nodes["exchange"].rest_url
    for key in ("tls_cert", "invoice_macaroon", "spending_macaroon"):
        assert Path(lnd[key]).is_absolute() and Path(lnd[key]).is_file()


def test_invoice_macaroon_cannot_spend(regtest: Network) -> None:
    invoice_mac = Path(regtest.invoice_macaroon)
    bob_invoice = _add_invoice(regtest, "bob", 500, "must not be paid")

    own = regtest.rest("exchange", "POST", "/v1/invoices", {"value": "500"}, macaroon=invoice_mac)
    decoded = regtest.rest(
        "exchange", "GET", f"/v1/payreq/{bob_invoice['payment_request']}", macaroon=invoice_mac
    )
    with pytest.raises(LndRestError, match="permission denied"):
        regtest.rest(
            "exchange",
            "POST",
            "/v2/router/send",
            {"payment_request": bob_invoice["payment_request"], "timeout_seconds": 10},
            macaroon=invoice_mac,
        )

    assert own["payment_request"].startswith("lnbcrt")
    assert int(decoded["num_satoshis"]) == 500


def test_spending_macaroon_pays(regtest: Network) -> None:
    invoice = _add_invoice(regtest, "bob", 700, "paid with the spending macaroon")

    payment = regtest.pay_invoice(
        "exchange", invoice["payment_request"], macaroon=Path(regtest.spending_macaroon)
    )

    assert payment["status"] == "SUCCEEDED", payment.get("failure_reason")
    _assert_paid(regtest, "bob", invoice, 700)


def test_exchange_restart_keeps_channels(regtest: Network) -> None:
    old_pid = regtest.nodes["exchange"].process.pid

    regtest.restart_lnd("exchange")

    assert regtest.nodes["exchange"].process.pid != old_pid
    regtest.wait_route("bob", "exchange")
    invoice = _add_invoice(regtest, "exchange", 1_500, "after restart")
    payment = regtest.pay_invoice("bob", invoice["payment_request"])
    assert payment["status"] == "SUCCEEDED", payment.get("failure_reason")
