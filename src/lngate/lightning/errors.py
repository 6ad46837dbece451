"""Typed errors of the Lightning node port. Adapters map their backend's failures onto these."""

from __future__ import annotations

from lngate.domain.errors import NodeError


class NodeUnreachable(NodeError):
    code = "NODE_UNREACHABLE"


class NodeTimeout(NodeError):
    code = "NODE_TIMEOUT"


class NoRoute(NodeError):
    code = "NO_ROUTE"


class InsufficientBalance(NodeError):
    """The node itself lacks the on-chain or channel funds for the request."""

    code = "NODE_INSUFFICIENT_BALANCE"


class InvoiceExpired(NodeError):
    code = "INVOICE_EXPIRED"


class AlreadyPaid(NodeError):
    """The payment hash was already paid, or a payment of it is in flight."""

    code = "ALREADY_PAID"


class InvalidNodeRequest(NodeError):
    """The node refused the request as malformed (includes undecodable BOLT11)."""

    code = "INVALID_NODE_REQUEST"


class InvalidInvoice(InvalidNodeRequest):
    """A BOLT11 string that does not decode or whose signature does not verify."""

    code = "INVALID_INVOICE"


class PermissionDenied(NodeError):
    """The credential (e.g. an invoice-only macaroon) does not allow this call."""

    code = "NODE_PERMISSION_DENIED"


class InvoiceNotFound(NodeError):
    code = "INVOICE_NOT_FOUND"
