"""API secrets are stored encrypted (AES-256-GCM) under a server key that never enters the DB."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_NONCE_BYTES = 12


class ServerKey:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the server key must be 32 bytes")
        self._aead = AESGCM(key)
        # A separate key for derivations, so a derived value never equals an encryption input.
        self._derive_key = hmac.new(key, b"lngate derive v1", hashlib.sha256).digest()

    @classmethod
    def load_or_create(cls, path: Path) -> ServerKey:
        """Read the key file; on the first run of the embedded default, create it (mode 0600)."""
        if path.exists():
            return cls(bytes.fromhex(path.read_text().strip()))
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_bytes(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, key.hex().encode())
        finally:
            os.close(fd)
        return cls(key)

    def encrypt(self, plaintext: bytes, *, context: bytes) -> bytes:
        """``context`` (the API key id) is bound in as associated data: a ciphertext moved to
        another key's row does not decrypt."""
        nonce = secrets.token_bytes(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plaintext, context)

    def derive(self, label: bytes) -> bytes:
        """32 bytes determined by the server key and ``label`` (HMAC-SHA256): secrets that are
        recomputed when needed instead of stored (an order's preimage)."""
        return hmac.new(self._derive_key, label, hashlib.sha256).digest()

    def decrypt(self, blob: bytes, *, context: bytes) -> bytes:
        return self._aead.decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], context)


def new_api_key() -> str:
    return "lk_" + secrets.token_hex(12)


def new_api_secret() -> str:
    return secrets.token_hex(32)
