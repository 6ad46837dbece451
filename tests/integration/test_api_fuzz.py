"""Fuzzing every route of the public and the admin app, on SQLite and PostgreSQL, with hostile
paths, query strings, headers and bodies, half of them correctly signed so that they get past
authentication: never a 5xx; every error in the one error shape (LUD-06 on the LNURL routes);
and the ledger exactly as it was.

No request can move money, however well formed: the fuzz user has no balance, the limits
refuse every deposit (no amountless invoices, a maximum below the minimum), no withdrawal waits
for an admin to approve, channel peers are no real nodes, and Lightning Addresses on other
hosts resolve nowhere (name resolution is cut off). The ledger is compared around every
request, so a change names the request that made it.

A request may find withdrawals halted or the fuzz user frozen (set before it, undone after it),
and what admin requests halt, resume or freeze is undone after each: those are legitimate
answers, and must not hide the next request's handler.

Routes come from ``app.routes``, so a new route is fuzzed without being listed here; each
route gets its own share of examples (and its own fixed seed), then targets that reach no
route. ``LNGATE_FUZZ_EXAMPLES=N``: N random examples per route instead of the fixed CI budget.
``LNGATE_FUZZ_COLLECT=FILE``: go on after a failure, and append every distinct failure (with
the shortest request that showed it) to FILE as JSON lines. How requests are built and sent:
tests/fuzz_support.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import socket
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from lngate.api.admin_app import create_admin_app
from lngate.api.app import create_app
from lngate.bootstrap import Core, accounts_for, use_cases
from lngate.config import Config, Limits
from lngate.domain.withdrawals import WithdrawalStatus
from lngate.lightning.simnet import SimnetNetwork, SimnetNode
from lngate.services import halt, lnurl_client
from lngate.services.accounts import Credentials
from lngate.services.reconciliation import check_ledger
from lngate.store import system_state, users
from lngate.store.db import Database, Tx
from lngate.store.migrate import migrate
from lngate.store.users import Role, UserStatus
from tests.conftest import free_port
from tests.fuzz_support import (
    AUTH_HEADERS,
    AUTH_MODES,
    HUGE_INTS,
    SWEEP_HEADER,
    ContractBroken,
    FailureLog,
    Outcome,
    Pools,
    RawJson,
    Request,
    Route,
    Signer,
    aimed_at,
    anywhere,
    call_asgi,
    error_body_problem,
    failure_key,
    header_values,
    ledger_snapshot,
    nasty_text,
    route_for,
    routes_of,
    sweep,
)

CI_EXAMPLES = 60  # per route: about 15 s for both apps on SQLite
DEEP_EXAMPLES = int(os.environ.get("LNGATE_FUZZ_EXAMPLES") or 0)
COLLECT = os.environ.get("LNGATE_FUZZ_COLLECT", "")
_HEALTH = [
    HealthCheck.too_slow,
    HealthCheck.data_too_large,
    HealthCheck.filter_too_much,
    HealthCheck.large_base_example,
]
settings.register_profile(
    "lngate-api-fuzz",
    max_examples=CI_EXAMPLES,
    derandomize=True,  # the same examples on every run
    database=None,
    deadline=None,
    suppress_health_check=_HEALTH,
)
settings.register_profile(
    "lngate-api-fuzz-deep",
    parent=settings.get_profile("lngate-api-fuzz"),
    max_examples=max(DEEP_EXAMPLES, 1),
    derandomize=False,
)
FUZZ_SETTINGS = settings.get_profile("lngate-api-fuzz-deep" if DEEP_EXAMPLES else "lngate-api-fuzz")

# The routes the enumeration must find (method, path, signed); more are fuzzed as they come.
PUBLIC_ROUTES = {
    ("GET", "/health", False),
    ("GET", "/openapi.json", False),
    ("GET", "/docs", False),
    ("GET", "/v1/account", True),
    ("POST", "/v1/transfers", True),
    ("GET", "/v1/history", True),
    ("POST", "/v1/deposits", True),
    ("GET", "/v1/deposits", True),
    ("GET", "/v1/deposits/{deposit_id}", True),
    ("GET", "/v1/events", True),
    ("POST", "/v1/withdrawals", True),
    ("GET", "/v1/withdrawals", True),
    ("GET", "/v1/withdrawals/{withdrawal_id}", True),
    ("GET", "/.well-known/lnurlp/{username}", False),
    ("GET", "/lnurlp/{username}/callback", False),
}
ADMIN_ROUTES = {
    ("GET", "/metrics", False),
    ("GET", "/openapi.json", False),
    ("GET", "/admin/v1/withdrawals", True),
    ("POST", "/admin/v1/withdrawals/{withdrawal_id}/approve", True),
    ("POST", "/admin/v1/withdrawals/{withdrawal_id}/reject", True),
    ("POST", "/admin/v1/halt", True),
    ("POST", "/admin/v1/resume", True),
    ("GET", "/admin/v1/status", True),
    ("GET", "/admin/v1/reconciliation", True),
    ("POST", "/admin/v1/reconciliation", True),
    ("GET", "/admin/v1/users/{username}", True),
    ("POST", "/admin/v1/users/{username}/freeze", True),
    ("POST", "/admin/v1/users/{username}/unfreeze", True),
    ("GET", "/admin/v1/treasury", True),
    ("GET", "/admin/v1/channels", True),
    ("POST", "/admin/v1/channels", True),
    ("GET", "/admin/v1/audit", True),
}
OTHER_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "get", "PROPFIND")
FUZZ_USER, RICH_USER, ADMIN_USER = "fuzzer", "fuzzrich", "fuzzadmin"
RICH_FUNDS_MSAT = 50_000_000
STATES = ("normal", "normal", "halted", "frozen")


@pytest.fixture
def config(tmp_path: Path, database_url: str) -> Config:
    """The shared fixture's, with limits that refuse every deposit."""
    db = Database(database_url)
    migrate(db)
    db.close()
    port = free_port()
    return Config(
        data_dir=tmp_path / "data",
        database_url=database_url,
        log_json=False,
        port=port,
        public_url=f"http://127.0.0.1:{port}",
        limits=Limits(deposit_min_msat=1_000, deposit_max_msat=0, allow_amountless_deposits=False),
    )


@pytest.fixture(autouse=True)
def no_name_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lightning Addresses on other hosts must not reach the internet: resolving a name fails,
    which the LNURL client answers as a service it cannot reach."""

    def getaddrinfo(*_: Any, **__: Any) -> Any:
        raise OSError("name resolution is off in the fuzz test")

    # the client's own view of the socket module, with everything but getaddrinfo
    cut_off = SimpleNamespace(**vars(socket))
    cut_off.getaddrinfo = getaddrinfo
    monkeypatch.setattr(lnurl_client, "socket", cut_off)


@dataclass
class World:
    core: Core
    node: SimnetNode
    fuzzer: Credentials
    rich: Credentials
    admin: Credentials
    deposit_id: str
    invoices: tuple[str, ...]


@pytest.fixture
def world(core: Core) -> Iterator[World]:
    network = SimnetNetwork(core.config.simnet_dir)
    node = SimnetNode(network)
    fuzzer = accounts_for(core).create_user_sync(FUZZ_USER)
    rich = accounts_for(core).create_user_sync(RICH_USER)
    accounts_for(core).adjust_sync(
        RICH_USER, RICH_FUNDS_MSAT, reason="fuzz test funding", actor="test"
    )
    admin = accounts_for(core).create_user_sync(ADMIN_USER, Role.ADMIN)
    # One open (never paid) deposit of the fuzz user, for lookups by id to find: made under
    # the default limits, which the fuzzed apps never see.
    limited = core.config
    core.config = dataclasses.replace(limited, limits=Limits())
    try:
        deposit = asyncio.run(use_cases(core, node).deposits.create(fuzzer.user_id, 10_000))
    finally:
        core.config = limited
    invoices = (
        network.create_invoice("carol", 10_000).bolt11,
        network.create_invoice("carol", None).bolt11,
        network.create_invoice("exchange", 10_000).bolt11,  # our own node's: internal
        network.create_invoice("carol", 10_000, created_at=1_600_000_000, expiry_s=60).bolt11,
    )
    try:
        yield World(core, node, fuzzer, rich, admin, deposit.id, invoices)
    finally:
        network.close()


# -- what requests are made of -------------------------------------------------------------------


def _pools(w: World) -> Pools:
    host = w.core.config.public_host
    amounts = st.one_of(
        st.sampled_from((1_000, 5_000, 1)), st.integers(1, 2_000_000), st.integers(-10, 0)
    )
    invoices = st.sampled_from(w.invoices)
    swaps = "qpzry9x8¹٣𝟗"  # noqa: RUF001 (bech32 characters, and unicode digits)
    mutated = st.tuples(invoices, st.integers(0, 2000), st.sampled_from(swaps)).map(
        lambda t: t[0][: t[1] % len(t[0])] + t[2] + t[0][t[1] % len(t[0]) + 1 :]
    )
    addresses = (
        f"{RICH_USER}@{host}",
        f"{RICH_USER.upper()}@{host}",
        f"{FUZZ_USER}@{host}",
        f"nobody@{host}",
        "someone@example.com",
        "someone@127.0.0.1",
    )
    hostile_amounts = st.one_of(
        st.sampled_from((*HUGE_INTS, 21 * 10**17, 21 * 10**17 + 1)),
        st.sampled_from(("1e309", "1" * 100, "1.0", "-0", "NaN")).map(RawJson),
        st.floats(),
        st.booleans(),
        nasty_text(("1000", "١٠٠٠")),  # noqa: RUF001
    )
    seqs = ("1", "2", "0", str(2**62), str(2**62 + 1))
    return Pools(
        segments=(FUZZ_USER, RICH_USER, ADMIN_USER, FUZZ_USER.upper(), w.deposit_id, "x"),
        queries={
            "amount": ("1000", "5000", "1", "10000000000"),
            "comment": ("hi", "c" * 255, "c" * 256),
            "limit": ("1", "50", "100", "200", "500", "0", "501"),
            "cursor": seqs,
            "after": seqs,
            "status": (*(s.value for s in WithdrawalStatus), "REVIEW"),
        },
        headers={
            "idempotency-key": ("k-1", "k-2", "k" * 128, "k" * 129),
            "last-event-id": ("0", "1", "7", str(2**62), str(2**63)),
        },
        fields={
            "to": st.sampled_from((RICH_USER, FUZZ_USER, ADMIN_USER, RICH_USER.upper(), "nobody")),
            "amount_msat": amounts,
            "memo": st.sampled_from(("lunch", "", "m" * 639, "m" * 640)),
            "bolt11": st.one_of(
                invoices, invoices.map(lambda s: "lightning:" + s.upper()), mutated
            ),
            "lightning_address": st.sampled_from(addresses),
            "reason": st.sampled_from(("fuzz", "r" * 1000, "r" * 1001, " ")),
            "acknowledge_shortfall_msat": st.one_of(st.just(None), amounts),
            "peer": st.sampled_from(("02" + "ab" * 32, "02" + "ab" * 32 + "@127.0.0.1:9735")),
            "amount_sat": amounts,
            "push_sat": st.one_of(st.just(0), amounts),
        },
        hostile_fields={
            name: hostile_amounts
            for name in ("amount_msat", "acknowledge_shortfall_msat", "amount_sat", "push_sat")
        },
        base_fields={
            "to": RICH_USER,
            "amount_msat": 5_000,
            "bolt11": w.invoices[0],
            "reason": "fuzz",
            "peer": "02" + "ab" * 32,
            "amount_sat": 100_000,
        },
    )


def _plans(w: World, route: Route | None) -> st.SearchStrategy[Request]:
    """Requests aimed at ``route`` (None: at no route in particular); the common case first:
    the route's own method, a valid signature, the listener's own key, the normal state."""
    if route is None:
        methods = st.sampled_from(OTHER_METHODS)
        parts = anywhere()
    else:
        own = sorted(route.methods, key=lambda m: m == "HEAD")
        methods = st.tuples(
            st.integers(0, 7), st.sampled_from(own), st.sampled_from(OTHER_METHODS)
        ).map(lambda t: t[1] if t[0] < 7 else t[2])
        parts = aimed_at(route, _pools(w))
    stamps = header_values(("9" * 15, "9" * 16, "-1", "0", "1e12"))
    fuzzed_auth = st.fixed_dictionaries(
        {},
        optional={
            AUTH_HEADERS[0]: header_values((w.fuzzer.api_key, w.admin.api_key, "lk_unknown")),
            AUTH_HEADERS[1]: stamps,
            AUTH_HEADERS[2]: header_values(("0" * 64,)),
        },
    ).map(lambda d: tuple(d.items()))

    @st.composite
    def plan(draw: st.DrawFn) -> Request:
        method = draw(methods)
        path, query, headers, body = draw(parts)
        auth = draw(st.sampled_from(AUTH_MODES))
        if auth == "fuzzed":
            headers = (*draw(fuzzed_auth), *headers)
        if body:
            headers = (*headers, (b"content-length", str(len(body)).encode()))
        return Request(
            method=method,
            path=path,
            query=query,
            headers=headers,
            body=body,
            auth=auth,
            fuzz_timestamp=draw(stamps) if auth == "fuzzed-timestamp" else b"",
            key="own" if auth != "valid" or draw(st.integers(0, 9)) < 9 else "other",
            state=draw(st.sampled_from(STATES)),
        )

    return plan()


# -- the run -------------------------------------------------------------------------------------


def _set_state(w: World, state: str) -> None:
    def op(tx: Tx) -> None:
        if state == "halted":
            halt.halt(tx, reason="fuzz: starts halted", actor="test")
        elif state == "frozen":
            users.set_status(tx, w.fuzzer.user_id, UserStatus.FROZEN)

    if state != "normal":
        w.core.uow.write_sync(op)


def _restore(w: World) -> None:
    """Back to normal: no halt, no acknowledged shortfall, nobody frozen."""
    people = (w.fuzzer, w.rich, w.admin)

    def changed(tx: Tx) -> bool:
        found = [users.user_by_id(tx, c.user_id) for c in people]
        return (
            system_state.get(tx, halt.HALT_KEY) is not None
            or system_state.get(tx, halt.ACK_KEY) is not None
            or any(u is None or u.status is not UserStatus.ACTIVE for u in found)
        )

    def undo(tx: Tx) -> None:
        system_state.delete(tx, halt.HALT_KEY)
        system_state.delete(tx, halt.ACK_KEY)
        for c in people:
            users.set_status(tx, c.user_id, UserStatus.ACTIVE)

    if w.core.uow.read_sync(changed):
        w.core.uow.write_sync(undo)


def _check(route: Route | None, sent: Request, out: Outcome, moved: bool) -> None:
    if out.timed_out:
        raise ContractBroken(f"{route}: no answer", f"no answer in time:\n{sent!r}")
    if out.status >= 500:
        if out.error is None:
            raise ContractBroken(f"{out.status} without an exception", f"{out.body[:300]!r}")
        # Re-raised as the app raised it: hypothesis tells bugs apart by where they were
        # raised, so each distinct crash is shrunk and reported on its own.
        out.error.add_note(f"fuzz request ({out.status}):\n{sent!r}")
        raise out.error
    problem = error_body_problem(route, sent.method, out)
    if problem is not None:
        problem.add_note(repr(sent))
        raise problem
    if moved:
        raise ContractBroken(f"{route}: the ledger changed", f"the ledger changed:\n{sent!r}")


class _Run:
    """One app's fuzz: sends requests, checks the answers, counts what was reached."""

    def __init__(self, w: World, app: Any, routes: list[Route], keys: dict[str, Any]) -> None:
        self.w, self.app, self.routes = w, app, routes
        self.signer = Signer(keys)
        self.reached: Counter[Route] = Counter()
        self.authenticated: Counter[Route] = Counter()
        self.failures = FailureLog()
        self._clients = iter(range(1, 2**24))

    def snapshot(self) -> dict[str, Any]:
        return self.w.core.uow.read_sync(ledger_snapshot)

    def send(self, runner: asyncio.Runner, plan: Request) -> None:
        """Send one request and check it; raises what is wrong with the answer."""
        sent = self.signer.signed(plan)
        _set_state(self.w, plan.state)
        before = self.snapshot()
        # a client address of its own per request: the LNURL callback's rate limit (per
        # address) must not turn later requests away before their handler
        n = next(self._clients)
        client = (f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}", 40000)
        server = ("127.0.0.1", self.w.core.config.port)
        out = runner.run(call_asgi(self.app, sent, server=server, client=client))
        moved = self.snapshot() != before
        _restore(self.w)
        route = route_for(self.routes, sent.method, sent.path)
        if route is not None and sent.method in route.methods:
            self.reached[route] += 1
            past_auth = plan.auth == "valid" and plan.key == "own" and out.status != 401
            self.authenticated[route] += route.signed and past_auth
        try:
            _check(route, sent, out, moved)
        except Exception as exc:
            if not COLLECT:
                raise
            self.failures.add(exc, sent, out.status)

    def sweep(self, runner: asyncio.Runner, pools: Pools) -> None:
        """Every route's plausible request with one thing at a time made hostile, correctly
        signed, in the normal state and with withdrawals halted; then the signature headers
        themselves on the first signed route."""
        for route in self.routes:
            method = sorted(route.methods - {"HEAD"})[0]
            for path, query, headers, body in sweep(route, pools):
                if body:
                    headers = (*headers, (b"content-length", str(len(body)).encode()))
                for state in ("normal", "halted"):
                    plan = Request(method, path, query, headers, body, "valid", state=state)
                    self._swept(runner, plan)
        signed = next(r for r in self.routes if r.signed)
        for value in SWEEP_HEADER:
            method = sorted(signed.methods)[0]
            path = signed.path.encode()
            self._swept(runner, Request(method, path, b"", (), b"", "fuzzed-timestamp", value))
            for i in range(3):
                headers = ((AUTH_HEADERS[i], value),)
                self._swept(runner, Request(method, path, b"", headers, b"", "fuzzed"))

    def _swept(self, runner: asyncio.Runner, plan: Request) -> None:
        try:
            self.send(runner, plan)
        except Exception as exc:
            self.failures.add(exc, self.signer.signed(plan), 0)

    def random(self, runner: asyncio.Runner, target: Route | None) -> BaseException | None:
        @FUZZ_SETTINGS
        @given(plan=_plans(self.w, target))
        def probe(plan: Request) -> None:
            self.send(runner, plan)

        if not DEEP_EXAMPLES:  # a fixed seed of its own per target
            probe = seed(zlib.crc32(str(target).encode()))(probe)
        try:
            probe()
        except Exception as exc:  # already shrunk and described by hypothesis
            return exc
        return None


def _fuzz(w: World, app: Any, routes: list[Route], keys: dict[str, tuple[str, str]]) -> None:
    """The sweep, then the random search on each route in turn and on targets that reach none
    (a failure on one does not stop the others: all are raised together at the end)."""
    run = _Run(w, app, routes, keys)
    start = run.snapshot()
    with asyncio.Runner() as runner:
        run.sweep(runner, _pools(w))
        found = [e for t in [*routes, None] if (e := run.random(runner, t)) is not None]
    distinct: dict[str, BaseException] = {}
    for exc in [*found, *run.failures.exceptions.values()]:
        # one failure per distinct crash site or broken contract (hypothesis raises a group
        # when it found several on one target)
        for e in exc.exceptions if isinstance(exc, BaseExceptionGroup) else [exc]:
            distinct.setdefault(failure_key(e), e)
    if COLLECT and run.failures.found:
        label = f"{w.core.db.dialect} {'admin' if _is_admin(routes) else 'public'}"
        run.failures.write(COLLECT, label)
        pytest.fail("\n\n".join(f"{k}\n{v['request']}" for k, v in run.failures.found.items()))
    if distinct:
        message = f"the fuzz found {len(distinct)} distinct failures"
        raise BaseExceptionGroup(message, [*distinct.values()])
    assert run.snapshot() == start
    assert w.core.uow.read_sync(check_ledger).ok
    missed = [str(r) for r in routes if not run.reached[r]]
    assert not missed, f"routes never reached: {missed}"
    unauthenticated = [str(r) for r in routes if r.signed and not run.authenticated[r]]
    assert not unauthenticated, f"signed routes never reached past auth: {unauthenticated}"


def _is_admin(routes: list[Route]) -> bool:
    return any(r.path.startswith("/admin/") for r in routes)


def _enumerated(routes: list[Route]) -> set[tuple[str, str, bool]]:
    return {(m, r.path, r.signed) for r in routes for m in r.methods if m != "HEAD"}


def test_fuzzing_every_public_route_never_5xx_and_never_moves_money(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.CRITICAL, logger="lngate")  # each crash is raised with its traceback
    app = create_app(world.core, use_cases(world.core, world.node))
    routes = routes_of(app)
    assert _enumerated(routes) >= PUBLIC_ROUTES, PUBLIC_ROUTES - _enumerated(routes)
    keys = {
        "own": (world.fuzzer.api_key, world.fuzzer.api_secret),
        "other": (world.admin.api_key, world.admin.api_secret),
    }
    _fuzz(world, app, routes, keys)


def test_fuzzing_every_admin_route_never_5xx_and_never_moves_money(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.CRITICAL, logger="lngate")  # each crash is raised with its traceback
    app = create_admin_app(world.core, use_cases(world.core, world.node))
    routes = routes_of(app)
    assert _enumerated(routes) >= ADMIN_ROUTES, ADMIN_ROUTES - _enumerated(routes)
    keys = {
        "own": (world.admin.api_key, world.admin.api_secret),
        "other": (world.fuzzer.api_key, world.fuzzer.api_secret),
    }
    _fuzz(world, app, routes, keys)
