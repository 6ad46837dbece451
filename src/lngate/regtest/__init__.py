"""A real regtest Lightning network (btcd + three lnd, or four with a remote signer) for tests
and development.

See `lngate.regtest.network` for the layout, the node roles and the macaroon permission lists;
`lngate.regtest.remote_signer` for the watch-only exchange and its signer;
`lngate.regtest.bringup` for `up`/`down`; `lngate.regtest.cli` for the `lngate regtest`
commands.
"""

from lngate.regtest.bringup import down, status, up
from lngate.regtest.network import (
    INVOICE_PERMISSIONS,
    MODES,
    NODE_NAMES,
    REMOTE_SIGNER,
    ROLE_SIGNER,
    ROLE_STANDALONE,
    ROLE_WATCH_ONLY,
    SIGNER,
    SPENDING_PERMISSIONS,
    STANDALONE,
    Network,
)
from lngate.regtest.procs import LncliError, LndRestError, RegtestError
from lngate.regtest.remote_signer import SIGNER_PERMISSIONS

__all__ = [
    "INVOICE_PERMISSIONS",
    "MODES",
    "NODE_NAMES",
    "REMOTE_SIGNER",
    "ROLE_SIGNER",
    "ROLE_STANDALONE",
    "ROLE_WATCH_ONLY",
    "SIGNER",
    "SIGNER_PERMISSIONS",
    "SPENDING_PERMISSIONS",
    "STANDALONE",
    "LncliError",
    "LndRestError",
    "Network",
    "RegtestError",
    "down",
    "status",
    "up",
]
