"""Lightning Address (LUD-16) / LNURL-pay (LUD-06, LUD-12), driven by the `lnurl` library.

The library turns ``name@host`` into an https:// URL; on loopback we resolve the bech32 LNURL
of the same ``http://127.0.0.1:PORT/.well-known/lnurlp/NAME`` URL, which it accepts.
"""

from __future__ import annotations

import hashlib
import json

import httpx
import lnurl
import pytest

from lngate.client import AsyncClient
from lngate.lightning.bolt11 import decode_bolt11
from tests.conftest import LiveServer, funded_user
from tests.helpers import available_msat, eventually, pay_from_wallet


async def test_a_wallet_pays_a_lightning_address_end_to_end(live_server: LiveServer) -> None:
    alice = funded_user(live_server.core, "alice")
    host = f"127.0.0.1:{live_server.port}"
    async with AsyncClient(live_server.url, alice.api_key, alice.api_secret) as c:
        assert (await c.get("/v1/account")).json()["lightning_address"] == f"alice@{host}"

    code = lnurl.encode(f"{live_server.url}/.well-known/lnurlp/alice")
    pay_request = await lnurl.handle(str(code.bech32))
    assert isinstance(pay_request, lnurl.LnurlPayResponse)
    metadata = json.loads(pay_request.metadata)
    assert ["text/identifier", f"alice@{host}"] in metadata
    action = await lnurl.execute_pay_request(pay_request, 21_000, comment="thanks!")

    invoice = decode_bolt11(str(action.pr))
    assert invoice.amount_msat == 21_000
    # LUD-06: the invoice's description hash is the SHA-256 of the metadata string, as served
    assert invoice.description_hash == hashlib.sha256(pay_request.metadata.encode()).digest()

    pay_from_wallet(live_server.core.config.simnet_dir, "carol", str(action.pr))
    async with AsyncClient(live_server.url, alice.api_key, alice.api_secret) as c:

        async def credited() -> bool:
            return await available_msat(c) == 21_000

        await eventually(credited, what="the Lightning Address payment to be credited")
        deposits = (await c.get("/v1/deposits")).json()["deposits"]
        assert deposits[0]["source"] == "lnurl" and deposits[0]["memo"] == "thanks!"


async def test_unknown_names_get_a_lud_error(live_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        r = await http.get("/.well-known/lnurlp/nobody")
    assert r.status_code == 404
    assert r.json()["status"] == "ERROR" and "nobody" in r.json()["reason"]
    with pytest.raises(lnurl.LnurlResponseException):
        await lnurl.execute(
            str(lnurl.encode(f"{live_server.url}/.well-known/lnurlp/nobody").bech32), "1000"
        )


@pytest.mark.parametrize("amount", ["0", "999", "-5", "abc", "1.5", "", "99999999999999999999"])
async def test_bad_callback_amounts_get_lud_errors_and_mint_nothing(
    live_server: LiveServer, amount: str
) -> None:
    alice = funded_user(live_server.core, "alice")
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        r = await http.get("/lnurlp/alice/callback", params={"amount": amount})
        too_long = await http.get(
            "/lnurlp/alice/callback", params={"amount": "5000", "comment": "x" * 256}
        )
    assert r.json()["status"] == "ERROR" and r.json()["reason"]
    assert too_long.json()["status"] == "ERROR"
    async with AsyncClient(live_server.url, alice.api_key, alice.api_secret) as c:
        assert (await c.get("/v1/deposits")).json()["deposits"] == []
