"""Rate limits on what unsigned callers can make us do, counted in the database so that every
API process shares them."""

from __future__ import annotations

import time

from lngate.bootstrap import Core
from lngate.domain.errors import RateLimited
from lngate.store import rate_limits

WINDOW_MS = 60_000


async def take(core: Core, bucket: str, per_minute: int) -> None:
    """Count one request in ``bucket``; RateLimited past ``per_minute`` in this minute."""
    window_start_ms = int(time.time() * 1000) // WINDOW_MS * WINDOW_MS
    hits = await core.write(lambda tx: rate_limits.hit(tx, bucket, window_start_ms))
    if hits > per_minute:
        raise RateLimited(f"too many requests from this address; at most {per_minute} a minute")
