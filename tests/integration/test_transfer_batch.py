"""The batched PostgreSQL path of transfers (``lngate_transfer_batch``) against the Python
path: the same sequence of requests, applied to two identical sets of users, one batch at a
time, gives the same answer for every request and leaves the same balances, events and stored
responses: replays, a key reused with other fields, overdrafts, frozen senders and recipients,
unknown recipients, transfers to oneself."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lngate.bootstrap import Core
from lngate.domain.ledger import AccountKind, TransferSpec
from lngate.services.reconciliation import check_ledger
from lngate.services.transfers import TRANSFER_BATCH, TransferOp, transfer_op
from lngate.store import users
from lngate.store.db import Dialect, Tx
from lngate.store.ledger import apply_transfer, get_account
from lngate.store.users import Role, User, UserStatus
from tests.conftest import funded_user

N_USERS = 3
UNKNOWN = N_USERS  # a recipient index that names nobody
FUNDING_MSAT = 10_000

transfers = st.tuples(
    st.integers(0, N_USERS - 1),  # sender
    st.integers(0, N_USERS),  # recipient (N_USERS: unknown)
    st.sampled_from([1, 999, 4_000, 10_001]),
    st.sampled_from(["k1", "k2", "k3", "k4"]),  # few keys: replays and reuse with other fields
    st.sampled_from(["", "rent", 'quote " and \\ and é']),
)
freezes = st.lists(st.tuples(st.integers(0, N_USERS - 1), st.booleans()), max_size=2)
batches = st.lists(st.tuples(freezes, st.lists(transfers, min_size=1, max_size=8)), max_size=6)


@pytest.fixture
def pg_core(core: Core) -> Core:
    if core.db.dialect is not Dialect.POSTGRES:
        pytest.skip("the batched path is PostgreSQL's")
    return core


class World:
    """N_USERS funded users whose names and ids carry a prefix of their own."""

    def __init__(self, core: Core, prefix: str) -> None:
        self.core = core
        self.prefix = prefix
        self.users: list[User] = core.uow.write_sync(self._open)

    def _open(self, tx: Tx) -> list[User]:
        adjustments = self.core.system_accounts[AccountKind.ADJUSTMENTS.value]
        opened = []
        for i in range(N_USERS):
            user = users.insert_user(tx, f"{self.prefix}u{i}", Role.USER)
            spec = TransferSpec(f"fund:{uuid.uuid4()}", adjustments, user.account_id, FUNDING_MSAT)
            apply_transfer(tx, spec)
            opened.append(user)
        return opened

    def name(self, index: int) -> str:
        return f"{self.prefix}u{index}" if index < N_USERS else f"{self.prefix}nobody"

    def op(self, sender: int, to: int, amount_msat: int, key: str, memo: str) -> TransferOp:
        return transfer_op(
            self.users[sender].id,
            self.name(to),
            amount_msat,
            memo,
            idempotency_key=key,
            request_hash=f"{to}:{amount_msat}:{memo}",  # the request's fields, as the API hashes
            max_amount_msat=10**12,
        )

    def freeze(self, index: int, frozen: bool) -> None:
        status = UserStatus.FROZEN if frozen else UserStatus.ACTIVE
        self.core.uow.write_sync(lambda tx: users.set_status(tx, self.users[index].id, status))

    def canonical(self, answer: Any) -> Any:
        """The answer with this world's names and ids replaced by indices (and no clock)."""
        text = repr(answer)
        for i, user in enumerate(self.users):
            text = text.replace(user.id, f"<id{i}>")
        text = text.replace(self.prefix, "<w>")
        return text

    def state(self, tx: Tx) -> list[tuple[Any, ...]]:
        rows = []
        for user in self.users:
            account = get_account(tx, user.account_id)
            events = tx.all(
                "SELECT type, data_json FROM events WHERE user_id = :u ORDER BY seq",
                {"u": user.id},
            )
            stored = tx.all(
                "SELECT key, request_hash, status_code FROM idempotency_keys WHERE user_id = :u "
                "ORDER BY key",
                {"u": user.id},
            )
            assert account is not None
            rows.append((account.balance, [e[0] for e in events], stored))
        return rows


def python_path(world: World, ops: list[TransferOp]) -> list[Any]:
    """What the writer does on SQLite: each op in a savepoint of one transaction."""
    answers: list[Any] = []
    with world.core.db.transaction() as tx:
        for op in ops:
            try:
                with tx.savepoint():
                    answers.append(op(tx))
            except Exception as exc:
                answers.append((type(exc).__name__, str(exc)))
    return answers


def batched_path(world: World, ops: list[TransferOp]) -> list[Any]:
    """What the writer does on PostgreSQL: one statement for the batch, outside a transaction."""
    conn = world.core.db.connect()
    try:
        sql, params = TRANSFER_BATCH.statement(ops)
        rows = world.core.db.single_statements_on(conn).all(sql, params)
    finally:
        conn.close()
    outcomes = TRANSFER_BATCH.outcomes(ops, rows)
    return [
        o.value if o.error is None else (type(o.error).__name__, str(o.error)) for o in outcomes
    ]


def without_clock(answer: Any) -> Any:
    if isinstance(answer, dict):
        return {k: v for k, v in answer.items() if k != "created_at"}
    return answer


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=batches)
def test_the_batched_path_answers_and_writes_exactly_what_the_python_path_does(
    pg_core: Core, plan: list[tuple[list[tuple[int, bool]], list[tuple[int, int, int, str, str]]]]
) -> None:
    tag = uuid.uuid4().hex[:8]
    python_world, batch_world = World(pg_core, f"p{tag}"), World(pg_core, f"b{tag}")
    for freeze_steps, steps in plan:
        for index, frozen in freeze_steps:
            python_world.freeze(index, frozen)
            batch_world.freeze(index, frozen)
        expected = python_path(python_world, [python_world.op(*s) for s in steps])
        got = batched_path(batch_world, [batch_world.op(*s) for s in steps])
        for step, want, have in zip(steps, expected, got, strict=True):
            assert batch_world.canonical(without_clock(have)) == python_world.canonical(
                without_clock(want)
            ), step
    python_state = pg_core.uow.read_sync(python_world.state)
    batch_state = pg_core.uow.read_sync(batch_world.state)
    assert batch_world.canonical(batch_state) == python_world.canonical(python_state)
    assert pg_core.uow.read_sync(check_ledger).ok


def test_a_replay_answers_the_stored_receipt_byte_for_byte(pg_core: Core) -> None:
    world = World(pg_core, f"r{uuid.uuid4().hex[:8]}")
    first = batched_path(world, [world.op(0, 1, 1_000, "k", "")])
    again = batched_path(world, [world.op(0, 1, 1_000, "k", "")] * 2)
    assert again == first * 2  # created_at too: the stored answer, not a new one
    assert pg_core.uow.read_sync(world.state)[1][0].credits_posted_msat == FUNDING_MSAT + 1_000


def test_a_self_transfer_and_an_unknown_recipient_are_refused_and_change_nothing(
    pg_core: Core,
) -> None:
    world = World(pg_core, f"s{uuid.uuid4().hex[:8]}")
    before = pg_core.uow.read_sync(world.state)
    answers = batched_path(world, [world.op(0, 0, 5, "a", ""), world.op(0, UNKNOWN, 5, "b", "")])
    assert answers == [
        ("InvalidRequest", "cannot transfer to yourself"),
        ("UnknownUser", f"no user named {world.name(UNKNOWN)!r}"),
    ]
    assert pg_core.uow.read_sync(world.state) == before


async def test_concurrent_transfers_on_postgres_go_through_one_statement_per_batch(
    pg_core: Core,
) -> None:
    alice = funded_user(pg_core, "alice", 10_000)
    funded_user(pg_core, "bob")
    assert pg_core.writer is not None
    before = pg_core.writer.single_statement_batches

    async def send(i: int) -> str:
        op = transfer_op(
            alice.user_id,
            "bob",
            1_000,
            "",
            idempotency_key=f"c{i}",
            request_hash="h",
            max_amount_msat=10**12,
        )
        try:
            await pg_core.uow.write(op)
        except Exception as exc:
            return type(exc).__name__
        return "ok"

    results = await asyncio.gather(*(send(i) for i in range(100)))
    assert results.count("ok") == 10
    assert results.count("InsufficientFunds") == 90
    assert pg_core.writer.single_statement_batches > before
    assert pg_core.uow.read_sync(check_ledger).ok
