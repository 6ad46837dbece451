"""simnet: an in-process (and cross-process, over SQLite) simulated Lightning network.

lngate's embedded default node and fast test bed: real BOLT11 invoices signed with node keys
(``lnbcrt`` prefix), real preimages, routed multi-hop payments with fees, HTLCs in flight,
simulated on-chain wallets, and fault injection.
"""

from lngate.lightning.bolt11 import invoice_network
from lngate.lightning.simnet.faults import Fault, FaultKind, Faults
from lngate.lightning.simnet.network import DEFAULT_WALLETS, EXCHANGE, HUB, SimnetNetwork
from lngate.lightning.simnet.node import SimnetNode

__all__ = [
    "DEFAULT_WALLETS",
    "EXCHANGE",
    "HUB",
    "Fault",
    "FaultKind",
    "Faults",
    "SimnetNetwork",
    "SimnetNode",
    "invoice_network",
]
