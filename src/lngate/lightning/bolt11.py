"""BOLT 11 invoices: decode (strict, total) and encode (for simnet's node keys).

``decode_bolt11`` raises ``InvalidInvoice`` for anything that is not a well-formed invoice with a
valid signature, and never any other exception: it is fed untrusted strings. It uses the ``bolt11``
library for bech32, tagged fields and the signature, and adds the reader rules that library skips
(mixed case, amount precision, unknown even feature bits, exact route hints). ``encode_bolt11``
is lngate's own: byte for byte what the library writes (a test compares them), at a twentieth of
its cost, which simnet pays for every invoice its nodes sign.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Sequence

import bolt11 as _lib
import coincurve
from bech32 import bech32_decode

from lngate.lightning.errors import InvalidInvoice
from lngate.lightning.node import DecodedInvoice, Network, RouteHintHop

__all__ = ["MAX_BOLT11_CHARS", "decode_bolt11", "encode_bolt11", "invoice_network"]

MAX_BOLT11_CHARS = 7089  # LND's limit (the largest QR code); bounds the work on hostile input
MAX_AMOUNT_MSAT = 21_000_000 * 100_000_000 * 1000
DEFAULT_EXPIRY_S = 3600
DEFAULT_MIN_FINAL_CLTV_EXPIRY = 18
# Feature bits this gateway understands: var_onion_optin, payment_secret, basic_mpp,
# option_route_blinding, option_payment_metadata (both the even and the odd bit).
KNOWN_FEATURE_BITS = frozenset({8, 9, 14, 15, 16, 17, 24, 25, 48, 49})

_CURRENCY_NETWORK = {
    "bc": Network.MAINNET,
    "tb": Network.TESTNET,
    "tbs": Network.SIGNET,
    "bcrt": Network.REGTEST,
}
_NETWORK_CURRENCY = {network: currency for currency, network in _CURRENCY_NETWORK.items()}
_HRP = re.compile(r"ln(bcrt|bc|tbs|tb)(?:([1-9][0-9]*|0)([munp]?))?")
_MSAT_PER_BTC = 100_000_000_000
_DIVISOR = {"": 1, "m": 1_000, "u": 1_000_000, "n": 1_000_000_000, "p": 1_000_000_000_000}
_TIMESTAMP_U5 = 7
_SIGNATURE_U5 = 104
_HINT_HOP_BYTES = 51  # pubkey 33 + short_channel_id 8 + fee_base 4 + fee_ppm 4 + cltv delta 2


def invoice_network(node_network: Network) -> Network:
    """The network an invoice of a node on ``node_network`` decodes as.

    simnet signs with the regtest prefix (``lnbcrt``) so that every decoder accepts its invoices.
    """
    return Network.REGTEST if node_network is Network.SIMNET else node_network


def decode_bolt11(s: str) -> DecodedInvoice:
    """Decode and verify a BOLT 11 invoice; ``InvalidInvoice`` for anything else."""
    if not isinstance(s, str):
        raise InvalidInvoice("invoice is not a string")
    text = s.strip()
    if text[:10].lower().startswith("lightning:"):
        text = text[10:]
    if not text or len(text) > MAX_BOLT11_CHARS:
        raise InvalidInvoice("invoice is empty or too long")
    # BOLT #11 via BIP 173: a reader MUST fail on a mixed-case string.
    if text != text.lower() and text != text.upper():
        raise InvalidInvoice("invoice mixes upper and lower case")
    text = text.lower()
    try:
        return _decode(text)
    except InvalidInvoice:
        raise
    # The library raises whatever its dependencies raise (bitstring, coincurve, ValueError,
    # UnicodeDecodeError, IndexError...); the contract of this edge is one error type.
    except Exception as exc:
        raise InvalidInvoice(f"invalid invoice: {type(exc).__name__}") from exc


def _decode(text: str) -> DecodedInvoice:
    hrp, data = bech32_decode(text)
    if hrp is None or data is None:
        raise InvalidInvoice("invalid bech32 (checksum, charset or separator)")
    network, amount_msat = _parse_hrp(hrp)
    if len(data) < _TIMESTAMP_U5 + _SIGNATURE_U5:
        raise InvalidInvoice("invoice too short")
    fields = _tagged_fields(data[_TIMESTAMP_U5:-_SIGNATURE_U5])
    _check_features(fields)
    inv = _lib.decode(text)  # verifies the signature, requires p, s and one of d/h
    payee = inv.payee
    if not isinstance(payee, str) or len(payee) != 66:
        raise InvalidInvoice("no payee")
    payment_hash = bytes.fromhex(inv.payment_hash)
    if len(payment_hash) != 32:
        raise InvalidInvoice("payment hash is not 32 bytes")
    secret_hex = inv.payment_secret
    description_hash = bytes.fromhex(inv.description_hash) if inv.description_hash else None
    expiry_s = int(inv.expiry)
    if expiry_s <= 0:
        raise InvalidInvoice("expiry is not positive")
    return DecodedInvoice(
        bolt11=text,
        payment_hash=payment_hash,
        payee=payee,
        amount_msat=amount_msat,
        created_at=int(inv.date),
        expiry_s=expiry_s,
        network=network,
        description=inv.description if description_hash is None else None,
        description_hash=description_hash,
        min_final_cltv_expiry=int(inv.min_final_cltv_expiry),
        payment_secret=bytes.fromhex(secret_hex) if secret_hex else None,
        route_hints=_route_hints(fields),
    )


def _parse_hrp(hrp: str) -> tuple[Network, int | None]:
    match = _HRP.fullmatch(hrp)
    if match is None:
        raise InvalidInvoice(f"unknown prefix or amount: {hrp[:20]!r}")
    currency, number, multiplier = match.group(1), match.group(2), match.group(3) or ""
    network = _CURRENCY_NETWORK[currency]
    if number is None:
        return network, None
    # BOLT #11: a reader MUST fail if the amount has the p multiplier and its last decimal is
    # not 0 (sub-millisatoshi precision).
    scaled = int(number) * _MSAT_PER_BTC
    amount_msat, remainder = divmod(scaled, _DIVISOR[multiplier])
    if remainder:
        raise InvalidInvoice("amount has sub-millisatoshi precision")
    if amount_msat <= 0 or amount_msat > MAX_AMOUNT_MSAT:
        raise InvalidInvoice("amount out of range")
    return network, amount_msat


def _tagged_fields(data: Sequence[int]) -> list[tuple[str, list[int]]]:
    """Split the tagged fields (u5 values between timestamp and signature)."""
    fields: list[tuple[str, list[int]]] = []
    pos = 0
    while pos < len(data):  # bounded: pos strictly increases
        if pos + 3 > len(data):
            raise InvalidInvoice("truncated tagged field")
        tag = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"[data[pos]]
        length = data[pos + 1] * 32 + data[pos + 2]
        if pos + 3 + length > len(data):
            raise InvalidInvoice("tagged field longer than the invoice")
        fields.append((tag, list(data[pos + 3 : pos + 3 + length])))
        pos += 3 + length
    return fields


def _u5_to_int(values: Sequence[int]) -> int:
    number = 0
    for value in values:
        number = (number << 5) | value
    return number


def _u5_to_bytes(values: Sequence[int]) -> bytes:
    nbits = len(values) * 5
    return (_u5_to_int(values) >> (nbits % 8)).to_bytes(nbits // 8, "big")


def _check_features(fields: list[tuple[str, list[int]]]) -> None:
    features = next((value for tag, value in fields if tag == "9"), None)
    if features is None:
        return
    bits = _u5_to_int(features)
    for bit in range(0, len(features) * 5, 2):
        # BOLT #11: a reader MUST fail if the 9 field contains unknown even bits that are set.
        if bits >> bit & 1 and bit not in KNOWN_FEATURE_BITS:
            raise InvalidInvoice(f"unknown required feature bit {bit}")


def _route_hints(fields: list[tuple[str, list[int]]]) -> tuple[tuple[RouteHintHop, ...], ...]:
    hints: list[tuple[RouteHintHop, ...]] = []
    for tag, value in fields:
        if tag != "r":
            continue
        raw = _u5_to_bytes(value)
        hops = []
        for start in range(0, len(raw) - _HINT_HOP_BYTES + 1, _HINT_HOP_BYTES):
            hop = raw[start : start + _HINT_HOP_BYTES]
            scid = int.from_bytes(hop[33:41], "big")
            hops.append(
                RouteHintHop(
                    pubkey=hop[:33].hex(),
                    short_channel_id=f"{scid >> 40}x{scid >> 16 & 0xFFFFFF}x{scid & 0xFFFF}",
                    fee_base_msat=int.from_bytes(hop[41:45], "big"),
                    fee_proportional_millionths=int.from_bytes(hop[45:49], "big"),
                    cltv_expiry_delta=int.from_bytes(hop[49:51], "big"),
                )
            )
        if hops:
            hints.append(tuple(hops))
    return tuple(hints)


def encode_bolt11(
    *,
    private_key: bytes,
    network: Network,
    payment_hash: bytes,
    payment_secret: bytes,
    amount_msat: int | None,
    created_at: int,
    expiry_s: int = DEFAULT_EXPIRY_S,
    description: str | None = None,
    description_hash: bytes | None = None,
    min_final_cltv_expiry: int = DEFAULT_MIN_FINAL_CLTV_EXPIRY,
) -> str:
    """Sign an invoice with ``private_key`` (32 bytes); exactly what ``decode_bolt11`` accepts."""
    assert len(private_key) == 32 and len(payment_hash) == 32 and len(payment_secret) == 32
    assert amount_msat is None or 0 < amount_msat <= MAX_AMOUNT_MSAT
    assert description_hash is None or len(description_hash) == 32
    assert expiry_s > 0 and created_at >= 0
    fields = [
        _tagged("p", _to_u5(payment_hash)),
        _tagged("s", _to_u5(payment_secret)),
        _tagged("h", _to_u5(description_hash))
        if description_hash is not None
        else _tagged("d", _to_u5((description or "").encode())),
        _tagged("x", _int_u5(expiry_s)),
        _tagged("c", _int_u5(min_final_cltv_expiry)),
        _tagged("9", _int_u5(_ENCODED_FEATURES)),
    ]
    data = _int_u5(created_at, width=_TIMESTAMP_U5) + [u5 for field in fields for u5 in field]
    hrp = "ln" + _NETWORK_CURRENCY[invoice_network(network)] + _amount_text(amount_msat)
    # The signature covers the human-readable part's bytes and the data, padded to bytes.
    digest = hashlib.sha256(hrp.encode() + _u5_to_padded_bytes(data)).digest()
    recoverable = _signing_key(private_key).sign_recoverable(digest, hasher=None)
    return _bech32_encode(hrp, data + _to_u5(recoverable))


@functools.lru_cache(maxsize=8)
def _signing_key(private_key: bytes) -> coincurve.PrivateKey:
    """A node signs every invoice with one key; making the key object derives its public key
    too, which costs as much as the signature."""
    return coincurve.PrivateKey(private_key)


# var_onion_optin (bit 8) and payment_secret (bit 14), both required: what LND sets too.
_ENCODED_FEATURES = (1 << 8) | (1 << 14)
_BECH32_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32_BYTES = _BECH32_CHARSET.encode().ljust(256, b"?")  # bytes.translate: 5-bit value -> char


# BIP 173's checksum generator, folded into a table of what each top 5 bits contribute: one
# lookup per character instead of five tests (the bech32 package's loop costs more than the
# invoice's signature).
_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
_POLYMOD_TABLE = tuple(
    functools.reduce(lambda acc, i: acc ^ (_GENERATOR[i] if top >> i & 1 else 0), range(5), 0)
    for top in range(32)
)


def _bech32_encode(hrp: str, data: list[int]) -> str:
    """BIP 173 bech32 (BOLT 11 has no length limit): ``hrp``, ``1``, the data, the checksum."""
    values = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp] + data + [0] * 6
    chk = 1
    for value in values:
        chk = ((chk & 0x1FFFFFF) << 5 ^ value) ^ _POLYMOD_TABLE[chk >> 25]
    chk ^= 1
    checksum = [(chk >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + bytes(data + checksum).translate(_BECH32_BYTES).decode("ascii")


def _u5_to_padded_bytes(values: Sequence[int]) -> bytes:
    nbits = len(values) * 5
    return (_u5_to_int(values) << (-nbits % 8)).to_bytes(-(-nbits // 8), "big")


def _tagged(tag: str, values: list[int]) -> list[int]:
    return [_BECH32_CHARSET.index(tag), len(values) >> 5, len(values) & 31, *values]


def _to_u5(data: bytes) -> list[int]:
    """Bytes as 5-bit groups, the last one padded with zero bits: 5 bytes (8 groups) at a
    time, so the cost grows with the length and not with its square."""
    padded = data + bytes(-len(data) % 5)
    groups: list[int] = []
    for start in range(0, len(padded), 5):
        n = int.from_bytes(padded[start : start + 5], "big")
        groups += (n >> 35, n >> 30 & 31, n >> 25 & 31, n >> 20 & 31)
        groups += (n >> 15 & 31, n >> 10 & 31, n >> 5 & 31, n & 31)
    return groups[: -(-len(data) * 8 // 5)]


def _int_u5(value: int, *, width: int | None = None) -> list[int]:
    """An integer as big-endian 5-bit groups: ``width`` of them, or as few as hold it."""
    count = width if width is not None else max(1, -(-value.bit_length() // 5))
    return [(value >> (5 * (count - 1 - i))) & 31 for i in range(count)]


def _amount_text(amount_msat: int | None) -> str:
    """The shortest exact amount of the human-readable part (BOLT 11: no leading zeros; the
    pico-bitcoin multiplier only for amounts that need it, always a multiple of 10)."""
    if amount_msat is None:
        return ""
    pico = amount_msat * 10
    for multiplier, per_unit in (("", 10**12), ("m", 10**9), ("u", 10**6), ("n", 10**3)):
        if pico % per_unit == 0:
            return f"{pico // per_unit}{multiplier}"
    return f"{pico}p"
