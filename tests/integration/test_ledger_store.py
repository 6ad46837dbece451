"""The SQL ledger, held step for step to the reference ledger, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lngate.bootstrap import Core
from lngate.domain.ledger import (
    AccountFlags,
    AccountKind,
    ReferenceLedger,
    TransferFlag,
    TransferResult,
    TransferSpec,
)
from lngate.services.reconciliation import check_ledger
from lngate.store.ledger import apply_transfer, create_account, get_account

N_USERS = 3

# An action: (kind, from, to, amount, hold index). Accounts 0..N_USERS-1 are users, N_USERS is
# the node (an asset, allowed to go "negative" as seen from a user).
actions = st.lists(
    st.tuples(
        st.sampled_from(["move", "hold", "post", "void", "replay"]),
        st.integers(0, N_USERS),
        st.integers(0, N_USERS),
        st.integers(-5, 12_000),
        st.integers(0, 7),
    ),
    max_size=40,
)


def _open_accounts(core: Core, ref: ReferenceLedger) -> list[int]:
    tag = uuid.uuid4().hex

    def op(tx):  # type: ignore[no-untyped-def]
        ids = []
        for i in range(N_USERS + 1):
            flags = (
                AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS if i < N_USERS else AccountFlags.NONE
            )
            ids.append(create_account(tx, f"test:{tag}:{i}", AccountKind.USER, flags))
        return ids

    ids = core.uow.write_sync(op)
    for i, account_id in enumerate(ids):
        ref.open_account(
            account_id,
            AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS if i < N_USERS else AccountFlags.NONE,
        )
    return ids


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=actions)
def test_sql_ledger_matches_the_reference_and_keeps_every_invariant(core: Core, steps) -> None:  # type: ignore[no-untyped-def]
    ref = ReferenceLedger()
    ids = _open_accounts(core, ref)
    node = ids[N_USERS]
    # fund the users from the node so there is something to move
    for i in range(N_USERS):
        spec = TransferSpec(f"fund:{uuid.uuid4()}", node, ids[i], 10_000)
        assert ref.apply(spec) is core.uow.write_sync(lambda tx, s=spec: apply_transfer(tx, s))
    holds: list[str] = []
    written: list[TransferSpec] = []
    for kind, a, b, amount, h in steps:
        spec = _spec(kind, ids[a], ids[b], amount, h, holds, written)
        expected = ref.apply(spec)
        got = core.uow.write_sync(lambda tx, s=spec: apply_transfer(tx, s))
        assert got is expected, (spec, got, expected)
        if kind == "hold" and got is TransferResult.OK:
            holds.append(spec.id)
        if got is TransferResult.OK:
            written.append(spec)
    for account_id in ids:
        stored = core.uow.read_sync(lambda tx, i=account_id: get_account(tx, i))
        assert stored is not None and stored.balance == ref.balance(account_id)
        if account_id != node:
            assert stored.balance.available_msat >= 0
    assert core.uow.read_sync(check_ledger).ok


def _spec(kind, debit, credit, amount, h, holds, written) -> TransferSpec:  # type: ignore[no-untyped-def]
    new_id = str(uuid.uuid4())
    if kind == "hold":
        return TransferSpec(new_id, debit, credit, amount, flag=TransferFlag.PENDING)
    if kind in ("post", "void") and holds:
        pending_id = holds[h % len(holds)]
        flag = TransferFlag.POST_PENDING if kind == "post" else TransferFlag.VOID_PENDING
        return TransferSpec(
            new_id, 0, 0, amount if kind == "post" else 0, flag=flag, pending_id=pending_id
        )
    if kind == "replay" and written:
        return written[h % len(written)]
    return TransferSpec(new_id, debit, credit, amount)


def test_concurrent_writers_never_overdraw(core: Core) -> None:
    """Two writers with their own connections race 100 debits of 1,000 against 10,000."""
    ref = ReferenceLedger()
    ids = _open_accounts(core, ref)
    user, other, node = ids[0], ids[1], ids[N_USERS]
    core.uow.write_sync(lambda tx: apply_transfer(tx, TransferSpec("seed", node, user, 10_000)))
    results: list[TransferResult] = []
    lock = threading.Lock()

    def race(n: int) -> None:
        for _ in range(n):
            spec = TransferSpec(str(uuid.uuid4()), user, other, 1_000)
            with core.db.transaction() as tx:  # a connection per thread: no shared writer
                result = apply_transfer(tx, spec)
            with lock:
                results.append(result)

    threads = [threading.Thread(target=race, args=(25,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(TransferResult.OK) == 10
    assert results.count(TransferResult.EXCEEDS_CREDITS) == 90
    account = core.uow.read_sync(lambda tx: get_account(tx, user))
    assert account is not None and account.balance.available_msat == 0
    assert core.uow.read_sync(check_ledger).ok


async def test_a_caller_that_gives_up_does_not_break_the_writer(core: Core) -> None:
    """A cancelled waiter (its task was cancelled) must not kill the writer thread."""
    import asyncio

    assert core.writer is not None
    slow = threading.Event()

    def blocking(tx):  # type: ignore[no-untyped-def]
        slow.wait(5)
        return 1

    first = asyncio.ensure_future(core.uow.write(blocking))  # occupies the writer
    await asyncio.sleep(0.05)
    doomed = asyncio.ensure_future(core.uow.write(lambda tx: 2))  # queued behind it
    await asyncio.sleep(0.05)
    doomed.cancel()
    slow.set()
    assert await asyncio.wait_for(first, 5) == 1
    assert await asyncio.wait_for(core.uow.write(lambda tx: 3), 5) == 3  # the writer still works
