"""Paying a Lightning Address: resolve ``name@host`` with LNURL-pay (LUD-16, LUD-06) and check
what comes back before a single msat is held.

The callback is another party's server, so nothing it says is trusted: its URLs must resolve to
public addresses only (no loopback, private, link-local or reserved ones: a callback must not make
us probe our own network), redirects are not followed, and the invoice must be for exactly the
amount asked and commit (description hash) to the metadata served.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import re
import socket
from urllib.parse import urlsplit

import httpx

from lngate.domain.errors import InvalidRequest, LngateError
from lngate.lightning.bolt11 import decode_bolt11
from lngate.lightning.errors import InvalidInvoice

_LOCAL_PART = re.compile(r"^[a-z0-9._+-]{1,64}$")  # LUD-16
_HOST = re.compile(r"^[a-z0-9.-]{1,253}(:[0-9]{1,5})?$")
RESPONSE_MAX_BYTES = 64_000
TIMEOUT_S = 10.0


class LnurlFailed(LngateError):
    """The LNURL service answered wrongly or not at all."""

    code = "LNURL_FAILED"


class DestinationNotAllowed(LngateError):
    code = "DESTINATION_NOT_ALLOWED"


def parse_address(address: str) -> tuple[str, str]:
    if not isinstance(address, str) or address.count("@") != 1:
        raise InvalidRequest("lightning_address must look like name@host")
    name, host = address.strip().lower().split("@")
    if not _LOCAL_PART.match(name) or not _HOST.match(host):
        raise InvalidRequest("lightning_address must look like name@host")
    return name, host


async def check_destination(url: str, *, allow_private: bool) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise DestinationNotAllowed(f"not an http(s) URL: {url!r}")
    if allow_private:
        return
    if parts.scheme != "https":
        raise DestinationNotAllowed("LNURL services must be reached over https")
    try:
        infos = await asyncio.to_thread(socket.getaddrinfo, parts.hostname, parts.port or 443)
    except OSError as exc:
        raise LnurlFailed(f"cannot resolve {parts.hostname}") from exc
    for info in infos:
        ip = ipaddress.ip_address(info[4][0])
        if not ip.is_global:
            raise DestinationNotAllowed(
                f"{parts.hostname} resolves to a non-public address ({ip}); refused"
            )


async def _get_json(
    http: httpx.AsyncClient, url: str, params: dict[str, str] | None = None
) -> dict[str, object]:
    try:
        r = await http.get(url, params=params)
    except httpx.HTTPError as exc:
        raise LnurlFailed(f"the LNURL service did not answer: {exc.__class__.__name__}") from exc
    if r.is_redirect:
        raise DestinationNotAllowed("the LNURL service answered with a redirect; refused")
    if len(r.content) > RESPONSE_MAX_BYTES:
        raise LnurlFailed("the LNURL service's answer is too large")
    try:
        body = r.json()
    except ValueError as exc:
        raise LnurlFailed("the LNURL service did not answer JSON") from exc
    if not isinstance(body, dict):
        raise LnurlFailed("the LNURL service's answer is not an object")
    if body.get("status") == "ERROR":
        raise LnurlFailed(f"the LNURL service refused: {str(body.get('reason'))[:200]}")
    return body


async def resolve_invoice(address: str, amount_msat: int, *, allow_private: bool) -> str:
    """A BOLT11 invoice for ``amount_msat`` from ``address``'s LNURL-pay service, checked."""
    name, host = parse_address(address)
    # allow_private is for development and tests only: local services speak plain http
    scheme = "http" if allow_private else "https"
    url = f"{scheme}://{host}/.well-known/lnurlp/{name}"
    await check_destination(url, allow_private=allow_private)
    async with httpx.AsyncClient(timeout=TIMEOUT_S, follow_redirects=False) as http:
        pay_request = await _get_json(http, url)
        if pay_request.get("tag") != "payRequest":
            raise LnurlFailed("not an LNURL-pay service")
        callback, metadata = pay_request.get("callback"), pay_request.get("metadata")
        min_msat, max_msat = pay_request.get("minSendable"), pay_request.get("maxSendable")
        if not (
            isinstance(callback, str)
            and isinstance(metadata, str)
            and isinstance(min_msat, int)
            and isinstance(max_msat, int)
        ):
            raise LnurlFailed("the pay request lacks callback, metadata or amounts")
        if not min_msat <= amount_msat <= max_msat:
            raise LnurlFailed(f"{address} takes between {min_msat} and {max_msat} msat")
        await check_destination(callback, allow_private=allow_private)
        answer = await _get_json(http, callback, {"amount": str(amount_msat)})
    pr = answer.get("pr")
    if not isinstance(pr, str):
        raise LnurlFailed("the callback returned no invoice")
    try:
        invoice = decode_bolt11(pr)
    except InvalidInvoice as exc:
        raise LnurlFailed("the callback returned an invalid invoice") from exc
    if invoice.amount_msat != amount_msat:
        raise LnurlFailed(
            f"the callback's invoice is for {invoice.amount_msat} msat, not {amount_msat}"
        )
    # LUD-06: the invoice's description hash must be the SHA-256 of the metadata served.
    if invoice.description_hash != hashlib.sha256(metadata.encode()).digest():
        raise LnurlFailed("the callback's invoice does not commit to the served metadata")
    return pr
