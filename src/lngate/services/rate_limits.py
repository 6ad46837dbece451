"""Rate limits on what unsigned callers can make us do, counted in the database so that every
API process shares them."""

from __future__ import annotations

from lngate.domain.errors import RateLimited
from lngate.services.ports import Clock, UnitOfWork
from lngate.store import rate_limits

WINDOW_MS = 60_000


class RateLimiter:
    """Fixed one-minute windows per bucket, counted in the database (every process shares
    them), the windows placed by ``clock``."""

    def __init__(self, uow: UnitOfWork, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    async def take(self, bucket: str, per_minute: int) -> None:
        """Count one request in ``bucket``; RateLimited past ``per_minute`` in this minute."""
        window_start_ms = self._clock.now_ms() // WINDOW_MS * WINDOW_MS
        hits = await self._uow.write(lambda tx: rate_limits.hit(tx, bucket, window_start_ms))
        if hits > per_minute:
            raise RateLimited(f"too many requests from this address; at most {per_minute} a minute")
