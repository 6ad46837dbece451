"""Fixed-window counters (migration 0009), the same for every process on one database."""

from __future__ import annotations

from lngate.store.db import Tx


def hit(tx: Tx, bucket: str, window_start_ms: int) -> int:
    """Count one hit in ``bucket``'s window starting at ``window_start_ms``; the window's count."""
    hits = int(
        tx.scalar(
            "INSERT INTO rate_limit_hits (bucket, window_start_ms, hits) VALUES (:b, :w, 1) "
            "ON CONFLICT (bucket, window_start_ms) "
            "DO UPDATE SET hits = rate_limit_hits.hits + 1 RETURNING hits",
            {"b": bucket, "w": window_start_ms},
        )
    )
    if hits == 1:  # a new window has begun: every older one is of no more use
        tx.execute("DELETE FROM rate_limit_hits WHERE window_start_ms < :w", {"w": window_start_ms})
    return hits
