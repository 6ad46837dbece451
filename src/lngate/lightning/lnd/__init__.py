"""The ``Node`` port over LND's REST API (lnd ≥ 0.18 with routerrpc and invoicesrpc).

Modules: ``_client`` (HTTP, TLS, macaroon, streams), ``_errors`` (the one mapping of LND
failures onto ``lngate.lightning.errors``), ``_mapping`` (LND JSON to port records),
``_subscribe`` (the invoice stream with resume and reconnect), ``_node`` (``LndNode``).
"""

from lngate.lightning.lnd._node import LndNode
from lngate.lightning.lnd._subscribe import ReconnectPolicy

__all__ = ["LndNode", "ReconnectPolicy"]
