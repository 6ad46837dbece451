"""Who a user is to lngate: a role (what its keys may do) and a status (frozen or not)."""

from __future__ import annotations

import enum


class Role(enum.StrEnum):
    USER = "user"
    MERCHANT = "merchant"
    ADMIN = "admin"


class UserStatus(enum.StrEnum):
    ACTIVE = "active"
    FROZEN = "frozen"
