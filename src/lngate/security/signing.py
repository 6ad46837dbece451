"""Request signatures.

``X-Lngate-Signature`` = lowercase hex HMAC-SHA256(api_secret, timestamp + METHOD + path_with_query
+ body), with ``X-Lngate-Timestamp`` in Unix milliseconds. A request is accepted only inside the
receive window and only once: a second use of the same signature is a replay.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections import OrderedDict

KEY_HEADER = "X-Lngate-Key"
TIMESTAMP_HEADER = "X-Lngate-Timestamp"
SIGNATURE_HEADER = "X-Lngate-Signature"


def sign(
    secret: str, timestamp_ms: int | str, method: str, path_with_query: str, body: bytes
) -> str:
    message = f"{timestamp_ms}{method.upper()}{path_with_query}".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signatures_match(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode(), given.encode())


class ReplayGuard:
    """Remembers the signatures seen inside the receive window (bounded in count and time).

    A signature older than the window is refused by the timestamp check, so forgetting it then is
    safe. Per process: several API processes each keep their own; money-moving POSTs are also
    protected across processes by their Idempotency-Key, which lives in the database.
    """

    def __init__(self, window_ms: int, max_entries: int = 1_000_000) -> None:
        self._window_ms = window_ms
        self._max_entries = max_entries
        self._seen: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()

    def first_use(self, signature: str, now_ms: int | None = None) -> bool:
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        with self._lock:
            self._expire(now_ms)
            if signature in self._seen:
                return False
            if len(self._seen) >= self._max_entries:
                return False  # full of live signatures: refuse rather than forget one
            self._seen[signature] = now_ms
            return True

    def _expire(self, now_ms: int) -> None:
        # entries are kept for twice the window: a timestamp may lie up to one window ahead
        horizon = now_ms - 2 * self._window_ms
        while self._seen:
            sig, seen_at = next(iter(self._seen.items()))
            if seen_at >= horizon:
                break
            del self._seen[sig]
