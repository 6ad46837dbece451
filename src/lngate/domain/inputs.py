"""Parsing what clients send, by rules that do not depend on Unicode's idea of a digit.

``str.isdigit()`` is true for ``"¹"`` and ``int()`` accepts ``"١٢"``, ``" 12 "`` and ``"1_000"``;
a number on the wire is ASCII digits and nothing else, of a bounded length.
"""

from __future__ import annotations

import re

from lngate.domain.errors import InvalidRequest

_DIGITS = re.compile(r"[0-9]{1,19}")
INT64_MAX = 2**63 - 1

# BOLT 11: the description (field d) is at most 639 bytes of UTF-8.
INVOICE_DESCRIPTION_MAX_BYTES = 639


def ascii_uint(raw: str, *, name: str, max_value: int = INT64_MAX) -> int:
    """``raw`` as a non-negative integer of ASCII digits, at most ``max_value``."""
    if not isinstance(raw, str) or not _DIGITS.fullmatch(raw):
        raise InvalidRequest(f"{name} must be a non-negative integer in ASCII digits")
    value = int(raw)
    if value > max_value:
        raise InvalidRequest(f"{name} must be at most {max_value}")
    return value


def check_text(text: str, *, name: str) -> str:
    """Text we store or hand to the node: no NUL (PostgreSQL cannot store it)."""
    if "\x00" in text:
        raise InvalidRequest(f"{name} must not contain NUL characters")
    return text


def check_invoice_description(text: str, *, name: str = "memo") -> str:
    """Text that becomes a BOLT 11 description: bounded in bytes, not in characters."""
    check_text(text, name=name)
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > INVOICE_DESCRIPTION_MAX_BYTES:
        raise InvalidRequest(
            f"{name} is {size} bytes of UTF-8; an invoice description holds at most "
            f"{INVOICE_DESCRIPTION_MAX_BYTES}"
        )
    return text
