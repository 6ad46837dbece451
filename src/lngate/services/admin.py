"""Operator actions on users and the audit log; each action is audited in its own transaction."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lngate.domain.errors import InvalidRequest
from lngate.domain.users import UserStatus
from lngate.domain.withdrawals import WithdrawalStatus
from lngate.services.accounts import account_view, iso_ms, require_user
from lngate.store import audit, system_state, users
from lngate.store import withdrawals as withdrawal_store
from lngate.store.db import Tx
from lngate.store.withdrawals import Withdrawal

AUDIT_PAGE_MAX = 1000


def set_frozen_op(username: str, frozen: bool, *, reason: str, actor: str) -> Callable[[Tx], bool]:
    """Freeze (no withdrawals, no transfers out) or unfreeze a user; False if unchanged."""
    if not reason.strip():
        raise InvalidRequest("freezing or unfreezing needs a reason")

    def op(tx: Tx) -> bool:
        user = require_user(tx, username)
        status = UserStatus.FROZEN if frozen else UserStatus.ACTIVE
        if user.status is status:
            return False
        users.set_status(tx, user.id, status)
        audit.append(
            tx,
            actor=actor,
            action="user.freeze" if frozen else "user.unfreeze",
            subject=f"user:{username}",
            reason=reason,
        )
        return True

    return op


def user_view(tx: Tx, username: str, public_host: str) -> dict[str, Any]:
    user = require_user(tx, username)
    view = account_view(tx, user, public_host)
    view["role"] = user.role.value
    return view


def audit_page(tx: Tx, *, after: int, limit: int) -> dict[str, Any]:
    if not 1 <= limit <= AUDIT_PAGE_MAX:
        raise InvalidRequest(f"limit must be between 1 and {AUDIT_PAGE_MAX}")
    records = audit.records(tx, after, limit)
    return {
        "records": [
            {
                "seq": r.seq,
                "at": iso_ms(r.at_ms),
                "actor": r.actor,
                "action": r.action,
                "subject": r.subject,
                "reason": r.reason,
                "details": r.details,
                "hash": r.hash,
            }
            for r in records
        ],
        "next_after": records[-1].seq if len(records) == limit else None,
    }


def review_queue(tx: Tx, status: WithdrawalStatus, limit: int) -> list[Withdrawal]:
    """Withdrawals in ``status`` (by default those waiting for an operator), oldest first."""
    return withdrawal_store.with_status(tx, status, limit)


def reconciliation_reports(tx: Tx, limit: int) -> list[dict[str, Any]]:
    """The latest stored reconciliation reports, newest first."""
    return system_state.reports(tx, limit)
