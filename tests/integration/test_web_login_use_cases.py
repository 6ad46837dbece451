"""The sign-in use cases without an HTTP server, on a fixed clock: passwords, the lock after
failed sign-ins, TOTP (each code once), sessions that end when idle or old, and the realms
that keep a wallet session out of the console."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from lngate.bootstrap import Core, accounts_for
from lngate.config import WebPolicy
from lngate.domain.errors import AuthError, InvalidRequest, RateLimited, TotpRequired, UnknownUser
from lngate.domain.users import Role
from lngate.security import totp
from lngate.services.clock import FixedClock
from lngate.services.web_logins import Realm, WebLogins, WebSession

T0_MS = 1_800_000_000_000  # a TOTP step boundary
PASSWORD = "a long enough password"
POLICY = WebPolicy(session_idle_s=600, session_max_s=3_600, login_failures_max=5, login_lock_s=900)


@dataclass
class World:
    core: Core
    clock: FixedClock
    logins: WebLogins

    def user(self, name: str, role: Role = Role.USER) -> None:
        accounts_for(self.core).create_user_sync(name, role)
        self.logins.set_password_sync(name, PASSWORD, actor="test")

    async def enrolled(self, name: str) -> tuple[WebSession, str]:
        """A session of ``name``, with TOTP turned on: its secret."""
        token = (await self.logins.sign_in(Realm.APP, name, PASSWORD, "")).token
        session = await self.logins.session(Realm.APP, token)
        assert session is not None
        enrolment = await self.logins.start_totp(session)
        await self.logins.confirm_totp(session, PASSWORD, self.code(enrolment.secret))
        return session, enrolment.secret

    def code(self, secret: str, steps_ahead: int = 0) -> str:
        now_s = self.clock.now_ms() // 1000
        return totp.code_at(secret, now_s + steps_ahead * totp.STEP_S)


@pytest.fixture
def world(core: Core) -> Iterator[World]:
    clock = FixedClock(T0_MS)
    yield World(core, clock, WebLogins(core.uow, clock, core.server_key, POLICY))


async def test_a_password_signs_in_to_a_session_that_the_token_finds(world: World) -> None:
    world.user("alice")
    done = await world.logins.sign_in(Realm.APP, "alice", PASSWORD, "")
    session = await world.logins.session(Realm.APP, done.token)
    assert session is not None and session.username == "alice"
    assert session.expires_at_ms == T0_MS + 3_600_000
    assert await world.logins.session(Realm.APP, done.token + "x") is None
    assert await world.logins.session(Realm.CONSOLE, done.token) is None  # another realm


async def test_a_session_ends_when_idle_and_when_old(world: World) -> None:
    world.user("alice")
    token = (await world.logins.sign_in(Realm.APP, "alice", PASSWORD, "")).token
    world.clock.advance(599_000)
    assert await world.logins.session(Realm.APP, token) is not None  # and it is touched
    world.clock.advance(599_000)
    assert await world.logins.session(Realm.APP, token) is not None
    world.clock.advance(601_000)
    assert await world.logins.session(Realm.APP, token) is None  # idle too long

    token = (await world.logins.sign_in(Realm.APP, "alice", PASSWORD, "")).token
    for _ in range(7):  # used every 9 minutes, but not past the hour after sign-in
        world.clock.advance(540_000)
        alive = await world.logins.session(Realm.APP, token)
    assert alive is None


async def test_five_failures_lock_the_account_for_the_lock_time(world: World) -> None:
    world.user("alice")
    for _ in range(5):
        with pytest.raises(AuthError):
            await world.logins.sign_in(Realm.APP, "alice", "wrong password!", "")
    with pytest.raises(RateLimited, match="15 min"):
        await world.logins.sign_in(Realm.APP, "alice", PASSWORD, "")
    world.clock.advance(900_000)
    assert await world.logins.sign_in(Realm.APP, "alice", PASSWORD, "")
    # A success starts the count again.
    for _ in range(4):
        with pytest.raises(AuthError):
            await world.logins.sign_in(Realm.APP, "alice", "wrong password!", "")
    assert await world.logins.sign_in(Realm.APP, "alice", PASSWORD, "")


async def test_a_new_password_ends_every_session(world: World) -> None:
    world.user("alice")
    token = (await world.logins.sign_in(Realm.APP, "alice", PASSWORD, "")).token
    world.logins.set_password_sync("alice", "another long password", actor="test")
    assert await world.logins.session(Realm.APP, token) is None
    with pytest.raises(AuthError):
        await world.logins.sign_in(Realm.APP, "alice", PASSWORD, "")
    with pytest.raises(UnknownUser):
        world.logins.set_password_sync("nobody", PASSWORD, actor="test")
    with pytest.raises(InvalidRequest):
        world.logins.set_password_sync("alice", "short", actor="test")


async def test_with_totp_each_code_signs_in_once(world: World) -> None:
    world.user("alice")
    first = await world.logins.sign_in(Realm.APP, "alice", PASSWORD, "")
    session = await world.logins.session(Realm.APP, first.token)
    assert session is not None
    secret = (await world.logins.start_totp(session)).secret
    with pytest.raises(TotpRequired):  # a code of three minutes on is not current
        await world.logins.confirm_totp(session, PASSWORD, world.code(secret, steps_ahead=6))
    with pytest.raises(AuthError):  # a session alone cannot put another phone on it
        await world.logins.confirm_totp(session, "not the password", world.code(secret))
    await world.logins.confirm_totp(session, PASSWORD, world.code(secret))

    with pytest.raises(TotpRequired):
        await world.logins.sign_in(Realm.APP, "alice", PASSWORD, "")
    with pytest.raises(AuthError):  # the code that turned TOTP on is spent
        await world.logins.sign_in(Realm.APP, "alice", PASSWORD, world.code(secret))
    world.clock.advance(totp.STEP_S * 1000)
    code = world.code(secret)
    assert await world.logins.sign_in(Realm.APP, "alice", PASSWORD, code)
    with pytest.raises(AuthError):  # seen over a shoulder: no use within its minute
        await world.logins.sign_in(Realm.APP, "alice", PASSWORD, code)


async def test_operators_always_need_a_code_and_users_cannot_open_the_console(
    world: World,
) -> None:
    created = world.logins.create_operator_sync("ops", PASSWORD, actor="test")
    secret = created.provisioning_uri.split("secret=")[1].split("&")[0]
    with pytest.raises(TotpRequired):
        await world.logins.sign_in(Realm.CONSOLE, "ops", PASSWORD, "")
    assert await world.logins.sign_in(Realm.CONSOLE, "ops", PASSWORD, world.code(secret))
    with pytest.raises(AuthError):  # an operator is not a wallet user
        await world.logins.sign_in(Realm.APP, "ops", PASSWORD, world.code(secret, 1))
    world.user("alice")
    with pytest.raises(AuthError):
        await world.logins.sign_in(Realm.CONSOLE, "alice", PASSWORD, "")
    with pytest.raises(InvalidRequest):
        world.logins.create_operator_sync("ops", PASSWORD, actor="test")


async def test_attempts_at_once_cannot_outrun_the_lock(world: World) -> None:
    world.user("alice")
    tries = [world.logins.sign_in(Realm.APP, "alice", f"wrong password {i}", "") for i in range(40)]
    answers = await asyncio.gather(*tries, return_exceptions=True)
    refused = [type(a) for a in answers]
    assert refused.count(AuthError) <= POLICY.login_failures_max
    assert refused.count(RateLimited) >= 40 - POLICY.login_failures_max
    with pytest.raises(RateLimited):
        await world.logins.sign_in(Realm.APP, "alice", PASSWORD, "")


async def test_wrong_codes_at_a_withdrawal_lock_the_account_too(world: World) -> None:
    world.user("alice")
    session, secret = await world.enrolled("alice")
    wrong = world.code(secret, steps_ahead=9)
    for _ in range(POLICY.login_failures_max):
        with pytest.raises(TotpRequired):
            await world.logins.check_code(session, wrong)
    with pytest.raises(RateLimited):  # even the right code now waits
        await world.logins.check_code(session, world.code(secret, steps_ahead=1))
    world.clock.advance(POLICY.login_lock_s * 1000)
    await world.logins.check_code(session, world.code(secret))


async def test_a_right_password_without_its_code_does_not_reset_the_count(world: World) -> None:
    world.user("alice")
    _session, secret = await world.enrolled("alice")
    wrong = world.code(secret, steps_ahead=9)
    for attempt in range(POLICY.login_failures_max):
        code = wrong if attempt % 2 else ""
        with pytest.raises((AuthError, TotpRequired)):
            await world.logins.sign_in(Realm.APP, "alice", PASSWORD, code)
    with pytest.raises(RateLimited):
        await world.logins.sign_in(Realm.APP, "alice", PASSWORD, wrong)


async def test_sign_ins_in_the_wrong_realm_count_for_nothing(world: World) -> None:
    created = world.logins.create_operator_sync("ops", PASSWORD, actor="test")
    secret = created.provisioning_uri.split("secret=")[1].split("&")[0]
    for _ in range(10):  # someone on the public listener cannot lock an operator out
        with pytest.raises(AuthError):
            await world.logins.sign_in(Realm.APP, "ops", "wrong password!", "")
    assert await world.logins.sign_in(Realm.CONSOLE, "ops", PASSWORD, world.code(secret))


async def test_an_operator_resets_a_lost_phone_with_the_password(world: World) -> None:
    world.user("alice")
    await world.enrolled("alice")
    world.logins.set_password_sync("alice", "a new long password", actor="test", reset_totp=True)
    assert await world.logins.sign_in(Realm.APP, "alice", "a new long password", "")
