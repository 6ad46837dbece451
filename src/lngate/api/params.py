"""Query parameter types: numbers on the wire are ASCII digits (see ``lngate.domain.inputs``).

Pydantic's lax ``int`` accepts ``" 12 "``, ``"+5"``, ``"1_000"`` and ``"12.0"``; a cursor or a
limit is plain digits or a 400.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator

_DIGITS = re.compile(r"[0-9]{1,19}")


def _ascii_digits(value: object) -> object:
    if isinstance(value, str) and not _DIGITS.fullmatch(value):
        raise ValueError("must be a non-negative integer in ASCII digits")
    return value


QueryInt = Annotated[int, BeforeValidator(_ascii_digits)]
