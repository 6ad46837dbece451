"""The one exception tree of lngate.

Every error a caller can act on is a subclass of ``LngateError`` with a stable ``code``;
``lngate.api.errors`` maps codes to HTTP statuses in exactly one place::

    LngateError
    ├── InvalidRequest              (INVALID_REQUEST)      malformed input
    │   ├── InvalidAmount           (INVALID_AMOUNT)       zero, negative, non-integer, absurd
    │   └── AmountOutOfRange        (AMOUNT_OUT_OF_RANGE)  outside configured limits
    ├── AuthError                   (UNAUTHORIZED)         missing/bad/expired/replayed signature
    ├── NotFound                    (NOT_FOUND)
    │   └── UnknownUser             (UNKNOWN_USER)
    ├── Conflict                    (CONFLICT)
    │   ├── IdempotencyConflict     (IDEMPOTENCY_KEY_REUSED) same key, different request
    │   └── AlreadyExists           (ALREADY_EXISTS)
    ├── InsufficientFunds           (INSUFFICIENT_FUNDS)
    ├── AccountFrozen               (ACCOUNT_FROZEN)
    ├── RateLimited                 (RATE_LIMITED)         too many at once; retry later
    ├── LedgerRefused               (LEDGER_REFUSED)       a named ledger result
    └── NodeError                   (NODE_ERROR)           see lngate.lightning.errors
"""

from __future__ import annotations


class LngateError(Exception):
    """Base of every error lngate raises on purpose."""

    code = "ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(LngateError):
    code = "INVALID_REQUEST"


class InvalidAmount(InvalidRequest):
    code = "INVALID_AMOUNT"


class AmountOutOfRange(InvalidRequest):
    code = "AMOUNT_OUT_OF_RANGE"


class AuthError(LngateError):
    code = "UNAUTHORIZED"


class NotFound(LngateError):
    code = "NOT_FOUND"


class UnknownUser(NotFound):
    code = "UNKNOWN_USER"


class Conflict(LngateError):
    code = "CONFLICT"


class IdempotencyConflict(Conflict):
    code = "IDEMPOTENCY_KEY_REUSED"


class AlreadyExists(Conflict):
    code = "ALREADY_EXISTS"


class InsufficientFunds(LngateError):
    code = "INSUFFICIENT_FUNDS"


class AccountFrozen(LngateError):
    code = "ACCOUNT_FROZEN"


class RateLimited(LngateError):
    code = "RATE_LIMITED"


class LedgerRefused(LngateError):
    code = "LEDGER_REFUSED"


class NodeError(LngateError):
    """Base of the Lightning node errors; subclasses live in ``lngate.lightning.errors``."""

    code = "NODE_ERROR"
