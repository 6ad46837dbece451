"""Reading the pages' forms: URL-encoded bodies (the body size is capped before routing), and
the amounts people type, in sat, turned into exact msat."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

from fastapi import Request

from lngate.domain.errors import InvalidAmount, InvalidRequest

FORM_FIELDS_MAX = 32
_WHOLE = re.compile(r"[0-9]+")
_SAT = re.compile(r"([0-9]{1,15})(?:\.([0-9]{1,3}))?")


class Form:
    """One submitted form: each field's first value, stripped of surrounding space."""

    def __init__(self, fields: dict[str, str]) -> None:
        self._fields = fields

    def get(self, name: str, default: str = "") -> str:
        return self._fields.get(name, default).strip()

    def raw(self, name: str) -> str:
        """As sent (a password keeps its spaces)."""
        return self._fields.get(name, "")

    def optional(self, name: str) -> str | None:
        return self.get(name) or None


async def read_form(request: Request) -> Form:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise InvalidRequest("send the form as application/x-www-form-urlencoded")
    body = await request.body()
    try:
        pairs = parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            strict_parsing=False,
            max_num_fields=FORM_FIELDS_MAX,
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequest("the form could not be read") from exc
    fields: dict[str, str] = {}
    for name, value in pairs:
        if "\x00" in name or "\x00" in value:  # PostgreSQL cannot store it; SQLite must not
            raise InvalidRequest("the form holds a NUL character")
        fields.setdefault(name, value)
    return Form(fields)


def whole_number(text: str, max_digits: int = 18) -> int | None:
    """``text`` as a non-negative integer of ASCII digits (``²`` is a digit to Python, not
    to us), or None."""
    return int(text) if _WHOLE.fullmatch(text) and len(text) <= max_digits else None


def sat_to_msat(text: str) -> int | None:
    """``"12,345"`` or ``"1.5"`` (sat, to the msat) as msat; empty is None."""
    cleaned = text.replace(",", "").replace("_", "").replace(" ", "")
    if not cleaned:
        return None
    match = _SAT.fullmatch(cleaned)
    if match is None:
        raise InvalidAmount("enter the amount in sat, like 1500 or 1500.5")
    whole, fraction = match.group(1), (match.group(2) or "").ljust(3, "0")
    return int(whole) * 1_000 + int(fraction)
