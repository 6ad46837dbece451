"""Paying a Lightning Address: resolve ``name@host`` with LNURL-pay (LUD-16, LUD-06) and check
what comes back before a single msat is held.

The callback is another party's server, so nothing it says is trusted: its URLs must resolve to
public addresses only (no loopback, private, link-local or reserved ones: a callback must not make
us probe our own network), redirects are not followed, and the invoice must be for exactly the
amount asked and commit (description hash) to the metadata served.

Everything the service can make us spend is bounded: one deadline for the whole resolution, a
body size read as a stream, a JSON nesting depth, a URL length. Whatever goes wrong on its side
is ``LnurlFailed``; a forbidden destination is ``DestinationNotAllowed``; a malformed address
from our own user is ``InvalidRequest``.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import re
import socket
from urllib.parse import urlsplit

import httpx

from lngate.domain.errors import (
    DestinationNotAllowed,
    InvalidAmount,
    InvalidRequest,
    LnurlFailed,
)
from lngate.domain.money import parse_amount_msat
from lngate.lightning.bolt11 import decode_bolt11
from lngate.lightning.errors import InvalidInvoice

_LOCAL_PART = re.compile(r"[a-z0-9._+-]{1,64}")  # LUD-16
# RFC 1035 / RFC 1123: a label is 1-63 letters, digits and hyphens, not starting or ending with one.
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_PORT = re.compile(r"[0-9]{1,5}")
HOSTNAME_MAX_CHARS = 253  # RFC 1035, in its dotted text form
URL_MAX_CHARS = 2_000
RESPONSE_MAX_BYTES = 64_000
JSON_MAX_DEPTH = 32
DEADLINE_S = 10.0  # for the whole resolution: DNS, both requests, both bodies
_MALFORMED = "lightning_address must look like name@host"
_TOO_LARGE = "the LNURL service's answer is too large"


def parse_address(address: str) -> tuple[str, str]:
    """``(name, host)`` of a Lightning Address; ``host`` keeps its ``:port`` if it has one."""
    if not isinstance(address, str) or not address.isascii() or address.count("@") != 1:
        raise InvalidRequest(_MALFORMED)
    name, host = address.strip().lower().split("@")
    hostname, colon, port = host.partition(":")
    if not (
        _LOCAL_PART.fullmatch(name)
        and _is_hostname(hostname)
        and (not colon or (_PORT.fullmatch(port) and 1 <= int(port) <= 65535))
    ):
        raise InvalidRequest(_MALFORMED)
    return name, host


def _is_hostname(hostname: str) -> bool:
    return len(hostname) <= HOSTNAME_MAX_CHARS and all(
        _LABEL.fullmatch(label) for label in hostname.split(".")
    )


def _split_url(url: object) -> tuple[str, str, int | None]:
    """Scheme, hostname and port of a URL the service gave us; ``LnurlFailed`` if it is none."""
    if not isinstance(url, str) or len(url) > URL_MAX_CHARS:
        raise LnurlFailed("the LNURL service gave no usable URL")
    try:
        parts = urlsplit(url)
        return parts.scheme, parts.hostname or "", parts.port
    except ValueError as exc:  # "Invalid IPv6 URL", "Port out of range 0-65535", ...
        raise LnurlFailed(f"the LNURL service gave an invalid URL: {url[:200]!r}") from exc


async def check_destination(url: str, *, allow_private: bool) -> None:
    """Refuse ``url`` unless it is https to public addresses only (any http(s) if allow_private)."""
    scheme, hostname, port = _split_url(url)
    if scheme not in ("https", "http") or not hostname:
        raise DestinationNotAllowed(f"not an http(s) URL: {url[:200]!r}")
    if allow_private:
        return
    if scheme != "https":
        raise DestinationNotAllowed("LNURL services must be reached over https")
    try:
        infos = await asyncio.to_thread(
            socket.getaddrinfo, hostname, port or 443, type=socket.SOCK_STREAM
        )
    except (OSError, UnicodeError) as exc:  # the idna codec refuses e.g. a 64-char label
        raise LnurlFailed(f"cannot resolve {hostname!r}") from exc
    for info in infos:
        ip = ipaddress.ip_address(info[4][0])
        if not ip.is_global:
            raise DestinationNotAllowed(
                f"{hostname!r} resolves to a non-public address ({ip}); refused"
            )


async def _get_json(
    http: httpx.AsyncClient, url: str, params: dict[str, str] | None = None
) -> dict[str, object]:
    try:
        async with http.stream("GET", url, params=params) as r:
            if r.is_redirect:
                raise DestinationNotAllowed("the LNURL service answered with a redirect; refused")
            if r.status_code != 200:
                raise LnurlFailed(f"the LNURL service answered HTTP {r.status_code}")
            body = await _read_capped(r)
    # httpx.InvalidURL is not an httpx.HTTPError; UnicodeError can come from the idna codec.
    except (httpx.HTTPError, httpx.InvalidURL, UnicodeError) as exc:
        raise LnurlFailed(f"the LNURL service did not answer: {type(exc).__name__}") from exc
    answer = _json_object(body)
    if answer.get("status") == "ERROR":
        raise LnurlFailed(f"the LNURL service refused: {str(answer.get('reason'))[:200]!r}")
    return answer


async def _read_capped(r: httpx.Response) -> bytes:
    """The body, given up on as soon as it passes RESPONSE_MAX_BYTES."""
    # We ask for identity: a compressed body could inflate far past the cap in a single chunk.
    if r.headers.get("content-encoding", "identity").lower() != "identity":
        raise LnurlFailed("the LNURL service's answer is compressed; refused")
    try:
        declared = int(r.headers.get("content-length", "0"))
    except ValueError:  # not a number, or thousands of digits
        declared = RESPONSE_MAX_BYTES + 1
    if declared > RESPONSE_MAX_BYTES:
        raise LnurlFailed(_TOO_LARGE)
    body = bytearray()
    async for chunk in r.aiter_bytes():
        body += chunk
        if len(body) > RESPONSE_MAX_BYTES:
            raise LnurlFailed(_TOO_LARGE)
    return bytes(body)


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def _json_depth(text: str) -> int:
    """How deeply ``text`` nests arrays and objects; brackets inside strings do not count."""
    depth = deepest = 0
    for c in _NOT_BRACKET.sub("", _JSON_STRING.sub("", text)):
        depth += 1 if c in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def _json_object(body: bytes) -> dict[str, object]:
    try:
        text = body.decode()  # RFC 8259: JSON exchanged between systems MUST be UTF-8
    except UnicodeDecodeError as exc:
        raise LnurlFailed("the LNURL service's answer is not UTF-8") from exc
    # The json module recurses once per level: bound the depth before parsing, not after.
    if _json_depth(text) > JSON_MAX_DEPTH:
        raise LnurlFailed("the LNURL service's answer is nested too deeply")
    try:
        answer = json.loads(text)
    except ValueError as exc:  # invalid JSON, or an integer past int's 4300-digit limit
        raise LnurlFailed("the LNURL service did not answer JSON") from exc
    if not isinstance(answer, dict):
        raise LnurlFailed("the LNURL service's answer is not an object")
    return answer


def _pay_request(answer: dict[str, object]) -> tuple[str, bytes, int, int]:
    """Callback, metadata hash, minSendable and maxSendable of a LUD-06 payRequest."""
    if answer.get("tag") != "payRequest":
        raise LnurlFailed("not an LNURL-pay service")
    callback, metadata = answer.get("callback"), answer.get("metadata")
    scheme, hostname, _ = _split_url(callback)
    if scheme not in ("https", "http") or not hostname:
        raise LnurlFailed("the pay request's callback is not an http(s) URL")
    assert isinstance(callback, str)  # _split_url refuses anything else
    if not isinstance(metadata, str):
        raise LnurlFailed("the pay request has no metadata")
    try:
        # An int (never a bool, whose type is a subclass of int, nor a float), within the supply.
        min_msat = parse_amount_msat(answer.get("minSendable"), field="minSendable")
        max_msat = parse_amount_msat(answer.get("maxSendable"), field="maxSendable")
    except InvalidAmount as exc:
        raise LnurlFailed(f"the pay request is malformed: {exc.message}") from exc
    try:
        # LUD-06: the invoice's description hash is the SHA-256 of the metadata served.
        metadata_hash = hashlib.sha256(metadata.encode()).digest()
    except UnicodeEncodeError as exc:  # a lone surrogate, sent as "\ud800"
        raise LnurlFailed("the pay request's metadata is not valid Unicode") from exc
    return callback, metadata_hash, min_msat, max_msat


async def _fetch_invoice(
    name: str, host: str, amount_msat: int, *, allow_private: bool, deadline_s: float
) -> tuple[str, bytes]:
    """The callback's ``pr`` and the description hash it must commit to."""
    # allow_private is for development and tests only: local services speak plain http
    scheme = "http" if allow_private else "https"
    url = f"{scheme}://{host}/.well-known/lnurlp/{name}"
    await check_destination(url, allow_private=allow_private)
    async with httpx.AsyncClient(
        timeout=deadline_s, follow_redirects=False, headers={"Accept-Encoding": "identity"}
    ) as http:
        callback, metadata_hash, min_msat, max_msat = _pay_request(await _get_json(http, url))
        if not min_msat <= amount_msat <= max_msat:
            raise LnurlFailed(f"{name}@{host} takes between {min_msat} and {max_msat} msat")
        await check_destination(callback, allow_private=allow_private)
        answer = await _get_json(http, callback, {"amount": str(amount_msat)})
    pr = answer.get("pr")
    if not isinstance(pr, str):
        raise LnurlFailed("the callback returned no invoice")
    return pr, metadata_hash


async def resolve_invoice(
    address: str, amount_msat: int, *, allow_private: bool, deadline_s: float = DEADLINE_S
) -> str:
    """A BOLT11 invoice for ``amount_msat`` from ``address``'s LNURL-pay service, checked."""
    name, host = parse_address(address)
    try:
        async with asyncio.timeout(deadline_s):
            pr, metadata_hash = await _fetch_invoice(
                name, host, amount_msat, allow_private=allow_private, deadline_s=deadline_s
            )
    except TimeoutError as exc:
        raise LnurlFailed(f"{address} did not resolve within {deadline_s:g} s") from exc
    try:
        invoice = decode_bolt11(pr)
    except InvalidInvoice as exc:
        raise LnurlFailed("the callback returned an invalid invoice") from exc
    if invoice.amount_msat != amount_msat:
        raise LnurlFailed(
            f"the callback's invoice is for {invoice.amount_msat} msat, not {amount_msat}"
        )
    if invoice.description_hash != metadata_hash:
        raise LnurlFailed("the callback's invoice does not commit to the served metadata")
    return pr


class HttpLnurlResolver:
    """The ``LnurlResolver`` port over HTTP (``resolve_invoice``). ``allow_private`` lets
    plain http and private addresses through: for development and tests only."""

    def __init__(self, allow_private: bool, deadline_s: float = DEADLINE_S) -> None:
        self._allow_private = allow_private
        self._deadline_s = deadline_s

    async def resolve_invoice(self, address: str, amount_msat: int) -> str:
        return await resolve_invoice(
            address, amount_msat, allow_private=self._allow_private, deadline_s=self._deadline_s
        )
