"""Keys and identifiers of simnet: node keys (secp256k1), regtest addresses, txids."""

from __future__ import annotations

import hashlib
import os

import coincurve
from embit import bip32, script  # type: ignore[import-untyped]
from embit.networks import NETWORKS  # type: ignore[import-untyped]

from lngate.lightning.errors import InvalidNodeRequest

REGTEST_HRP = "bcrt1"
_DERIVATION = "m/84h/1h/0h/0/{index}"  # BIP 84, testnet/regtest coin type


def new_node_secret() -> bytes:
    return coincurve.PrivateKey().secret


def node_pubkey(secret: bytes) -> str:
    """Compressed public key, hex (the node id)."""
    return coincurve.PrivateKey(secret).public_key.format(compressed=True).hex()


def derive_address(secret: bytes, index: int) -> str:
    """A regtest P2WPKH address of the node's simulated wallet (BIP 84 from the node secret)."""
    assert 0 <= index < 2**31
    child = bip32.HDKey.from_seed(secret).derive(_DERIVATION.format(index=index))
    address: str = script.p2wpkh(child.key).address(NETWORKS["regtest"])
    return address


def check_regtest_address(address: str) -> str:
    """The address if it is a regtest segwit address; InvalidNodeRequest otherwise."""
    if not isinstance(address, str) or not address.lower().startswith(REGTEST_HRP):
        raise InvalidNodeRequest("not a regtest address")
    try:
        parsed = script.Script.from_address(address)
        canonical: str = parsed.address(NETWORKS["regtest"])
    except Exception as exc:  # embit raises its own and ValueError/IndexError on junk
        raise InvalidNodeRequest("invalid address") from exc
    if canonical != address.lower():
        raise InvalidNodeRequest("invalid address")
    return canonical


def new_txid() -> str:
    """A fresh transaction id: sha256 of random bytes, hex (as a real txid, it is 32 bytes)."""
    return hashlib.sha256(b"simnet-tx" + os.urandom(32)).digest()[::-1].hex()
