"""A real regtest Lightning network (btcd + three lnd) for tests and development.

See `lngate.regtest.network` for the layout, the node roles and the macaroon
permission lists; `lngate.regtest.cli` for the `lngate regtest` commands.
"""

from lngate.regtest.network import (
    INVOICE_PERMISSIONS,
    NODE_NAMES,
    SPENDING_PERMISSIONS,
    LndRestError,
    Network,
    RegtestError,
    down,
    status,
    up,
)

__all__ = [
    "INVOICE_PERMISSIONS",
    "NODE_NAMES",
    "SPENDING_PERMISSIONS",
    "LndRestError",
    "Network",
    "RegtestError",
    "down",
    "status",
    "up",
]
