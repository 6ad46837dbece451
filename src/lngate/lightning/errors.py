"""The errors of the Lightning node port: adapters map their backend's failures onto these.

They are defined in ``lngate.domain.errors`` (the one exception tree), so that the domain and the
services can name them without importing this package; adapters import them from here.
"""

from lngate.domain.errors import (
    AlreadyPaid,
    InsufficientBalance,
    InvalidInvoice,
    InvalidNodeRequest,
    InvoiceExpired,
    InvoiceNotFound,
    NodeBadResponse,
    NodeError,
    NodeTimeout,
    NodeUnreachable,
    NoRoute,
    PermissionDenied,
)

__all__ = [
    "AlreadyPaid",
    "InsufficientBalance",
    "InvalidInvoice",
    "InvalidNodeRequest",
    "InvoiceExpired",
    "InvoiceNotFound",
    "NoRoute",
    "NodeBadResponse",
    "NodeError",
    "NodeTimeout",
    "NodeUnreachable",
    "PermissionDenied",
]
