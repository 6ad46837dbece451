"""Reading a cold-storage import: a list of addresses, or one xpub / output descriptor from
which addresses are derived watch-only (embit). No I/O.

Every address is checked for its checksum (base58check; BIP 173 bech32 for witness v0, BIP 350
bech32m for v1) and for the node's network; the first bad line refuses the whole import.
Private keys (xprv/tprv/..., WIF) are refused without being echoed: lngate holds no cold key.

A bare extended key is taken as a BIP 84 account key: receive addresses ``<key>/0/i``, P2WPKH
for xpub/tpub/zpub/vpub and P2SH-P2WPKH for ypub/upub (BIP 49). For anything else, give a
descriptor such as ``wpkh([fingerprint/84h/1h/0h]tpub.../0/*)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from embit import base58, bech32, bip32, script  # type: ignore[import-untyped]
from embit.descriptor import Descriptor  # type: ignore[import-untyped]
from embit.descriptor.checksum import add_checksum  # type: ignore[import-untyped]
from embit.networks import NETWORKS  # type: ignore[import-untyped]

from lngate.domain.errors import ColdImportRefused, InvariantBroken, PrivateKeyRefused
from lngate.lightning.node import Network
from lngate.store.treasury import NewColdAddress

COUNT_DEFAULT = 100
COUNT_MAX = 10_000
LINES_MAX = 100_000

# embit's network parameters, and the bech32 human-readable part, per node network.
_EMBIT_NET: dict[Network, str] = {
    Network.MAINNET: "main",
    Network.TESTNET: "test",
    Network.SIGNET: "signet",
    Network.REGTEST: "regtest",
    Network.SIMNET: "regtest",  # simnet uses regtest addresses (bcrt1...)
}
_HRP_NETWORK = {"bc": "mainnet", "tb": "testnet/signet", "bcrt": "regtest"}
_BASE58_MAIN = {0x00, 0x05}
_BASE58_TEST = {0x6F, 0xC4}
# An extended private key (xprv, tprv, yprv, zprv, uprv, vprv, and the multisig Yprv...): at
# the start of a line or after "(", "[", "]" or "," in a descriptor. Not any substring: "xprv"
# is also four valid bech32 characters, which an address may well contain.
_PRIVATE_KEY = re.compile(r"(?:^|[(\[\],])(?:[xtyzuvYZUV])prv[1-9A-HJ-NP-Za-km-z]{20,}")
_PUBLIC_PREFIXES = ("xpub", "tpub", "ypub", "zpub", "upub", "vpub")
_DESCRIPTOR = re.compile(r"^(wpkh|sh|pkh|wsh|tr)\(")
_WIF_VERSIONS = {0x80, 0xEF}


@dataclass(frozen=True, slots=True)
class ColdImport:
    kind: str  # "addresses" or "descriptor"
    source: str
    addresses: tuple[NewColdAddress, ...]


def parse_cold_import(
    text: str, network: Network, *, count: int = COUNT_DEFAULT, source_name: str = "list"
) -> ColdImport:
    """The addresses an import file stands for, all valid for ``network``, or an error that
    names the first bad line."""
    if not 1 <= count <= COUNT_MAX:
        raise ColdImportRefused(f"count must be between 1 and {COUNT_MAX}")
    lines = text.splitlines()
    if len(lines) > LINES_MAX:
        raise ColdImportRefused(f"an import holds at most {LINES_MAX} lines")
    entries = [(n, _strip(line)) for n, line in enumerate(lines, start=1)]
    entries = [(n, e) for n, e in entries if e]
    for n, entry in entries:
        if _looks_private(entry):
            raise PrivateKeyRefused(
                f"line {n}: a private key; lngate holds no cold private key "
                "(export the xpub or an output descriptor instead)"
            )
    if not entries:
        raise ColdImportRefused("the import holds no address")
    first_n, first = entries[0]
    if _DESCRIPTOR.match(first) or first.startswith(("[", *_PUBLIC_PREFIXES)):
        if len(entries) > 1:
            raise ColdImportRefused(f"line {entries[1][0]}: a key import holds one descriptor")
        return _derive(first_n, first, network, count)
    return _address_list(entries, network, source_name)


def check_address(address: str, network: Network) -> str:
    """The canonical form of ``address`` if it is valid on ``network``; ColdImportRefused
    (without a line number) otherwise."""
    return _check(address, network)


def _strip(line: str) -> str:
    """The line without its comment. In a descriptor ``#`` also starts the checksum, so there
    a comment needs a space before it."""
    line = line.strip()
    if _DESCRIPTOR.match(line) or line.startswith("["):
        return re.split(r"\s#", line, maxsplit=1)[0].strip()
    return line.split("#", 1)[0].strip()


def _parse_descriptor(text: str) -> Any:
    """embit parses a descriptor's ``#checksum`` without checking it: check it here."""
    body, hashmark, checksum = text.partition("#")
    if hashmark and add_checksum(body) != text:
        raise ColdImportRefused(f"the descriptor checksum {checksum!r} does not match")
    return Descriptor.from_string(body)


def _looks_private(entry: str) -> bool:
    if _PRIVATE_KEY.search(entry):
        return True
    try:  # a WIF key: base58check of 0x80/0xEF + 32 bytes (+ 0x01 when compressed)
        raw = base58.decode_check(entry)
    except Exception:  # embit raises bare exceptions on non-base58 input
        return False
    return len(raw) in (33, 34) and raw[0] in _WIF_VERSIONS


def _address_list(entries: list[tuple[int, str]], network: Network, source_name: str) -> ColdImport:
    seen: dict[str, int] = {}
    rows = []
    for n, entry in entries:
        try:
            address = _check(entry, network)
        except ColdImportRefused as exc:
            raise ColdImportRefused(f"line {n}: {exc.message}") from None
        if address in seen:
            raise ColdImportRefused(f"line {n}: {address} repeats line {seen[address]}")
        seen[address] = n
        rows.append(NewColdAddress(address, network.value, f"list:{source_name}", n))
    return ColdImport("addresses", f"list:{source_name}", tuple(rows))


def _check(address: str, network: Network) -> str:
    net = NETWORKS[_EMBIT_NET[network]]
    if address.lower().startswith(("bc1", "tb1", "bcrt1")):
        return _check_segwit(address, network, net)
    try:
        raw = base58.decode_check(address)
    except Exception:  # embit raises bare exceptions on a bad checksum
        raise ColdImportRefused(
            f"not a valid address (bad checksum or encoding): {address}"
        ) from None
    if len(raw) != 21:
        raise ColdImportRefused(f"not a valid address (wrong length): {address}")
    if network in (Network.REGTEST, Network.SIMNET):
        raise ColdImportRefused(f"{network.value} takes bech32 addresses (bcrt1...): {address}")
    expected = _BASE58_MAIN if network is Network.MAINNET else _BASE58_TEST
    if raw[0] not in expected:
        other = "mainnet" if raw[0] in _BASE58_MAIN else "testnet"
        if raw[0] not in _BASE58_MAIN | _BASE58_TEST:
            raise ColdImportRefused(f"not a bitcoin address: {address}")
        raise ColdImportRefused(f"a {other} address, the node is on {network.value}: {address}")
    return address


def _check_segwit(address: str, network: Network, net: dict[str, Any]) -> str:
    if address != address.lower() and address != address.upper():
        raise ColdImportRefused(f"mixed case is not valid bech32: {address}")
    lowered = address.lower()
    hrp = lowered.rsplit("1", 1)[0]
    if hrp not in _HRP_NETWORK:
        raise ColdImportRefused(f"not a bitcoin address: {address}")
    version, program = bech32.decode(hrp, lowered)
    if version is None or version not in (0, 1) or len(program) not in (20, 32):
        raise ColdImportRefused(f"not a valid address (bad checksum or encoding): {address}")
    if version == 1 and len(program) != 32:
        raise ColdImportRefused(f"not a valid taproot address: {address}")
    if hrp != net["bech32"]:
        raise ColdImportRefused(
            f"a {_HRP_NETWORK[hrp]} address, the node is on {network.value}: {address}"
        )
    canonical: str = script.Script.from_address(lowered).address(net)
    if canonical != lowered:  # the checks above and embit disagree: store neither
        raise InvariantBroken(f"{address} re-encodes as {canonical}")
    return canonical


def _derive(line_no: int, text: str, network: Network, count: int) -> ColdImport:
    net = NETWORKS[_EMBIT_NET[network]]
    try:
        if _DESCRIPTOR.match(text) or text.startswith("["):
            desc = _parse_descriptor(text if _DESCRIPTOR.match(text) else f"wpkh({text})")
        else:
            desc = _bare_key_descriptor(text)
    except (ColdImportRefused, PrivateKeyRefused) as exc:
        raise type(exc)(f"line {line_no}: {exc.message}") from None
    except Exception as exc:
        raise ColdImportRefused(f"line {line_no}: not a valid xpub or descriptor ({exc})") from None
    if any(k.is_private for k in desc.keys):
        raise PrivateKeyRefused(f"line {line_no}: the descriptor holds a private key")
    if not desc.is_wildcard:
        raise ColdImportRefused(f"line {line_no}: the descriptor must end in /* to derive from")
    for key in desc.keys:
        if key.is_extended and key.key.version not in _versions(net):
            raise ColdImportRefused(
                f"line {line_no}: the key is not for {network.value} "
                f"({'mainnet' if _is_mainnet(key.key.version) else 'testnet'} key)"
            )
    source = str(desc)
    rows = []
    for i in range(count):
        derived = desc.derive(i, branch_index=0) if desc.num_branches > 1 else desc.derive(i)
        address = derived.address(net)
        rows.append(NewColdAddress(_check(address, network), network.value, source, i))
    return ColdImport("descriptor", source, tuple(rows))


def _bare_key_descriptor(text: str) -> Any:
    key = bip32.HDKey.from_string(text)
    if key.is_private:
        raise PrivateKeyRefused("a private key; lngate holds no cold private key")
    version = bytes(key.version)
    main, test = NETWORKS["main"], NETWORKS["test"]
    nested = version in (main["ypub"], test["ypub"])
    # Re-encode as xpub/tpub: embit's descriptors read the plain version bytes.
    plain = main["xpub"] if _is_mainnet(version) else test["xpub"]
    if version not in _versions(main) and version not in _versions(test):
        raise ColdImportRefused("unsupported key type (use a descriptor)")
    inner = f"wpkh({key.to_string(version=plain)}/0/*)"
    return Descriptor.from_string(f"sh({inner})" if nested else inner)


def _versions(net: dict[str, Any]) -> set[bytes]:
    return {net["xpub"], net["ypub"], net["zpub"]}


def _is_mainnet(version: bytes) -> bool:
    return bytes(version) in _versions(NETWORKS["main"])
