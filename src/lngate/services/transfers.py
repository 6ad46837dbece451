"""Instant internal transfers between two users of the ledger.

A transfer is a ``TransferOp``: run alone it is a closure over a transaction (the Python path,
used on SQLite); on PostgreSQL the writer hands many at once to one ``lngate_transfer_batch``
call (``TransferBatch``), which applies the same rules in the same order and answers with the
same outcomes. Both paths share the refusals below, so their errors are the same too.
``Transfers`` is the use case the API calls: one write per transfer, nothing read before it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from lngate.domain.errors import (
    AccountFrozen,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidRequest,
    InvariantBroken,
    LedgerRefused,
    LngateError,
    UnknownUser,
)
from lngate.domain.inputs import check_text
from lngate.domain.ledger import TransferResult, TransferSpec
from lngate.domain.money import parse_amount_msat
from lngate.services.accounts import iso_ms, require_user
from lngate.services.clock import SYSTEM_CLOCK
from lngate.services.idempotent import CONFLICT_MESSAGE, run_once
from lngate.services.ports import Clock, UnitOfWork
from lngate.store import events, transfer_batch, users
from lngate.store.db import Dialect, Params, Row, Tx
from lngate.store.ledger import apply_transfer
from lngate.store.transfer_batch import Outcome as BatchOutcome
from lngate.store.transfer_batch import Request
from lngate.store.users import UserStatus
from lngate.store.writer import Outcome

MEMO_MAX_CHARS = 640


def validate_memo(memo: Any) -> str:
    if memo is None:
        return ""
    if not isinstance(memo, str) or len(memo) > MEMO_MAX_CHARS:
        raise InvalidRequest(f"memo must be a string of at most {MEMO_MAX_CHARS} characters")
    check_text(memo, name="memo")
    return memo


def ledger_refusal(result: TransferResult) -> LngateError:
    """The error of a ledger result other than OK and EXISTS."""
    if result is TransferResult.EXCEEDS_CREDITS:
        return InsufficientFunds("the available balance does not cover this transfer")
    return LedgerRefused(f"the ledger refused the transfer: {result.value}")


def apply_or_raise(tx: Tx, spec: TransferSpec) -> TransferResult:
    """Apply a transfer; refusals become typed errors. OK and EXISTS are returned."""
    result = apply_transfer(tx, spec)
    if result not in (TransferResult.OK, TransferResult.EXISTS):
        raise ledger_refusal(result)
    return result


def _sender_unknown() -> LngateError:
    return UnknownUser("the caller no longer exists")


def _sender_frozen() -> LngateError:
    return AccountFrozen("this account is frozen")


def _self_transfer() -> LngateError:
    return InvalidRequest("cannot transfer to yourself")


def _recipient_frozen(to_username: str) -> LngateError:
    return AccountFrozen(f"{to_username} cannot receive transfers now")


def _unknown_recipient(to_username: str) -> LngateError:
    return UnknownUser(f"no user named {to_username!r}")


@dataclass(frozen=True, slots=True)
class TransferReceipt:
    """What ``POST /v1/transfers`` answers (``schemas.Transfer``; ``from_`` is ``from`` on the
    wire), and what the two users' ``transfer.*`` events carry."""

    id: str
    from_: str
    to: str
    amount_msat: int
    memo: str
    status: str  # always "completed": a transfer is instant
    created_at: str

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> TransferReceipt:
        return cls(
            id=body["id"],
            from_=body["from"],
            to=body["to"],
            amount_msat=body["amount_msat"],
            memo=body["memo"],
            status=body["status"],
            created_at=body["created_at"],
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "from": self.from_,
            "to": self.to,
            "amount_msat": self.amount_msat,
            "memo": self.memo,
            "status": self.status,
            "created_at": self.created_at,
        }


class Transfers:
    """Instant transfers between two account holders, once per Idempotency-Key: a replay
    answers the first receipt again and moves nothing."""

    def __init__(self, uow: UnitOfWork, *, max_amount_msat: int, clock: Clock) -> None:
        self._uow = uow
        self._max_amount_msat = max_amount_msat
        self._batch = TransferBatch(clock)

    async def transfer(
        self,
        sender_id: str,
        to_username: str,
        amount_msat: int,
        memo: str,
        *,
        idempotency_key: str,
        request_hash: str,
    ) -> TransferReceipt:
        op = transfer_op(
            sender_id,
            to_username,
            amount_msat,
            memo,
            idempotency_key=idempotency_key,
            request_hash=request_hash,
            max_amount_msat=self._max_amount_msat,
            batch=self._batch,
        )
        return TransferReceipt.from_json(await self._uow.write(op))


@dataclass(frozen=True, slots=True)
class TransferOp:
    """Moves ``amount_msat`` from the sender to ``to_username``, once per Idempotency-Key.
    Answers the receipt as JSON: what the idempotency record and the events store."""

    request: Request
    batch: TransferBatch

    def __call__(self, tx: Tx) -> dict[str, Any]:
        r = self.request
        return run_once(tx, r.sender_id, r.idempotency_key, r.request_hash, self._move)

    def batch_statement(self, dialect: Dialect) -> TransferBatch | None:
        if dialect is Dialect.POSTGRES and self.request.storable():
            return self.batch
        return None

    def _move(self, tx: Tx) -> dict[str, Any]:
        r = self.request
        sender = users.user_by_id(tx, r.sender_id)
        if sender is None:
            raise _sender_unknown()
        if sender.status is UserStatus.FROZEN:
            raise _sender_frozen()
        recipient = require_user(tx, r.to_username)
        if recipient.id == sender.id:
            raise _self_transfer()
        if recipient.status is UserStatus.FROZEN:
            raise _recipient_frozen(r.to_username)
        # The id derives from the key: a concurrent duplicate in another process meets EXISTS.
        transfer_id = f"xfer:{sender.id}:{r.idempotency_key}"
        spec = TransferSpec(
            transfer_id, sender.account_id, recipient.account_id, r.amount_msat, memo=r.memo
        )
        result = apply_or_raise(tx, spec)
        receipt = {
            "id": transfer_id,
            "from": sender.username,
            "to": recipient.username,
            "amount_msat": r.amount_msat,
            "memo": r.memo,
            "status": "completed",
            "created_at": iso_ms(self.batch.clock.now_ms()),
        }
        if result is TransferResult.OK:
            events.append(tx, sender.id, "transfer.sent", receipt)
            events.append(tx, recipient.id, "transfer.received", receipt)
        return receipt


class TransferBatch:
    """The ``BatchStatement`` of transfers: one ``lngate_transfer_batch`` call for many, all
    stamped with ``clock``'s time (the writer groups the ops that name the same batch)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    def statement(self, ops: Sequence[TransferOp]) -> tuple[str, Params]:
        at_ms = self.clock.now_ms()
        return transfer_batch.statement(
            [op.request for op in ops], now_ms=at_ms, created_at=iso_ms(at_ms)
        )

    def outcomes(self, ops: Sequence[TransferOp], rows: list[Row]) -> list[Outcome]:
        answers = transfer_batch.answers(rows, len(ops))
        pairs = zip(ops, answers, strict=True)
        return [_outcome(op.request, outcome, body) for op, (outcome, body) in pairs]


TRANSFER_BATCH = TransferBatch(SYSTEM_CLOCK)


def _outcome(request: Request, outcome: str, body: str | None) -> Outcome:
    if outcome in (BatchOutcome.OK, BatchOutcome.REPLAYED):
        if body is None:  # committed already: this caller alone gets the error
            return Outcome(error=InvariantBroken(f"transfer {outcome} without its receipt"))
        return Outcome(value=orjson.loads(body))
    return Outcome(error=_batch_refusal(request, outcome))


def _batch_refusal(request: Request, outcome: str) -> LngateError:
    if outcome == BatchOutcome.IDEMPOTENCY_CONFLICT:
        return IdempotencyConflict(CONFLICT_MESSAGE)
    if outcome == BatchOutcome.SENDER_NOT_FOUND:
        return _sender_unknown()
    if outcome == BatchOutcome.SENDER_FROZEN:
        return _sender_frozen()
    if outcome == BatchOutcome.UNKNOWN_USER:
        return _unknown_recipient(request.to_username)
    if outcome == BatchOutcome.SELF_TRANSFER:
        return _self_transfer()
    if outcome == BatchOutcome.RECIPIENT_FROZEN:
        return _recipient_frozen(request.to_username)
    return ledger_refusal(TransferResult(outcome))  # a ValueError here is a bug in the function


def transfer_op(
    sender_id: str,
    to_username: str,
    amount_msat: int,
    memo: str,
    *,
    idempotency_key: str,
    request_hash: str,
    max_amount_msat: int,
    batch: TransferBatch = TRANSFER_BATCH,
) -> TransferOp:
    """A write operation moving ``amount_msat`` from the sender to ``to_username``, once per
    Idempotency-Key. Validation that needs no database happens now, before anything queues."""
    parse_amount_msat(amount_msat)
    if amount_msat > max_amount_msat:
        raise InvalidRequest(f"amount_msat must not exceed {max_amount_msat} for a transfer")
    request = Request(
        sender_id, to_username, amount_msat, validate_memo(memo), idempotency_key, request_hash
    )
    return TransferOp(request, batch)
