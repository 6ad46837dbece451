"""The withdrawal circuit breaker: halted by reconciliation (automatically) or an operator,
resumed only by an operator. While halted, new withdrawals are refused (WITHDRAWALS_HALTED) and
approved ones wait; payments already in flight are still tracked to the end; deposits go on."""

from __future__ import annotations

from typing import Any

from lngate.domain.errors import InvalidRequest
from lngate.store import audit, system_state
from lngate.store.db import Tx
from lngate.store.ledger import now_ms

HALT_KEY = "withdrawals_halted"
ACK_KEY = "acknowledged_shortfall_msat"


def halted(tx: Tx) -> dict[str, Any] | None:
    """The halt record (reason, by, at_ms) while withdrawals are halted, else None."""
    state = system_state.get(tx, HALT_KEY)
    return state if isinstance(state, dict) else None


def acknowledged_shortfall_msat(tx: Tx) -> int:
    return int(system_state.get(tx, ACK_KEY) or 0)


def halt(tx: Tx, *, reason: str, actor: str) -> bool:
    """Halt withdrawals; False if they were already halted (the first reason stands)."""
    if not reason.strip():
        raise InvalidRequest("a halt needs a reason")
    if halted(tx) is not None:
        return False
    system_state.put(tx, HALT_KEY, {"reason": reason, "by": actor, "at_ms": now_ms()})
    audit.append(tx, actor=actor, action="withdrawals.halt", subject="withdrawals", reason=reason)
    return True


def resume(tx: Tx, *, reason: str, actor: str, acknowledge_shortfall_msat: int | None) -> bool:
    """Resume withdrawals. ``acknowledge_shortfall_msat``: the shortfall the operator has looked
    into and accepts; the breaker trips again only beyond it plus the tolerance."""
    if not reason.strip():
        raise InvalidRequest("resuming needs a reason")
    was = halted(tx)
    if was is None:
        return False
    system_state.delete(tx, HALT_KEY)
    details: dict[str, Any] = {"halted_because": was.get("reason")}
    if acknowledge_shortfall_msat is not None:
        system_state.put(tx, ACK_KEY, max(0, acknowledge_shortfall_msat))
        details["acknowledged_shortfall_msat"] = acknowledge_shortfall_msat
    audit.append(
        tx,
        actor=actor,
        action="withdrawals.resume",
        subject="withdrawals",
        reason=reason,
        details=details,
    )
    return True
