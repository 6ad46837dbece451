"""Passwords, TOTP codes and the amounts typed into forms: the rules the sign-in and the money
forms rest on."""

from __future__ import annotations

import pytest

from lngate.domain.errors import InvalidAmount
from lngate.security import totp
from lngate.security.passwords import (
    hash_password,
    needs_rehash,
    password_problem,
    verify_password,
)
from lngate.web.forms import sat_to_msat

NOW_S = 1_800_000_000  # on a step boundary: 60_000_000 * 30


def test_a_password_is_stored_as_argon2id_and_verified_against_it() -> None:
    stored = hash_password("correct horse battery")
    assert stored.startswith("$argon2id$")
    assert "correct horse" not in stored
    assert verify_password(stored, "correct horse battery")
    assert not verify_password(stored, "correct horse batterY")
    assert not needs_rehash(stored)


def test_no_hash_and_oversized_passwords_never_match() -> None:
    assert not verify_password(None, "anything at all")
    assert not verify_password(hash_password("x" * 20), "x" * 2000)


@pytest.mark.parametrize(
    ("password", "problem"),
    [("short", "at least 10"), ("x" * 1025, "1024"), ("ten chars!", None)],
)
def test_new_passwords_have_bounds(password: str, problem: str | None) -> None:
    found = password_problem(password)
    assert (found is None) if problem is None else (problem in (found or ""))


def test_a_code_matches_its_step_and_one_either_side() -> None:
    secret = totp.new_secret()
    now_step = NOW_S // totp.STEP_S
    for drift in (-1, 0, 1):
        code = totp.code_at(secret, NOW_S + drift * totp.STEP_S)
        assert totp.matching_step(secret, code, NOW_S, after_step=0) == now_step + drift
    too_old = totp.code_at(secret, NOW_S - 2 * totp.STEP_S)
    assert totp.matching_step(secret, too_old, NOW_S, after_step=0) is None


def test_a_used_step_cannot_be_used_again() -> None:
    secret = totp.new_secret()
    code = totp.code_at(secret, NOW_S)
    step = totp.matching_step(secret, code, NOW_S, after_step=0)
    assert step is not None
    assert totp.matching_step(secret, code, NOW_S, after_step=step) is None


@pytest.mark.parametrize("code", ["", "12345", "1234567", "abcdef", "12 34 5x", "١٢٣٤٥٦"])
def test_codes_that_are_not_six_digits_never_match(code: str) -> None:
    assert totp.matching_step(totp.new_secret(), code, NOW_S, after_step=0) is None


def test_the_provisioning_uri_is_what_authenticator_apps_scan() -> None:
    secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
    uri = totp.provisioning_uri(secret, "alice")
    assert uri == f"otpauth://totp/lngate:alice?secret={secret}&issuer=lngate"


@pytest.mark.parametrize(
    ("typed", "msat"),
    [("1500", 1_500_000), ("1,500", 1_500_000), ("1 500.5", 1_500_500), ("0.001", 1), ("", None)],
)
def test_amounts_typed_in_sat_become_exact_msat(typed: str, msat: int | None) -> None:
    assert sat_to_msat(typed) == msat


@pytest.mark.parametrize("typed", ["-5", "1e9", "1.0001", "0x10", "½", "1" * 16, "NaN"])
def test_other_amounts_are_refused(typed: str) -> None:
    with pytest.raises(InvalidAmount):
        sat_to_msat(typed)
