"""Money enters as a positive integer of msat, or not at all."""

import pytest

from lngate.domain.errors import InvalidAmount
from lngate.domain.money import MAX_AMOUNT_MSAT, parse_amount_msat, parse_amount_sat


@pytest.mark.parametrize("good", [1, 1000, MAX_AMOUNT_MSAT])
def test_positive_integers_up_to_the_supply_are_amounts(good: int) -> None:
    assert parse_amount_msat(good) == good


@pytest.mark.parametrize(
    "bad", [0, -1, 1.0, 1.5, "1000", None, True, False, MAX_AMOUNT_MSAT + 1, 2**63, 2**64 + 5]
)
def test_everything_else_is_refused(bad: object) -> None:
    with pytest.raises(InvalidAmount):
        parse_amount_msat(bad)


def test_sat_amounts_convert_exactly() -> None:
    assert parse_amount_sat(21) == 21_000
    with pytest.raises(InvalidAmount):
        parse_amount_sat(0)
