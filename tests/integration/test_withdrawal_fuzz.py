"""Fuzzing the withdrawal endpoint with random and mutated BOLT11 strings: never a 5xx, never a
change of state."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lngate.client import Client
from lngate.lightning.simnet import SimnetNetwork
from tests.conftest import LiveServer, funded_user

FUNDS = 10_000_000
BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def _mutations(valid: str) -> st.SearchStrategy[str]:
    positions = st.integers(0, len(valid) - 1)
    return st.one_of(
        st.tuples(positions, st.sampled_from(BECH32)).map(
            lambda p: valid[: p[0]] + p[1] + valid[p[0] + 1 :]
        ),
        positions.map(lambda i: valid[:i] + valid[i + 1 :]),
        positions.map(lambda i: valid[:i]),
        st.tuples(positions, st.text(BECH32, min_size=1, max_size=8)).map(
            lambda p: valid[: p[0]] + p[1] + valid[p[0] :]
        ),
        st.just(valid.upper()),
        st.just(valid.replace("lnbcrt", "lnbc")),
        st.just(valid.replace("lnbcrt", "lntb")),
    )


def test_random_and_mutated_invoices_never_cause_a_5xx_or_a_change(
    live_server: LiveServer,
) -> None:
    alice = funded_user(live_server.core, "alice", FUNDS)
    with SimnetNetwork(live_server.core.config.simnet_dir) as net:
        valid = net.create_invoice("carol", 10_000).bolt11
        amountless = net.create_invoice("carol", None).bolt11
    strings = st.one_of(
        st.text(max_size=300),
        st.text(BECH32 + "1ln", max_size=400).map(lambda s: "lnbcrt" + s),
        _mutations(valid),
        _mutations(amountless),
    )
    amounts = st.one_of(
        st.none(),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=False),
        st.text(max_size=5),
        st.booleans(),
    )

    with Client(live_server.url, alice.api_key, alice.api_secret) as api:

        @settings(
            max_examples=300,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        )
        @given(bolt11=strings, amount=amounts)
        def probe(bolt11: str, amount: object) -> None:
            if bolt11 in (valid, amountless):
                return  # the unmutated invoices would (rightly) be paid
            body: dict[str, object] = {"bolt11": bolt11}
            if amount is not None:
                body["amount_msat"] = amount
            r = api.post("/v1/withdrawals", body)
            assert r.status_code < 500, (bolt11, amount, r.text)
            if r.status_code == 201:
                # A mutation can still be a valid invoice (e.g. upper case): then it is paid
                # like any other. Anything refused must leave no trace.
                return
            assert "error" in r.json()

        probe()
        account = api.get("/v1/account").json()
        listed = api.get("/v1/withdrawals?limit=200").json()["withdrawals"]
        spent = sum(
            w["amount_msat"] + (w["routing_fee_msat"] or 0)
            for w in listed
            if w["status"] == "succeeded"
        )
        held = sum(
            w["amount_msat"] + w["fee_reserve_msat"]
            for w in listed
            if w["status"] in ("approved", "sending")
        )
        assert account["available_msat"] == FUNDS - spent - held
