"""Schemathesis against the served OpenAPI documents of both apps, on SQLite and PostgreSQL.

Every operation gets generated requests (the schema's examples, its boundaries and random
inputs, valid and invalid), SIGNED with a real key as a client would sign them: the signature
covers the bytes on the wire, so it is made where they are final, in the requests ``auth``
hook (``Signer``), for requests that carry a known key and the placeholder signature. Every
check of schemathesis runs on every answer: no 5xx, only documented statuses, content types
and headers, bodies that match their schemas, authentication enforced (the check resends the
request without the signature headers, and with a wrong one), unsupported methods answered
405 with ``Allow``. The stateful test follows the documents' links (a created deposit, then
its lookup by id; the review queue, then approving or rejecting what is in it).

Bounded and repeatable: a fixed seed, derandomized examples, a small budget per operation
(``LNGATE_SCHEMATHESIS_EXAMPLES=N`` for more), no example database.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.python import asgi
from schemathesis.specs.openapi.schemas import OpenApiSchema

from lngate.api.admin_app import create_admin_app
from lngate.api.app import create_app
from lngate.bootstrap import Core, accounts_for, use_cases
from lngate.client import signed_headers
from lngate.lightning.simnet import SimnetNetwork, SimnetNode
from lngate.security.signing import KEY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER
from lngate.services import lnurl_client
from lngate.services.accounts import Credentials
from lngate.store.users import Role
from tests.helpers import request_withdrawal

EXAMPLES = int(os.environ.get("LNGATE_SCHEMATHESIS_EXAMPLES", "0")) or 25
UNSIGNED = "sign-me"  # the placeholder signature the Signer replaces
FUNDS_MSAT = 20_000_000_000
SIGNATURE_HEADERS = {h.lower() for h in (KEY_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER)}

# schemathesis's default for schema-valid requests
ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]
CONFIG: dict[str, Any] = {
    "seed": 11,
    "generation": {
        "mode": "all",
        "max-examples": EXAMPLES,
        "deterministic": True,
        "database": "none",
    },
    "request-timeout": 10,
    "max-stream-events": 5,
    "operations": [
        # a live stream ends only when the client hangs up: here after half a second
        {"include-operation-id": "stream_events", "request-timeout": 0.5},
        # Input a schema cannot judge: whether an invoice decodes and is payable, whether an
        # amount is within this deployment's limits and the caller's balance, whether a
        # recipient or channel peer exists. Well-formed but refused on its meaning is a 400
        # (INVALID_INVOICE, AMOUNT_OUT_OF_RANGE, ...), a refusal of the books a 422, a halt 423.
        # And JSON Schema's integers include 1.0, which lngate refuses for money and counts:
        # amounts never pass through a float (INVALID_AMOUNT, INVALID_REQUEST).
        *(
            {
                "include-operation-id": operation_id,
                "checks": {
                    "positive_data_acceptance": {
                        "expected-statuses": [*ACCEPTED, "400", "422", "423"]
                    }
                },
            }
            for operation_id in (
                "post_transfer",
                "post_deposit",
                "post_withdrawal",
                "open_channel",
                "resume_withdrawals",
                "reconcile",
                "approve_withdrawal",
                "reject_withdrawal",
                # Pay: an order's amount and expiry bounds are the deployment's ([pay]), its
                # metadata is bounded in bytes; a refund is bounded by what was paid; a webhook
                # URL must name a public host, which only a name lookup tells.
                "post_order",
                "pay_order",
                "post_refund",
                "post_webhook",
            )
        ),
    ],
}
SETTINGS = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


class Signer(requests.auth.AuthBase):
    """Signs a request that names one of ``secrets``' keys and carries the placeholder."""

    def __init__(self, secrets: dict[str, str]) -> None:
        self.secrets = secrets

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        key = r.headers.get(KEY_HEADER)
        if key in self.secrets and r.headers.get(SIGNATURE_HEADER) == UNSIGNED:
            body = r.body or b""
            raw = body.encode() if isinstance(body, str) else bytes(body)
            assert r.method is not None
            r.headers.update(signed_headers(key, self.secrets[key], r.method, r.path_url, raw))
        return r


@dataclass
class World:
    core: Core
    alice: Credentials
    bob: Credentials
    admin: Credentials
    shop: Credentials
    signer: Signer


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    """Schemathesis 4.32's ``from_fixture`` reads and sets ``node._nodeid`` (to name each
    operation's subtest), an attribute pytest 9 no longer has."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


@pytest.fixture(autouse=True)
def no_name_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lightning Addresses on other hosts must not reach the internet."""

    def getaddrinfo(*_: Any, **__: Any) -> Any:
        raise OSError("name resolution is off in this test")

    cut_off = SimpleNamespace(**vars(socket))
    cut_off.getaddrinfo = getaddrinfo
    monkeypatch.setattr(lnurl_client, "socket", cut_off)


@pytest.fixture
def world(core: Core) -> World:
    alice = accounts_for(core).create_user_sync("alice")
    accounts_for(core).adjust_sync("alice", FUNDS_MSAT, reason="schemathesis funding", actor="test")
    bob = accounts_for(core).create_user_sync("bob")
    admin = accounts_for(core).create_user_sync("root", Role.ADMIN)
    # A funded merchant signs the stateless run: the Pay operations (orders, refunds, webhooks)
    # are fuzzed past their 403, and the rest as any user's.
    shop = accounts_for(core).create_user_sync("shop", Role.MERCHANT)
    accounts_for(core).adjust_sync("shop", FUNDS_MSAT, reason="schemathesis funding", actor="test")
    secrets = {c.api_key: c.api_secret for c in (alice, bob, admin, shop)}
    return World(core, alice, bob, admin, shop, Signer(secrets))


@pytest.fixture
def network(core: Core) -> Iterator[SimnetNetwork]:
    with SimnetNetwork(core.config.simnet_dir) as net:
        yield net


def _load(app: Any) -> OpenApiSchema:
    config = schemathesis.Config.from_dict(CONFIG)
    return schemathesis.openapi.from_asgi("/openapi.json", app, config=config)


@pytest.fixture
def public_schema(world: World, network: SimnetNetwork) -> Iterator[OpenApiSchema]:
    app = create_app(world.core, use_cases(world.core, SimnetNode(network)))
    try:
        yield _load(app)
    finally:
        asgi.shutdown_lifespans()  # the app's replay guard ends before its core


@pytest.fixture
def admin_schema(world: World, network: SimnetNetwork) -> Iterator[OpenApiSchema]:
    app = create_admin_app(world.core, use_cases(world.core, SimnetNode(network)))
    try:
        yield _load(app)
    finally:
        asgi.shutdown_lifespans()


def _sign_as(case: schemathesis.Case, creds: Credentials) -> None:
    """Sign a signed operation's request as ``creds``, unless the case is about one of the
    signature headers itself (left out, or given a wrong value): then it goes as generated,
    and must be refused."""
    if not case.operation.definition.raw.get("security"):
        return
    phase_data = case.meta.phase.data if case.meta is not None else None
    targeted = str(getattr(phase_data, "parameter", "") or "").lower()
    if targeted in SIGNATURE_HEADERS:
        return
    case.headers = {
        **{k: v for k, v in (case.headers or {}).items() if k.lower() not in SIGNATURE_HEADERS},
        KEY_HEADER: creds.api_key,
        TIMESTAMP_HEADER: "0",
        SIGNATURE_HEADER: UNSIGNED,
    }


public = schemathesis.pytest.from_fixture("public_schema")
admin = schemathesis.pytest.from_fixture("admin_schema")


@public.parametrize()
@SETTINGS
def test_public_api(case: schemathesis.Case, world: World) -> None:
    _sign_as(case, world.shop)
    case.call_and_validate(auth=world.signer)


@admin.parametrize()
@SETTINGS
def test_admin_api(case: schemathesis.Case, world: World) -> None:
    _sign_as(case, world.admin)
    case.call_and_validate(auth=world.signer)


STATEFUL_SETTINGS = settings(
    SETTINGS,
    max_examples=int(os.environ.get("LNGATE_SCHEMATHESIS_SCENARIOS", "0")) or 15,
    stateful_step_count=6,
)


def _run_links(schema: OpenApiSchema, creds: Credentials, signer: Signer) -> set[tuple[str, int]]:
    """Scenarios that follow the document's links, every step signed and checked; the
    (operation, status) pairs they met."""
    seen: set[tuple[str, int]] = set()

    class Links(schema.as_state_machine()):  # type: ignore[misc]
        def before_call(self, case: schemathesis.Case) -> None:
            _sign_as(case, creds)

        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            return {"auth": signer}

        def after_call(self, response: schemathesis.Response, case: schemathesis.Case) -> None:
            super().after_call(response, case)
            seen.add((case.operation.label, response.status_code))

    Links.run(settings=STATEFUL_SETTINGS)
    return seen


def test_public_api_links(public_schema: OpenApiSchema, world: World) -> None:
    """POST /v1/deposits -> GET /v1/deposits/{id}; POST /v1/withdrawals -> GET its id."""
    seen = _run_links(public_schema, world.alice, world.signer)
    assert ("GET /v1/deposits/{deposit_id}", 200) in seen


def test_admin_api_links(admin_schema: OpenApiSchema, world: World, network: SimnetNetwork) -> None:
    """The review queue -> approve or reject what is in it; a user -> freeze, unfreeze."""
    node = SimnetNode(network)
    for _ in range(3):  # above the review threshold: they wait for an operator
        invoice = network.create_invoice("carol", 300_000_000).bolt11
        held = asyncio.run(request_withdrawal(world.core, node, world.alice, invoice))
        assert held["status"] == "review"
    seen = _run_links(admin_schema, world.admin, world.signer)
    decided = {
        ("POST /admin/v1/withdrawals/{withdrawal_id}/approve", 200),
        ("POST /admin/v1/withdrawals/{withdrawal_id}/reject", 200),
    }
    assert decided & seen, sorted(seen)
