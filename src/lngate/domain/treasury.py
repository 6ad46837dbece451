"""Treasury rules: the hot float cap, what a sweep moves, and the cold-storage errors. Pure.

The node's on-chain wallet keeps at most ``hot_onchain_cap_sat``; confirmed funds above it go to
the next cold address (imported watch-only: lngate never holds a cold private key). The sweep
sends ``confirmed - cap - fee reserve`` so that the fee comes out of the reserve and the wallet
is left holding about the cap, and nothing at all when that is below ``sweep_min_sat``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from lngate.domain.errors import InvariantBroken
from lngate.domain.ledger import TransferResult

DUST_LIMIT_SAT = 546  # a P2WPKH output below this is non-standard (Bitcoin Core's dust rule)
MAX_SAT_PER_VBYTE = 10_000


class ColdPurpose(enum.StrEnum):
    SWEEP = "sweep"
    CHANNEL_CLOSE = "channel_close"


@dataclass(frozen=True, slots=True)
class TreasuryPolicy:
    """The ``[treasury]`` section. Amounts in sat: the chain counts whole satoshis."""

    hot_onchain_cap_sat: int = 1_000_000  # 0.01 BTC stays hot on-chain; the rest goes cold
    hot_channel_target_sat: int = 5_000_000  # channel liquidity we aim for (shown, not enforced)
    sweep_sat_per_vbyte: int = 2
    sweep_interval_s: float = 60.0
    sweep_min_sat: int = 100_000  # smaller excesses wait: a sweep costs a fee
    sweep_fee_reserve_vbytes: int = 400  # room for a sweep spending a few inputs

    def __post_init__(self) -> None:
        assert self.hot_onchain_cap_sat >= 0 and self.hot_channel_target_sat >= 0
        assert 1 <= self.sweep_sat_per_vbyte <= MAX_SAT_PER_VBYTE
        assert self.sweep_interval_s > 0
        assert self.sweep_min_sat >= DUST_LIMIT_SAT
        assert self.sweep_fee_reserve_vbytes > 0

    @property
    def sweep_fee_reserve_sat(self) -> int:
        return self.sweep_fee_reserve_vbytes * self.sweep_sat_per_vbyte


def sweep_amount_sat(onchain_confirmed_sat: int, policy: TreasuryPolicy) -> int:
    """What a sweep would send now: 0 when the excess over the cap is below the minimum."""
    excess_sat = onchain_confirmed_sat - policy.hot_onchain_cap_sat - policy.sweep_fee_reserve_sat
    return excess_sat if excess_sat >= policy.sweep_min_sat else 0


def require_booked(transfer_id: str, result: TransferResult) -> None:
    """A treasury transfer moves money between system accounts under an id derived from a
    txid: the ledger books it (OK) or has it already (EXISTS). Anything else is a bug; raising
    undoes the whole operation (its savepoint), so a sweep, close or fee row is never recorded
    without its transfer."""
    if result not in (TransferResult.OK, TransferResult.EXISTS):
        raise InvariantBroken(f"treasury transfer {transfer_id} refused by the ledger: {result}")
