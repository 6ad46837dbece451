"""The withdrawal circuit breaker: halted by reconciliation (automatically) or an operator,
resumed only by an operator. While halted, new withdrawals are refused (WITHDRAWALS_HALTED) and
approved ones wait; payments already in flight are still tracked to the end; deposits go on.

The functions here run inside a caller's transaction (reconciliation halts in the transaction
that stores its report); ``Administration`` is the operators' use case over them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lngate.domain.errors import InvalidRequest
from lngate.store import audit, system_state
from lngate.store.db import Tx
from lngate.store.ledger import now_ms

HALT_KEY = "withdrawals_halted"
ACK_KEY = "acknowledged_shortfall_msat"


@dataclass(frozen=True, slots=True)
class HaltRecord:
    """Why withdrawals are halted, by whom, since when (``schemas.HaltRecord``)."""

    reason: str
    by: str
    at_ms: int


def halted(tx: Tx) -> HaltRecord | None:
    """Why withdrawals are halted while they are, else None."""
    state = system_state.get(tx, HALT_KEY)
    if not isinstance(state, dict):
        return None
    return HaltRecord(
        str(state.get("reason", "")), str(state.get("by", "")), int(state.get("at_ms", 0))
    )


def acknowledged_shortfall_msat(tx: Tx) -> int:
    return int(system_state.get(tx, ACK_KEY) or 0)


def halt(tx: Tx, *, reason: str, actor: str, at_ms: int | None = None) -> bool:
    """Halt withdrawals; False if they were already halted (the first reason stands).
    ``at_ms``: the use case's clock (the store's when not given)."""
    if not reason.strip():
        raise InvalidRequest("a halt needs a reason")
    if halted(tx) is not None:
        return False
    system_state.put(
        tx, HALT_KEY, {"reason": reason, "by": actor, "at_ms": now_ms() if at_ms is None else at_ms}
    )
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
    details: dict[str, Any] = {"halted_because": was.reason}
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
