"""Run a money-moving operation at most once per (user, Idempotency-Key).

The stored response is written in the same transaction as the money it describes, so either
both exist or neither does. A refused operation stores nothing: the caller may retry the key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import orjson

from lngate.domain.errors import IdempotencyConflict, InvalidRequest
from lngate.store import idempotency
from lngate.store.db import IntegrityError, Tx
from lngate.store.idempotency import StoredResponse

MAX_KEY_LENGTH = 128
CONFLICT_MESSAGE = "this Idempotency-Key was already used for a different request"


def request_hash(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + body).hexdigest()


def validate_key(key: str | None) -> str:
    if key is None or not key.strip():
        raise InvalidRequest("an Idempotency-Key header is required on this request")
    if len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise InvalidRequest(
            f"Idempotency-Key must be printable and at most {MAX_KEY_LENGTH} chars"
        )
    return key


def replayed(tx: Tx, user_id: str, key: str, req_hash: str) -> dict[str, Any] | None:
    """The stored response for this key, or None; a different request under it is refused."""
    stored = idempotency.lookup(tx, user_id, key)
    if stored is None:
        return None
    if stored.request_hash != req_hash:
        raise IdempotencyConflict(CONFLICT_MESSAGE)
    result: dict[str, Any] = orjson.loads(stored.response_json)
    return result


def run_once(
    tx: Tx,
    user_id: str,
    key: str,
    req_hash: str,
    operation: Callable[[Tx], dict[str, Any]],
    *,
    status_code: int = 201,
) -> dict[str, Any]:
    previous = replayed(tx, user_id, key, req_hash)
    if previous is not None:
        return previous
    try:
        with tx.savepoint():
            response = operation(tx)
            stored = StoredResponse(req_hash, status_code, orjson.dumps(response).decode())
            idempotency.store(tx, user_id, key, stored)
    except IntegrityError:
        # A concurrent request with this key (another process) committed first: everything
        # this one wrote is undone, and the first answer stands.
        previous = replayed(tx, user_id, key, req_hash)
        if previous is None:
            raise
        return previous
    return response
