"""Is the remote signer of a watch-only LND reachable?

A watch-only LND (``remotesigner.enable``) holds public keys only; every signature comes from
its signer over one gRPC connection. When the signer cannot be reached, LND answers reads as
usual but shuts itself down the moment it needs a signature (a payment, an invoice, an incoming
HTLC, a peer's handshake), and a payment it started at that moment stays IN_FLIGHT on LND with
no HTLC on any channel (lnd #5152): lngate keeps the hold, rightly, and the withdrawal waits for
an operator. So lngate checks the signer before it sends (the payment worker waits while the
signer is away) and reports it (metric ``lngate_signer_reachable``, ``lngate reconcile``, the
admin status).

The check opens a TLS connection to the signer's gRPC port and verifies the signer's own
certificate (pinned: the cert is the only CA). It sends no request and holds no credential of
the signer: lngate never needs one. It proves the signer's lnd listens there with its key; a
signer whose wallet is still locked passes it, and fails the node's signing instead.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHECK_TIMEOUT_S = 2.0
# A probe is a TCP and TLS handshake; callers on a hot path reuse an answer this young.
MAX_AGE_S = 1.0


@dataclass(frozen=True, slots=True)
class SignerHealth:
    rpc_host: str
    reachable: bool
    detail: str
    checked_at_s: float  # time.time() of the check

    def as_json(self) -> dict[str, Any]:
        return {
            "rpc_host": self.rpc_host,
            "reachable": self.reachable,
            "detail": self.detail,
            "checked_at": int(self.checked_at_s),
        }


class SignerProbe:
    """Checks one signer; ``rpc_host`` is ``host:port``, ``tls_cert`` the signer's cert."""

    def __init__(
        self, rpc_host: str, tls_cert: Path, *, timeout_s: float = CHECK_TIMEOUT_S
    ) -> None:
        host, sep, port = rpc_host.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"signer_rpc_host must be host:port, not {rpc_host!r}")
        if not 0 < timeout_s <= 30:
            raise ValueError("the signer check timeout must be within (0, 30] seconds")
        self.rpc_host = rpc_host
        self._host = host.strip("[]")
        self._port = int(port)
        self._tls_cert = tls_cert
        self._timeout_s = timeout_s
        self._last: SignerHealth | None = None

    def check(self) -> SignerHealth:
        """Blocking: connect, complete the TLS handshake, close."""
        try:
            context = ssl.create_default_context(cafile=str(self._tls_cert))
            # gRPC speaks HTTP/2; recent gRPC servers refuse a TLS client that does not offer it.
            context.set_alpn_protocols(["h2"])
            with (
                socket.create_connection((self._host, self._port), self._timeout_s) as raw,
                context.wrap_socket(raw, server_hostname=self._host) as tls,
            ):
                detail = f"TLS handshake completed ({tls.version()})"
            health = SignerHealth(self.rpc_host, True, detail, time.time())
        except (OSError, ssl.SSLError, ValueError) as exc:
            # ssl.SSLError and socket timeouts are OSErrors; ValueError: an unreadable cert.
            health = SignerHealth(self.rpc_host, False, f"{type(exc).__name__}: {exc}", time.time())
        self._last = health
        return health

    async def acheck(self, max_age_s: float = 0.0) -> SignerHealth:
        """``check`` off the event loop; an answer younger than ``max_age_s`` is reused."""
        last = self._last
        if last is not None and time.time() - last.checked_at_s < max_age_s:
            return last
        return await asyncio.to_thread(self.check)


def signer_probe(rpc_host: str | None, tls_cert: Path | None) -> SignerProbe | None:
    """The probe for a configured signer (``[lnd] signer_rpc_host`` and ``signer_tls_cert``);
    None when the node has no remote signer."""
    if not rpc_host:
        return None
    if tls_cert is None:
        raise ValueError("[lnd] signer_tls_cert is required with signer_rpc_host")
    return SignerProbe(rpc_host, tls_cert)
