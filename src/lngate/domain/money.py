"""Money is an ``int`` of millisatoshi. Conversions and validation live here, at one place."""

from __future__ import annotations

from typing import Any

from lngate.domain.errors import InvalidAmount

MSAT_PER_SAT = 1_000
SAT_PER_BTC = 100_000_000
# No amount can exceed the 21 million BTC that will ever exist. Keeping every single amount
# below this (2.1e18) and every running total below LEDGER_TOTAL_MAX_MSAT keeps all sums
# far from int64 overflow (9.22e18) in both databases (cf. lnd #636, an amount that wrapped).
MAX_AMOUNT_MSAT = 21_000_000 * SAT_PER_BTC * MSAT_PER_SAT
LEDGER_TOTAL_MAX_MSAT = 2 * MAX_AMOUNT_MSAT


def sat_to_msat(amount_sat: int) -> int:
    return amount_sat * MSAT_PER_SAT


def msat_to_sat_floor(amount_msat: int) -> int:
    return amount_msat // MSAT_PER_SAT


def parse_amount_msat(value: Any, *, field: str = "amount_msat") -> int:
    """Validate an amount from the outside world: a positive integer no larger than the supply.

    Booleans, floats (even 1.0), strings and numbers past the supply are refused: money never
    passes through a float and never arrives as text we have to guess at.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidAmount(f"{field} must be an integer number of millisatoshi")
    if value <= 0:
        raise InvalidAmount(f"{field} must be positive")
    if value > MAX_AMOUNT_MSAT:
        raise InvalidAmount(f"{field} must not exceed {MAX_AMOUNT_MSAT} msat (21M BTC)")
    return value


def parse_amount_sat(value: Any, *, field: str = "amount_sat") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidAmount(f"{field} must be a positive integer number of satoshi")
    return parse_amount_msat(sat_to_msat(value), field=field)
