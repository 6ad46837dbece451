"""Time-based one-time passwords (RFC 6238: 6 digits, 30 s steps, SHA-1, as every
authenticator app reads them), with pyotp.

A code is accepted for the current step and the one either side (clock drift), and each step
at most once: the caller keeps the last step used and passes it back, so a code seen over a
shoulder cannot be replayed within its minute.
"""

from __future__ import annotations

import hmac
import re

import pyotp

STEP_S = 30
DRIFT_STEPS = 1
ISSUER = "lngate"
_CODE = re.compile(r"[0-9]{6}")


def new_secret() -> str:
    """A random base32 secret of 160 bits (RFC 4226's recommendation)."""
    return pyotp.random_base32(length=32)


def provisioning_uri(secret: str, account: str) -> str:
    """The ``otpauth://totp/...`` URI an authenticator app scans."""
    return pyotp.TOTP(secret, interval=STEP_S).provisioning_uri(name=account, issuer_name=ISSUER)


def matching_step(secret: str, code: str, now_s: int, *, after_step: int) -> int | None:
    """The time step ``code`` belongs to (within the drift window, and after ``after_step``,
    the last one used), or None when it is not a current code."""
    code = code.strip().replace(" ", "")
    if _CODE.fullmatch(code) is None:
        return None
    totp = pyotp.TOTP(secret, interval=STEP_S)
    now_step = now_s // STEP_S
    for step in range(now_step - DRIFT_STEPS, now_step + DRIFT_STEPS + 1):
        if step > after_step and hmac.compare_digest(totp.at(step * STEP_S), code):
            return step
    return None


def code_at(secret: str, now_s: int) -> str:
    """The code of ``now_s`` (tests and the console's first sign-in use it)."""
    return pyotp.TOTP(secret, interval=STEP_S).at(now_s)
