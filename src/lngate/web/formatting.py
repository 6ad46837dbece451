"""How pages write amounts and times: integers only, exact to the millisatoshi."""

from __future__ import annotations

from datetime import UTC, datetime

MSAT_PER_SAT = 1_000
SAT_PER_BTC = 100_000_000


def sat_text(amount_msat: int) -> str:
    """``12,345`` for whole satoshis; ``0.001`` or ``12,345.5`` (exact, no trailing zeros)
    when the amount is not a whole number of sat."""
    sat, msat = divmod(amount_msat, MSAT_PER_SAT)
    if msat == 0:
        return f"{sat:,}"
    return f"{sat:,}.{msat:03d}".rstrip("0")


def btc_text(amount_msat: int) -> str:
    """The amount in BTC to the satoshi (``0.00012345``), or to the msat when it has msat."""
    sat, msat = divmod(amount_msat, MSAT_PER_SAT)
    whole, rest = divmod(sat, SAT_PER_BTC)
    text = f"{whole}.{rest:08d}"
    return f"{text}{msat:03d}".rstrip("0") if msat else text


def countdown_text(remaining_s: int) -> str:
    """``14:59``, or ``1:02:03`` from an hour up; ``0:00`` once passed."""
    remaining_s = max(remaining_s, 0)
    hours, rest = divmod(remaining_s, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{seconds:02d}"
    return f"{minutes}:{seconds:02d}"


def utc_text(iso: str) -> str:
    """An ISO 8601 instant as people read it: ``1 Dec 2026, 14:05 UTC``."""
    at = datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(UTC)
    return f"{at.day} {at:%b %Y, %H:%M} UTC"


def utc_ms_text(at_ms: int) -> str:
    """Unix time in ms as ``utc_text`` writes it."""
    return utc_text(datetime.fromtimestamp(at_ms // 1000, UTC).isoformat())
