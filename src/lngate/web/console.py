"""The operator console, ``/console/`` on the admin listener only: the review queue, the halt,
reconciliation, the treasury, users and the audit log.

Each action is the audited use case the admin API calls, with ``operator:<name>`` as the
actor. Operators sign in with a password and always a TOTP code (``Realm.CONSOLE``); the
console's cookie is its own, so a wallet session never opens it.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from lngate.domain.errors import InvalidAmount, InvalidRequest, LngateError, NotFound
from lngate.services.admin import Administration
from lngate.services.channels import Channels
from lngate.services.clock import SYSTEM_CLOCK
from lngate.services.ports import Clock
from lngate.services.solvency import Solvency
from lngate.services.treasury_status import TreasuryStatus
from lngate.services.web_logins import Realm, WebLogins, WebSession
from lngate.services.withdrawal_review import WithdrawalReview
from lngate.web.forms import Form, whole_number
from lngate.web.pages import Pages, install
from lngate.web.realm_pages import RealmPages, StatusOf
from lngate.web.sessions import Gate

PREFIX = "/console"
REASON_MAX = 1_000  # as the admin API's
AUDIT_PAGE = 50


@dataclass(frozen=True, slots=True)
class ConsoleCases:
    """The use cases the console drives: the admin API's, over the treasury's credential."""

    logins: WebLogins
    review: WithdrawalReview
    admin: Administration
    solvency: Solvency
    treasury: TreasuryStatus
    channels: Channels


def mount_console(
    app: FastAPI,
    cases: ConsoleCases,
    *,
    status_of: StatusOf,
    secure_cookies: bool | None,
    session_max_s: int,
    clock: Clock = SYSTEM_CLOCK,
) -> None:
    """``secure_cookies`` None: Secure when the request came over https."""
    pages = install(app, PREFIX + "/")
    gate = Gate(
        cases.logins, Realm.CONSOLE, "lngate_console", PREFIX + "/", secure_cookies, session_max_s
    )
    app.include_router(ConsolePages(pages, gate, cases, status_of, clock).router())


def reason_of(form: Form) -> str:
    reason = form.get("reason")
    if not reason:
        raise InvalidRequest("give a reason: it goes into the audit log")
    if len(reason) > REASON_MAX:
        raise InvalidRequest(f"the reason is longer than {REASON_MAX} characters")
    return reason


def shortfall_of(form: Form) -> int | None:
    text = form.get("acknowledge_shortfall_msat").replace(",", "").replace("_", "")
    if not text:
        return None
    amount = whole_number(text)
    if amount is None:
        raise InvalidAmount("the acknowledged shortfall is a whole number of msat")
    return amount


class ConsolePages(RealmPages):
    def __init__(
        self, pages: Pages, gate: Gate, cases: ConsoleCases, status_of: StatusOf, clock: Clock
    ) -> None:
        super().__init__(pages, gate, status_of)
        self.cases = cases
        self.clock = clock

    @staticmethod
    def actor(session: WebSession) -> str:
        return f"operator:{session.username}"

    def done(self, path: str, notice: str) -> RedirectResponse:
        """Back to a page after an action (POST, redirect, GET: a reload repeats nothing)."""
        return RedirectResponse(f"{PREFIX}{path}?done={_notice_key(notice)}", status_code=303)

    def router(self) -> APIRouter:
        r = self.base_router(PREFIX)

        @r.get("/")
        async def overview(request: Request, done: str = "") -> Response:
            session = await self.signed_in(request)
            if session is None:
                return self.gate.to_login(request)
            return await self.overview(session, notice=_NOTICES.get(done))

        @r.post("/halt")
        async def halt(request: Request) -> Response:
            session, form = await self.posted(request)
            if session is None:
                return self.gate.to_login(request)
            try:
                await self.cases.admin.halt(reason=reason_of(form), actor=self.actor(session))
            except LngateError as exc:
                return await self.overview(session, refusal=exc)
            return self.done("/", "halted")

        @r.post("/resume")
        async def resume(request: Request) -> Response:
            session, form = await self.posted(request)
            if session is None:
                return self.gate.to_login(request)
            try:
                await self.cases.admin.resume(
                    reason=reason_of(form),
                    actor=self.actor(session),
                    acknowledge_shortfall_msat=shortfall_of(form),
                )
            except LngateError as exc:
                return await self.overview(session, refusal=exc)
            return self.done("/", "resumed")

        @r.get("/reviews")
        async def reviews(request: Request, done: str = "") -> Response:
            session = await self.signed_in(request)
            if session is None:
                return self.gate.to_login(request)
            return await self.reviews(session, notice=_NOTICES.get(done))

        @r.post("/reviews/{withdrawal_id}/{decision}")
        async def decide(request: Request, withdrawal_id: str, decision: str) -> Response:
            session, form = await self.posted(request)
            if session is None:
                return self.gate.to_login(request)
            if decision not in ("approve", "reject"):
                return self.not_found(session)
            review = self.cases.review
            decide_one = review.approve if decision == "approve" else review.reject
            try:
                changed = await decide_one(withdrawal_id, self.actor(session), reason_of(form))
                if changed is None:
                    raise NotFound("no withdrawal with that id is waiting for review")
            except LngateError as exc:
                return await self.reviews(session, refusal=exc)
            return self.done("/reviews", "approved" if decision == "approve" else "rejected")

        @r.get("/reconciliation")
        async def reconciliation(request: Request, done: str = "") -> Response:
            session = await self.signed_in(request)
            if session is None:
                return self.gate.to_login(request)
            return await self.reconciliation(session, notice=_NOTICES.get(done))

        @r.post("/reconciliation")
        async def reconcile(request: Request) -> Response:
            session, _form = await self.posted(request)
            if session is None:
                return self.gate.to_login(request)
            try:
                await self.cases.solvency.reconcile(actor=self.actor(session))
            except LngateError as exc:
                return await self.reconciliation(session, refusal=exc)
            return self.done("/reconciliation", "reconciled")

        @r.get("/treasury")
        async def treasury(request: Request) -> Response:
            session = await self.signed_in(request)
            if session is None:
                return self.gate.to_login(request)
            try:
                report = await self.cases.treasury.report()
                channels = await self.cases.channels.list()
            except LngateError as exc:
                return self.answer(
                    "console_treasury.html", session, exc, nav="treasury", report=None, channels=[]
                )
            return self.render(
                "console_treasury.html", session, nav="treasury", report=report, channels=channels
            )

        @r.get("/users")
        async def users(request: Request, q: str = "") -> Response:
            session = await self.signed_in(request)
            if session is None:
                return self.gate.to_login(request)
            found = await self.cases.admin.search_users(q) if q.strip() else []
            return self.render("console_users.html", session, nav="users", q=q, found=found)

        @r.get("/users/{username}")
        async def user(request: Request, username: str, done: str = "") -> Response:
            session = await self.signed_in(request)
            if session is None:
                return self.gate.to_login(request)
            return await self.user(session, username, notice=_NOTICES.get(done))

        @r.post("/users/{username}/{change}")
        async def freeze(request: Request, username: str, change: str) -> Response:
            session, form = await self.posted(request)
            if session is None:
                return self.gate.to_login(request)
            if change not in ("freeze", "unfreeze"):
                return self.not_found(session)
            admin = self.cases.admin
            apply = admin.freeze if change == "freeze" else admin.unfreeze
            try:
                await apply(username, reason=reason_of(form), actor=self.actor(session))
            except LngateError as exc:
                return await self.user(session, username, refusal=exc)
            return self.done(f"/users/{username}", "frozen" if change == "freeze" else "unfrozen")

        @r.get("/audit")
        async def audit(request: Request, after: str = "") -> Response:
            session = await self.signed_in(request)
            if session is None:
                return self.gate.to_login(request)
            start = whole_number(after) or 0
            page = await self.cases.admin.audit_page(after=start, limit=AUDIT_PAGE)
            return self.render(
                "console_audit.html", session, nav="audit", page=page, after=start, check=None
            )

        @r.post("/audit/verify")
        async def verify(request: Request) -> Response:
            session, _form = await self.posted(request)
            if session is None:
                return self.gate.to_login(request)
            check = await self.cases.admin.verify_audit()
            page = await self.cases.admin.audit_page(after=0, limit=AUDIT_PAGE)
            return self.render(
                "console_audit.html", session, nav="audit", page=page, after=0, check=check
            )

        @r.get("/{anything:path}")
        async def unknown(request: Request, anything: str) -> Response:
            return self.not_found(await self.signed_in(request))

        return r

    # --- pages shown after an action too ------------------------------------------------------

    async def overview(
        self,
        session: WebSession,
        *,
        refusal: LngateError | None = None,
        notice: str | None = None,
    ) -> HTMLResponse:
        status = await self.cases.admin.status()
        reports = await self.cases.admin.reconciliation_reports(1)
        queue = await self.cases.review.queue()  # a count: no names needed
        return self.answer(
            "console_overview.html",
            session,
            refusal,
            nav="overview",
            notice=notice,
            status=status,
            latest=reports[0] if reports else None,
            waiting=len(queue),
        )

    async def reviews(
        self,
        session: WebSession,
        *,
        refusal: LngateError | None = None,
        notice: str | None = None,
    ) -> HTMLResponse:
        return self.answer(
            "console_reviews.html",
            session,
            refusal,
            nav="reviews",
            notice=notice,
            queue=await self.cases.review.review_items(),
        )

    async def reconciliation(
        self,
        session: WebSession,
        *,
        refusal: LngateError | None = None,
        notice: str | None = None,
    ) -> HTMLResponse:
        reports = await self.cases.admin.reconciliation_reports(20)
        return self.answer(
            "console_reconciliation.html",
            session,
            refusal,
            nav="reconciliation",
            notice=notice,
            latest=reports[0] if reports else None,
            reports=reports,
        )

    async def user(
        self,
        session: WebSession,
        username: str,
        *,
        refusal: LngateError | None = None,
        notice: str | None = None,
    ) -> HTMLResponse:
        try:
            found = await self.cases.admin.user(username)
        except NotFound:
            return self.not_found(session)
        return self.answer(
            "console_user.html",
            session,
            refusal,
            nav="users",
            notice=notice,
            user=found,
        )

    def not_found(self, session: WebSession | None) -> HTMLResponse:
        return self.render("console_message.html", session, status_code=404, title="Not found")

    def refused_page(self, exc: LngateError) -> Response:
        return self.render(
            "console_message.html",
            None,
            status_code=self.status_of(exc),
            error=exc.message,
            title="That did not work",
        )


# What an action's redirect may announce: a fixed list, so a link cannot make the console say
# anything else.
_NOTICES = {
    "halted": "Withdrawals are halted.",
    "resumed": "Withdrawals are running again.",
    "approved": "Approved: the withdrawal is on its way.",
    "rejected": "Rejected: the hold is released to the user.",
    "reconciled": "Reconciliation ran: its report is below.",
    "frozen": "The account is frozen.",
    "unfrozen": "The account is unfrozen.",
}


def _notice_key(key: str) -> str:
    if key not in _NOTICES:
        raise KeyError(key)  # a bug in this module, not a user's input
    return key
