"""Request signatures and the replay guard."""

import hashlib
import hmac

from lngate.security.signing import ReplayGuard, sign


def test_signature_is_hmac_sha256_over_timestamp_method_path_and_body() -> None:
    expected = hmac.new(
        b"secret", b"1700000000000POST/v1/transfers?x=1" + b'{"a":1}', hashlib.sha256
    ).hexdigest()
    assert sign("secret", 1700000000000, "post", "/v1/transfers?x=1", b'{"a":1}') == expected


def test_a_signature_is_accepted_once() -> None:
    guard = ReplayGuard(window_ms=5_000)
    assert guard.first_use("sig", now_ms=1_000)
    assert not guard.first_use("sig", now_ms=1_001)


def test_the_guard_forgets_only_what_the_window_already_refuses() -> None:
    guard = ReplayGuard(window_ms=5_000)
    assert guard.first_use("sig", now_ms=0)
    assert not guard.first_use("sig", now_ms=9_999)
    assert guard.first_use("sig", now_ms=10_001)  # by now its timestamp is outside the window


def test_a_full_guard_refuses_rather_than_forgets() -> None:
    guard = ReplayGuard(window_ms=5_000, max_entries=2)
    assert guard.first_use("a", now_ms=0) and guard.first_use("b", now_ms=0)
    assert not guard.first_use("c", now_ms=1)


def test_the_client_moves_only_repeated_requests_forward_in_time() -> None:
    from lngate.client import timestamp_for

    first = timestamp_for("POST", "/v1/transfers", b'{"a":1}')
    again = timestamp_for("POST", "/v1/transfers", b'{"a":1}')
    assert again > first  # an identical request gets a distinct signature
    # thousands of distinct requests do not drift ahead of the clock
    import time

    stamps = [timestamp_for("POST", "/v1/transfers", str(i).encode()) for i in range(20_000)]
    assert max(stamps) <= int(time.time() * 1000) + 5
