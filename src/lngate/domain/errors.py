"""The one exception tree of lngate: every error a caller can act on, with its stable code.

Every class here has a code of its own; ``lngate.api.errors`` maps each class to an HTTP status in
one exhaustive table (a test checks that none is missing), and the README lists them all::

    LngateError
    ├── InvalidRequest              (INVALID_REQUEST)        malformed input
    │   ├── InvalidAmount           (INVALID_AMOUNT)         zero, negative, non-integer, absurd
    │   │   ├── AmountRequired      (AMOUNT_REQUIRED)        an amountless invoice needs one
    │   │   └── AmountNotAllowed    (AMOUNT_NOT_ALLOWED)     the invoice states its own
    │   ├── AmountOutOfRange        (AMOUNT_OUT_OF_RANGE)    outside configured limits
    │   ├── WrongNetwork            (WRONG_NETWORK)          an invoice of another chain
    │   ├── BlockedDestination      (BLOCKED_DESTINATION)    a payee the operator blocked
    │   ├── OwnNodeInvoice          (OWN_NODE_INVOICE)       our node's, but no open deposit
    │   ├── InternalInvoicePaid     (INVOICE_ALREADY_PAID)   one of our users' invoices, paid
    │   ├── ColdImportRefused       (INVALID_COLD_IMPORT)    a cold address that does not fit
    │   └── PrivateKeyRefused       (PRIVATE_KEY_REFUSED)    lngate holds no cold private key
    ├── AuthError                   (UNAUTHORIZED)           missing/bad/expired/replayed signature
    ├── AccountFrozen               (ACCOUNT_FROZEN)
    ├── NotAMerchant                (NOT_A_MERCHANT)         Pay needs a merchant's key
    ├── NotFound                    (NOT_FOUND)
    │   └── UnknownUser             (UNKNOWN_USER)
    ├── Conflict                    (CONFLICT)
    │   ├── IdempotencyConflict     (IDEMPOTENCY_KEY_REUSED) same key, different request
    │   ├── AlreadyExists           (ALREADY_EXISTS)
    │   ├── DuplicatePaymentHash    (DUPLICATE_PAYMENT_HASH) an invoice paid or being paid
    │   ├── MerchantOrderIdReused   (MERCHANT_ORDER_ID_REUSED) same order id, another body
    │   └── OrderNotOpen            (ORDER_NOT_OPEN)         paid, expired or cancelled already
    ├── InsufficientFunds           (INSUFFICIENT_FUNDS)
    ├── RefundExceedsPaid           (REFUND_EXCEEDS_PAID)    refunds beyond what the order was paid
    ├── LimitExceeded               (LIMIT_EXCEEDED)         the 24 h or hourly limit
    ├── LedgerRefused               (LEDGER_REFUSED)         a named ledger result
    ├── WithdrawalsHalted           (WITHDRAWALS_HALTED)
    ├── RateLimited                 (RATE_LIMITED)           too many at once; retry later
    │   └── TooManyStreams          (TOO_MANY_STREAMS)
    ├── NoColdAddress               (NO_COLD_ADDRESS)        every cold address handed out
    ├── LnurlFailed                 (LNURL_FAILED)           a Lightning Address service failed us
    ├── DestinationNotAllowed       (DESTINATION_NOT_ALLOWED) it points into a private network
    ├── InvariantBroken             (INTERNAL)               a bug: what must hold did not
    └── NodeError                   (NODE_ERROR)             the Lightning node refused or failed
        ├── NodeUnreachable         (NODE_UNREACHABLE)
        ├── NodeTimeout             (NODE_TIMEOUT)
        ├── NodeBadResponse         (NODE_BAD_RESPONSE)      not what its API documents
        ├── NoRoute                 (NO_ROUTE)
        ├── InsufficientBalance     (NODE_INSUFFICIENT_BALANCE)
        ├── InvoiceExpired          (INVOICE_EXPIRED)
        ├── AlreadyPaid             (ALREADY_PAID)
        ├── PermissionDenied        (NODE_PERMISSION_DENIED)
        ├── InvoiceNotFound         (INVOICE_NOT_FOUND)
        └── InvalidNodeRequest      (INVALID_NODE_REQUEST)
            └── InvalidInvoice      (INVALID_INVOICE)        not a valid BOLT 11 invoice

The node errors are the Node port's (``lngate.lightning.errors`` names them for the adapters);
they live here so that the domain and the services can name them without importing an adapter.
"""

from __future__ import annotations


class LngateError(Exception):
    """Base of every error lngate raises on purpose."""

    code = "ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# -- the request ----------------------------------------------------------------------------------


class InvalidRequest(LngateError):
    code = "INVALID_REQUEST"


class InvalidAmount(InvalidRequest):
    code = "INVALID_AMOUNT"


class AmountRequired(InvalidAmount):
    code = "AMOUNT_REQUIRED"


class AmountNotAllowed(InvalidAmount):
    code = "AMOUNT_NOT_ALLOWED"


class AmountOutOfRange(InvalidRequest):
    code = "AMOUNT_OUT_OF_RANGE"


class WrongNetwork(InvalidRequest):
    code = "WRONG_NETWORK"


class BlockedDestination(InvalidRequest):
    code = "BLOCKED_DESTINATION"


class OwnNodeInvoice(InvalidRequest):
    """An invoice of our own node that is no open deposit: nothing to settle internally."""

    code = "OWN_NODE_INVOICE"


class InternalInvoicePaid(InvalidRequest):
    """A withdrawal to one of our users' invoices that is paid (or being paid) already."""

    code = "INVOICE_ALREADY_PAID"


class ColdImportRefused(InvalidRequest):
    """A line of a cold import is not a valid address (or key) of the node's network.
    Nothing of the import is stored."""

    code = "INVALID_COLD_IMPORT"


class PrivateKeyRefused(InvalidRequest):
    """lngate holds no cold private key: an xprv, tprv or WIF key is refused (and not echoed)."""

    code = "PRIVATE_KEY_REFUSED"


# -- who is asking ---------------------------------------------------------------------------------


class AuthError(LngateError):
    code = "UNAUTHORIZED"


class TotpRequired(AuthError):
    """A current one-time code from the account's authenticator app is needed (and was missing
    or wrong)."""

    code = "TOTP_REQUIRED"


class CsrfRefused(LngateError):
    """A page's form came without the token of the session that rendered it."""

    code = "CSRF_REFUSED"


class AccountFrozen(LngateError):
    code = "ACCOUNT_FROZEN"


class NotAMerchant(LngateError):
    """A Pay call (orders, refunds, webhooks) signed with a key whose role is not merchant."""

    code = "NOT_A_MERCHANT"


# -- what is there ---------------------------------------------------------------------------------


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


class DuplicatePaymentHash(Conflict):
    code = "DUPLICATE_PAYMENT_HASH"


class MerchantOrderIdReused(Conflict):
    """A ``merchant_order_id`` already used by this merchant for an order with another body."""

    code = "MERCHANT_ORDER_ID_REUSED"


class OrderNotOpen(Conflict):
    """The order is paid, expired or cancelled: it can no longer be paid or cancelled."""

    code = "ORDER_NOT_OPEN"


# -- the rules of money ----------------------------------------------------------------------------


class InsufficientFunds(LngateError):
    code = "INSUFFICIENT_FUNDS"


class RefundExceedsPaid(LngateError):
    """A refund that would take the order's refunds above what was paid for it."""

    code = "REFUND_EXCEEDS_PAID"


class LimitExceeded(LngateError):
    code = "LIMIT_EXCEEDED"


class LedgerRefused(LngateError):
    code = "LEDGER_REFUSED"


class WithdrawalsHalted(LngateError):
    code = "WITHDRAWALS_HALTED"


class RateLimited(LngateError):
    code = "RATE_LIMITED"


class TooManyStreams(RateLimited):
    code = "TOO_MANY_STREAMS"


class NoColdAddress(LngateError):
    """Every imported cold address has been handed out: import more."""

    code = "NO_COLD_ADDRESS"


# -- the code itself -------------------------------------------------------------------------------


class InvariantBroken(LngateError):
    """Something that must be true if the code is right was found false: a bug, never the
    caller's fault (an HTTP 500). Raised instead of ``assert`` where the invariant guards money
    or a state change, because ``python -O`` removes asserts and the check would go with them.
    Inside a unit of work it undoes the transaction (or savepoint) that found it."""

    code = "INTERNAL"


# -- other parties ---------------------------------------------------------------------------------


class LnurlFailed(LngateError):
    """The LNURL service of a Lightning Address answered wrongly or not at all."""

    code = "LNURL_FAILED"


class DestinationNotAllowed(LngateError):
    """A Lightning Address (or its callback) that points into a private network."""

    code = "DESTINATION_NOT_ALLOWED"


class NodeError(LngateError):
    """The Lightning node refused or failed, for a reason it did not name more precisely."""

    code = "NODE_ERROR"


class NodeUnreachable(NodeError):
    code = "NODE_UNREACHABLE"


class NodeTimeout(NodeError):
    code = "NODE_TIMEOUT"


class NodeBadResponse(NodeError):
    """The node answered with something that is not what its API documents."""

    code = "NODE_BAD_RESPONSE"


class NoRoute(NodeError):
    code = "NO_ROUTE"


class InsufficientBalance(NodeError):
    """The node itself lacks the on-chain or channel funds for the request."""

    code = "NODE_INSUFFICIENT_BALANCE"


class InvoiceExpired(NodeError):
    """The invoice has expired (or expires too soon to be paid safely)."""

    code = "INVOICE_EXPIRED"


class AlreadyPaid(NodeError):
    """The payment hash was already paid, or a payment of it is in flight."""

    code = "ALREADY_PAID"


class PermissionDenied(NodeError):
    """The credential (e.g. an invoice-only macaroon) does not allow this call."""

    code = "NODE_PERMISSION_DENIED"


class InvoiceNotFound(NodeError):
    code = "INVOICE_NOT_FOUND"


class InvalidNodeRequest(NodeError):
    """The node refused the request as malformed."""

    code = "INVALID_NODE_REQUEST"


class InvalidInvoice(InvalidNodeRequest):
    """A BOLT11 string that does not decode or whose signature does not verify."""

    code = "INVALID_INVOICE"
