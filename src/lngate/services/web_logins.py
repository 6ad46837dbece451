"""Signing in to the wallet and the console: passwords (argon2id), TOTP, server-side sessions.

A session is a random token in a cookie; the database keeps only its SHA-256, with the CSRF
token of the forms it renders, when it was last seen and when it ends (``[web]
session_idle_s`` after the last request, ``session_max_s`` after sign-in at the latest).
Sign-in failures are counted per account: at ``login_failures_max`` in a row the account
waits ``login_lock_s`` (429 ``RATE_LIMITED``, audited), whatever password comes next.
Operators (the console's realm) always need a TOTP code; users once they have enrolled one.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import secrets
from dataclasses import dataclass

from lngate.config import WebPolicy
from lngate.domain.errors import (
    AuthError,
    InvalidRequest,
    RateLimited,
    TotpRequired,
    UnknownUser,
)
from lngate.domain.users import Role, UserStatus
from lngate.security import totp
from lngate.security.passwords import (
    hash_password,
    needs_rehash,
    password_problem,
    verify_password,
)
from lngate.security.secrets import ServerKey
from lngate.services.accounts import validate_username
from lngate.services.ports import Clock, UnitOfWork
from lngate.store import audit, users
from lngate.store import web as store
from lngate.store.db import IntegrityError, Tx

TOUCH_EVERY_MS = 60_000  # a session's last-seen time is written at most once a minute
SIGN_IN_REFUSED = "wrong username, password or code"
ARGON2_AT_ONCE = 2


class Realm(enum.StrEnum):
    APP = "app"  # the wallet, on the public listener
    CONSOLE = "console"  # the operators' console, on the admin listener

    def admits(self, role: Role) -> bool:
        return (role is Role.ADMIN) == (self is Realm.CONSOLE)


@dataclass(frozen=True, slots=True)
class WebSession:
    """Who is signed in, as a page needs it."""

    user_id: str
    username: str
    role: Role
    realm: Realm
    csrf_token: str
    totp_enabled: bool
    expires_at_ms: int


@dataclass(frozen=True, slots=True)
class SignedIn:
    token: str  # the cookie's value: shown once, stored only as a hash
    session: WebSession


@dataclass(frozen=True, slots=True)
class TotpEnrolment:
    secret: str  # base32, for typing into an app
    provisioning_uri: str  # otpauth://totp/..., for scanning


@dataclass(frozen=True, slots=True)
class OperatorCreated:
    username: str
    provisioning_uri: str


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class WebLogins:
    def __init__(
        self, uow: UnitOfWork, clock: Clock, server_key: ServerKey, policy: WebPolicy
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._key = server_key
        self._policy = policy
        # argon2id costs ~50 ms of CPU and 64 MiB each, on purpose: a flood of sign-ins waits
        # here instead of taking every core and the default thread pool.
        self._hashing = asyncio.Semaphore(ARGON2_AT_ONCE)

    # --- credentials (the CLI) ---------------------------------------------------------------

    def set_password_sync(
        self, username: str, password: str, *, actor: str, reset_totp: bool = False
    ) -> None:
        """Set (or reset) a user's password, and with ``reset_totp`` remove their TOTP secret
        (a lost phone); their open sessions end."""
        password_hash = _new_password_hash(password)
        now = self._clock.now_ms()

        def op(tx: Tx) -> None:
            user = users.user_by_name(tx, username)
            if user is None:
                raise UnknownUser(f"no user named {username!r}")
            if reset_totp and user.role is Role.ADMIN:
                raise InvalidRequest("operators always need TOTP: create the operator again")
            store.set_password(tx, user.id, password_hash, now)
            if reset_totp:
                store.reset_totp(tx, user.id)
            store.delete_user_sessions(tx, user.id)
            audit.append(
                tx,
                actor=actor,
                action="web.password_set",
                subject=user.username,
                reason="",
                details={"totp_reset": reset_totp},
            )

        self._uow.write_sync(op)

    def create_operator_sync(self, name: str, password: str, *, actor: str) -> OperatorCreated:
        """A console operator (role admin) with a password and a TOTP secret, whose
        provisioning URI is in the answer only."""
        validate_username(name)
        password_hash = _new_password_hash(password)
        secret = totp.new_secret()
        now = self._clock.now_ms()

        def op(tx: Tx) -> OperatorCreated:
            if users.user_by_name(tx, name) is not None:
                raise InvalidRequest(f"user {name!r} already exists")
            try:
                user = users.insert_user(tx, name, Role.ADMIN)
            except IntegrityError as exc:
                raise InvalidRequest(f"user {name!r} already exists") from exc
            store.set_password(tx, user.id, password_hash, now)
            store.set_totp_pending(tx, user.id, self._seal(secret, user.id))
            store.enable_totp(tx, user.id, self._seal(secret, user.id), step=0)
            audit.append(tx, actor=actor, action="web.operator_created", subject=name, reason="")
            return OperatorCreated(name, totp.provisioning_uri(secret, f"{name} (console)"))

        return self._uow.write_sync(op)

    # --- sessions ----------------------------------------------------------------------------

    async def sign_in(self, realm: Realm, username: str, password: str, code: str) -> SignedIn:
        """A new session for the account, or ``AuthError`` (the same message for every wrong
        part), ``TotpRequired`` (the code is missing), ``RateLimited`` (the account waits)."""
        now = self._clock.now_ms()
        found = await self._uow.read(lambda tx: _login_of(tx, username))
        user, login = found if found is not None else (None, None)
        if user is None or login is None or not realm.admits(user.role):
            # No such account here: as slow as a real check, and nothing counted (a wallet
            # sign-in attempt must not lock an operator out of the console).
            await self._verify(None, password)
            raise AuthError(SIGN_IN_REFUSED)
        await self._claim(user, now)
        matches = await self._verify(login.password_hash, password)
        if not matches or user.status is UserStatus.FROZEN:
            await self._failed(user, now)
            raise AuthError(SIGN_IN_REFUSED)
        secret = self._totp_secret(login)
        if realm is Realm.CONSOLE and secret is None:
            await self._failed(user, now)
            raise AuthError("this operator has no TOTP secret: create it again")
        if secret is not None and not code.strip():
            # Counted: a right password without a code must not reset the count, or codes
            # could be guessed four at a time for ever.
            await self._failed(user, now)
            raise TotpRequired("enter the code from your authenticator app")
        step = None
        if secret is not None:
            step = totp.matching_step(secret, code, now // 1000, after_step=login.totp_last_step)
            if step is None:
                await self._failed(user, now)
                raise AuthError(SIGN_IN_REFUSED)
        rehashed = None
        if needs_rehash(login.password_hash):
            async with self._hashing:
                rehashed = await asyncio.to_thread(hash_password, password)
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        session = store.Session(
            token_hash(token),
            user.id,
            realm.value,
            csrf,
            created_at_ms=now,
            seen_at_ms=now,
            expires_at_ms=now + self._policy.session_max_s * 1000,
        )

        def op(tx: Tx) -> bool:
            if step is not None and not store.use_totp_step(tx, user.id, step):
                return False  # that code was just used
            if not store.attempt_succeeded(tx, user.id, now):
                raise RateLimited(_waiting(now + self._policy.login_lock_s * 1000, now))
            if rehashed is not None:
                store.rehash(tx, user.id, rehashed)
            store.delete_expired_sessions(tx, now - self._policy.session_idle_s * 1000)
            store.insert_session(tx, session)
            if realm is Realm.CONSOLE:  # who acted in the console, from when
                audit.append(
                    tx,
                    actor=f"operator:{user.username}",
                    action="console.sign_in",
                    subject=user.username,
                    reason="",
                )
            return True

        if not await self._uow.write(op):
            await self._failed(user, now)
            raise AuthError(SIGN_IN_REFUSED)
        return SignedIn(token, _web_session(user, session, secret is not None))

    async def _verify(self, stored_hash: str | None, password: str) -> bool:
        async with self._hashing:  # off the event loop, and a few at a time
            return await asyncio.to_thread(verify_password, stored_hash, password)

    async def _claim(self, user: users.User, now: int) -> None:
        """Count this attempt before checking it (``store.claim_attempt``); RateLimited when
        the account waits."""
        max_failures = self._policy.login_failures_max
        if await self._uow.write(lambda tx: store.claim_attempt(tx, user.id, now, max_failures)):
            return
        login = await self._uow.read(lambda tx: store.login(tx, user.id))
        if login is not None and login.locked_until_ms <= now:
            # Not locked, but as many attempts in flight as may fail (a burst, or attempts a
            # crash cut short): that becomes a lock now, so the account never waits for ever.
            await self._failed(user, now)
            login = await self._uow.read(lambda tx: store.login(tx, user.id))
        until = login.locked_until_ms if login is not None else now
        raise RateLimited(_waiting(max(until, now + 60_000), now))

    async def _failed(self, user: users.User, now: int) -> None:
        """The claimed attempt failed: at ``login_failures_max`` the account waits, audited."""
        policy = self._policy

        def op(tx: Tx) -> None:
            # From now, not from when the attempt began (it may have queued for argon2).
            until = max(now, self._clock.now_ms()) + policy.login_lock_s * 1000
            if store.lock_if_due(tx, user.id, policy.login_failures_max, until):
                audit.append(
                    tx,
                    actor="web",
                    action="web.login_locked",
                    subject=user.username,
                    reason=f"{policy.login_failures_max} failed attempts in a row",
                    details={"locked_for_s": policy.login_lock_s},
                )

        await self._uow.write(op)

    async def session(self, realm: Realm, token: str) -> WebSession | None:
        """The live session of ``token`` in ``realm``, or None (unknown, ended, idle too long,
        another realm's, or its user frozen)."""
        if not token or len(token) > 128:
            return None
        now = self._clock.now_ms()
        digest = token_hash(token)
        idle_ms = self._policy.session_idle_s * 1000

        def read(tx: Tx) -> tuple[WebSession, bool] | None:
            s = store.session(tx, digest)
            if s is None or s.realm != realm.value:
                return None
            if s.expires_at_ms <= now or s.seen_at_ms + idle_ms <= now:
                return None
            user = users.user_by_id(tx, s.user_id)
            login = store.login(tx, s.user_id)
            if user is None or login is None or user.status is UserStatus.FROZEN:
                return None
            enabled = login.totp_secret_encrypted is not None
            return _web_session(user, s, enabled), now - s.seen_at_ms >= TOUCH_EVERY_MS

        found = await self._uow.read(read)
        if found is None:
            return None
        live, stale = found
        if stale:
            await self._uow.write(lambda tx: store.touch_session(tx, digest, now))
        return live

    async def sign_out(self, token: str) -> None:
        digest = token_hash(token)
        await self._uow.write(lambda tx: store.delete_session(tx, digest))

    # --- TOTP --------------------------------------------------------------------------------

    async def start_totp(self, session: WebSession) -> TotpEnrolment:
        """A new secret to enrol, pending until ``confirm_totp`` sees one of its codes."""
        secret = totp.new_secret()
        sealed = self._seal(secret, session.user_id)

        def op(tx: Tx) -> None:
            login = store.login(tx, session.user_id)
            if login is None or login.totp_secret_encrypted is not None:
                raise InvalidRequest("two-factor sign-in is already on")
            store.set_totp_pending(tx, session.user_id, sealed)

        await self._uow.write(op)
        return TotpEnrolment(secret, totp.provisioning_uri(secret, session.username))

    async def pending_totp(self, session: WebSession) -> TotpEnrolment | None:
        login = await self._uow.read(lambda tx: store.login(tx, session.user_id))
        if login is None or login.totp_pending_encrypted is None:
            return None
        secret = self._open(login.totp_pending_encrypted, session.user_id)
        return TotpEnrolment(secret, totp.provisioning_uri(secret, session.username))

    async def confirm_totp(self, session: WebSession, password: str, code: str) -> None:
        """Turn TOTP on with the pending secret, given the account's password (a session
        alone cannot put an attacker's phone on it) and one of the secret's current codes.
        Wrong answers count toward the lock like failed sign-ins."""
        now = self._clock.now_ms()
        before = await self._uow.read(lambda tx: store.login(tx, session.user_id))
        if before is None or before.totp_pending_encrypted is None:
            raise InvalidRequest("start the set-up again: no code is being set up")
        user, login = await self._attempted(session, now)
        if login.totp_pending_encrypted is None:
            await self._failed(user, now)
            raise InvalidRequest("start the set-up again: no code is being set up")
        if not await self._verify(login.password_hash, password):
            await self._failed(user, now)
            raise AuthError("that is not your password")
        secret = self._open(login.totp_pending_encrypted, session.user_id)
        step = totp.matching_step(secret, code, now // 1000, after_step=0)
        if step is None:
            await self._failed(user, now)
            raise TotpRequired("that code is not the app's current one; try the next")
        pending = login.totp_pending_encrypted

        def op(tx: Tx) -> bool:
            if not store.attempt_succeeded(tx, user.id, now):  # locked meanwhile
                raise RateLimited(_waiting(now + self._policy.login_lock_s * 1000, now))
            if not store.enable_totp(tx, session.user_id, pending, step):
                return False  # a second confirmation (the attempt itself succeeded)
            audit.append(
                tx,
                actor=f"user:{session.user_id}",
                action="web.totp_enabled",
                subject=session.username,
                reason="",
            )
            return True

        if not await self._uow.write(op):
            raise InvalidRequest("two-factor sign-in is already on")

    async def check_code(self, session: WebSession, code: str) -> None:
        """A withdrawal's second factor: the account's current code, each used once; nothing
        is asked of an account without TOTP. Wrong codes count toward the lock like failed
        sign-ins (RateLimited once the account waits), so they cannot be guessed."""
        login = await self._uow.read(lambda tx: store.login(tx, session.user_id))
        secret = None if login is None else self._totp_secret(login)
        if login is None or secret is None:
            return
        if not code.strip():
            raise TotpRequired("enter the code from your authenticator app")
        now = self._clock.now_ms()
        user, login = await self._attempted(session, now)
        step = totp.matching_step(secret, code, now // 1000, after_step=login.totp_last_step)

        def op(tx: Tx) -> bool:
            if step is None or not store.use_totp_step(tx, user.id, step):
                return False
            if not store.attempt_succeeded(tx, user.id, now):  # locked meanwhile: the code
                raise RateLimited(_waiting(now + self._policy.login_lock_s * 1000, now))
            return True

        if not await self._uow.write(op):
            await self._failed(user, now)
            raise TotpRequired("that code is not current (or was used already)")

    async def _attempted(self, session: WebSession, now: int) -> tuple[users.User, store.Login]:
        """The session's account and its credentials, with this attempt claimed."""
        found = await self._uow.read(lambda tx: _login_of(tx, session.username))
        if found is None or found[1] is None:
            raise AuthError("sign in again")
        user, _ = found
        await self._claim(user, now)
        login = await self._uow.read(lambda tx: store.login(tx, user.id))
        if login is None:
            raise AuthError("sign in again")
        return user, login

    def totp_needed(self, amount_msat: int) -> bool:
        return amount_msat > self._policy.withdrawal_totp_above_msat

    # --- secrets -----------------------------------------------------------------------------

    def _seal(self, secret: str, user_id: str) -> bytes:
        return self._key.encrypt(secret.encode(), context=b"totp:" + user_id.encode())

    def _open(self, sealed: bytes, user_id: str) -> str:
        return self._key.decrypt(sealed, context=b"totp:" + user_id.encode()).decode()

    def _totp_secret(self, login: store.Login) -> str | None:
        if login.totp_secret_encrypted is None:
            return None
        return self._open(login.totp_secret_encrypted, login.user_id)


def _new_password_hash(password: str) -> str:
    problem = password_problem(password)
    if problem is not None:
        raise InvalidRequest(problem)
    return hash_password(password)


def _login_of(tx: Tx, username: str) -> tuple[users.User, store.Login | None] | None:
    user = users.user_by_name(tx, username) if 0 < len(username) <= 64 else None
    return None if user is None else (user, store.login(tx, user.id))


def _web_session(user: users.User, s: store.Session, totp_enabled: bool) -> WebSession:
    return WebSession(
        user_id=user.id,
        username=user.username,
        role=user.role,
        realm=Realm(s.realm),
        csrf_token=s.csrf_token,
        totp_enabled=totp_enabled,
        expires_at_ms=s.expires_at_ms,
    )


def _waiting(until_ms: int, now_ms: int) -> str:
    minutes = max(1, -(-(until_ms - now_ms) // 60_000))
    return f"too many failed sign-ins: try again in {minutes} min"
