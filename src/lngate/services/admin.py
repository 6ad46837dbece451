"""Operator actions on users, withdrawals' circuit breaker and the audit log; each action that
changes something is audited in its own transaction, whichever entry point (admin API or CLI)
asks for it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lngate.domain.errors import InvalidRequest
from lngate.domain.users import UserStatus
from lngate.domain.withdrawals import WithdrawalStatus
from lngate.lightning.lnd.signer import SignerProbe
from lngate.services import halt
from lngate.services.accounts import account_view, iso_ms, require_user
from lngate.services.halt import HaltRecord
from lngate.services.ports import Clock, UnitOfWork, Wakeup
from lngate.services.reconciliation import LedgerReport, check_ledger
from lngate.services.solvency import ReconciliationReport
from lngate.store import audit, system_state, users
from lngate.store import withdrawals as withdrawal_store
from lngate.store.db import Tx
from lngate.store.withdrawals import Withdrawal

AUDIT_PAGE_MAX = 1000
REPORTS_PAGE_MAX = 100
USERS_PAGE_MAX = 50
SIGNER_MAX_AGE_S = 0.0  # the status page checks the signer afresh


@dataclass(frozen=True, slots=True)
class AdminUserView:
    """A user as an operator sees it (``schemas.AdminUser``)."""

    user_id: str
    username: str
    available_msat: int
    pending_msat: int
    lightning_address: str
    status: str
    role: str


@dataclass(frozen=True, slots=True)
class FreezeChange:
    username: str
    frozen: bool
    changed: bool  # False if the user already was in that state

    def as_json(self) -> dict[str, Any]:
        return {"username": self.username, "frozen": self.frozen, "changed": self.changed}


@dataclass(frozen=True, slots=True)
class HaltChange:
    halted: bool
    changed: bool  # False if withdrawals already were in that state

    def as_json(self) -> dict[str, Any]:
        return {"halted": self.halted, "changed": self.changed}


@dataclass(frozen=True, slots=True)
class SignerStatus:
    rpc_host: str
    reachable: bool
    detail: str
    checked_at: int  # Unix time in seconds


@dataclass(frozen=True, slots=True)
class AdminStatus:
    withdrawals_halted: HaltRecord | None
    signer: SignerStatus | None  # a watch-only node's remote signer


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    at: str
    actor: str
    action: str
    subject: str
    reason: str
    details: dict[str, Any]
    hash: str


@dataclass(frozen=True, slots=True)
class AuditPage:
    records: tuple[AuditEntry, ...]  # oldest first
    next_after: int | None


@dataclass(frozen=True, slots=True)
class AuditVerification:
    ok: bool
    records: int
    problems: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "records": self.records, "problems": list(self.problems)}


@dataclass(frozen=True, slots=True)
class StoredReconciliation:
    id: int
    at_ms: int
    ok: bool
    shortfall_msat: int
    report: ReconciliationReport


class Administration:
    """What operators do and look at: freezing users, halting and resuming withdrawals, the
    audit log and its hash chain, the stored reconciliation reports, a user's account."""

    def __init__(
        self,
        uow: UnitOfWork,
        clock: Clock,
        *,
        public_host: str,
        withdrawal_work: Wakeup,
        signer: SignerProbe | None,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._public_host = public_host
        self._withdrawal_work = withdrawal_work
        self._signer = signer

    # -- users ----------------------------------------------------------------------------

    async def freeze(self, username: str, *, reason: str, actor: str) -> FreezeChange:
        """No withdrawals and no transfers out; deposits still arrive."""
        return await self._uow.write(set_frozen_op(username, True, reason=reason, actor=actor))

    async def unfreeze(self, username: str, *, reason: str, actor: str) -> FreezeChange:
        return await self._uow.write(set_frozen_op(username, False, reason=reason, actor=actor))

    def set_frozen_sync(
        self, username: str, frozen: bool, *, reason: str, actor: str
    ) -> FreezeChange:
        return self._uow.write_sync(set_frozen_op(username, frozen, reason=reason, actor=actor))

    async def user(self, username: str) -> AdminUserView:
        return await self._uow.read(lambda tx: user_view(tx, username, self._public_host))

    async def search_users(self, prefix: str, limit: int = USERS_PAGE_MAX) -> list[AdminUserView]:
        """Account holders whose username starts with ``prefix``, by name, ``limit`` at most."""
        if not 1 <= limit <= USERS_PAGE_MAX:
            raise InvalidRequest(f"limit must be between 1 and {USERS_PAGE_MAX}")
        prefix = prefix.strip().lower()[:64]

        def read(tx: Tx) -> list[AdminUserView]:
            found = users.holders_by_prefix(tx, prefix, limit)
            return [user_view(tx, u.username, self._public_host) for u in found]

        return await self._uow.read(read)

    # -- the withdrawal circuit breaker ------------------------------------------------------

    async def halt(self, *, reason: str, actor: str) -> HaltChange:
        """Halt withdrawals now (deposits and transfers go on)."""
        return await self._uow.write(self._halt_op(reason, actor))

    def halt_sync(self, *, reason: str, actor: str) -> HaltChange:
        return self._uow.write_sync(self._halt_op(reason, actor))

    async def resume(
        self, *, reason: str, actor: str, acknowledge_shortfall_msat: int | None = None
    ) -> HaltChange:
        """Resume withdrawals; ``acknowledge_shortfall_msat``: a shortfall the operator has
        looked into and accepts. The payment worker of this process is woken at once."""
        changed = await self._uow.write(_resume_op(reason, actor, acknowledge_shortfall_msat))
        self._withdrawal_work.fire()
        return changed

    def resume_sync(
        self, *, reason: str, actor: str, acknowledge_shortfall_msat: int | None = None
    ) -> HaltChange:
        changed = self._uow.write_sync(_resume_op(reason, actor, acknowledge_shortfall_msat))
        self._withdrawal_work.fire()
        return changed

    async def status(self) -> AdminStatus:
        """The halt, and a watch-only node's remote signer (checked now)."""
        signer = None
        if self._signer is not None:
            health = await self._signer.acheck(SIGNER_MAX_AGE_S)
            signer = SignerStatus(
                health.rpc_host, health.reachable, health.detail, int(health.checked_at_s)
            )
        return AdminStatus(await self._uow.read(halt.halted), signer)

    def _halt_op(self, reason: str, actor: str) -> Callable[[Tx], HaltChange]:
        def op(tx: Tx) -> HaltChange:
            at_ms = self._clock.now_ms()  # in the transaction: when the halt took effect
            return HaltChange(True, halt.halt(tx, reason=reason, actor=actor, at_ms=at_ms))

        return op

    # -- the audit log and the reports -------------------------------------------------------

    async def audit_page(self, *, after: int, limit: int) -> AuditPage:
        """The audit log after ``after``, oldest first, each record chained to the one
        before it."""
        return await self._uow.read(lambda tx: audit_page(tx, after=after, limit=limit))

    async def verify_audit(self) -> AuditVerification:
        return await self._uow.read(_verify_audit)

    def verify_audit_sync(self) -> AuditVerification:
        """Recompute the hash chain: any record altered or removed is a problem."""
        return self._uow.read_sync(_verify_audit)

    def check_ledger_sync(self) -> LedgerReport:
        """The ledger's invariants, from the stored transfers up: nothing stored, nothing
        halted (``Solvency.reconcile`` also compares the books with the node)."""
        return self._uow.read_sync(check_ledger)

    async def reconciliation_reports(self, limit: int) -> list[StoredReconciliation]:
        """The latest stored reconciliation reports, newest first."""
        if not 1 <= limit <= REPORTS_PAGE_MAX:
            raise InvalidRequest(f"limit must be between 1 and {REPORTS_PAGE_MAX}")
        rows = await self._uow.read(lambda tx: system_state.reports(tx, limit))
        return [
            StoredReconciliation(
                id=row["id"],
                at_ms=row["at_ms"],
                ok=row["ok"],
                shortfall_msat=row["shortfall_msat"],
                report=ReconciliationReport.from_json(row["report"]),
            )
            for row in rows
        ]


def set_frozen_op(
    username: str, frozen: bool, *, reason: str, actor: str
) -> Callable[[Tx], FreezeChange]:
    """Freeze (no withdrawals, no transfers out) or unfreeze a user; unchanged if it already
    was."""
    if not reason.strip():
        raise InvalidRequest("freezing or unfreezing needs a reason")

    def op(tx: Tx) -> FreezeChange:
        user = require_user(tx, username)
        status = UserStatus.FROZEN if frozen else UserStatus.ACTIVE
        if user.status is status:
            return FreezeChange(username, frozen, False)
        users.set_status(tx, user.id, status)
        audit.append(
            tx,
            actor=actor,
            action="user.freeze" if frozen else "user.unfreeze",
            subject=f"user:{username}",
            reason=reason,
        )
        return FreezeChange(username, frozen, True)

    return op


def _resume_op(
    reason: str, actor: str, acknowledge_shortfall_msat: int | None
) -> Callable[[Tx], HaltChange]:
    def op(tx: Tx) -> HaltChange:
        changed = halt.resume(
            tx, reason=reason, actor=actor, acknowledge_shortfall_msat=acknowledge_shortfall_msat
        )
        return HaltChange(False, changed)

    return op


def user_view(tx: Tx, username: str, public_host: str) -> AdminUserView:
    user = require_user(tx, username)
    view = account_view(tx, user, public_host)
    return AdminUserView(
        user_id=view.user_id,
        username=view.username,
        available_msat=view.available_msat,
        pending_msat=view.pending_msat,
        lightning_address=view.lightning_address,
        status=view.status,
        role=user.role.value,
    )


def audit_page(tx: Tx, *, after: int, limit: int) -> AuditPage:
    if not 1 <= limit <= AUDIT_PAGE_MAX:
        raise InvalidRequest(f"limit must be between 1 and {AUDIT_PAGE_MAX}")
    records = audit.records(tx, after, limit)
    entries = tuple(
        AuditEntry(
            seq=r.seq,
            at=iso_ms(r.at_ms),
            actor=r.actor,
            action=r.action,
            subject=r.subject,
            reason=r.reason,
            details=r.details,
            hash=r.hash,
        )
        for r in records
    )
    return AuditPage(entries, records[-1].seq if len(records) == limit else None)


def _verify_audit(tx: Tx) -> AuditVerification:
    problems = audit.verify(tx)
    count = tx.scalar("SELECT COUNT(*) FROM audit_log")
    return AuditVerification(not problems, int(count), tuple(problems))


def review_queue(tx: Tx, status: WithdrawalStatus, limit: int) -> list[Withdrawal]:
    """Withdrawals in ``status`` (by default those waiting for an operator), oldest first."""
    return withdrawal_store.with_status(tx, status, limit)
