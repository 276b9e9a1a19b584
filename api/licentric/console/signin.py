"""Signing in to the console by magic link (decisions 46-47 as for the portal, 65-67 for members): the
sign-in form, the link's confirm page (GET and HEAD change nothing; the POST spends the link and starts a
new session for the account chosen), and signing out. Limits, lifetimes and which accounts an address
may enter are SQL's (service.*_console_*)."""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from litestar import Request, Response, get, head, post
from litestar.background_tasks import BackgroundTask
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.middleware.rate_limit import get_remote_address
from litestar.response import Redirect

from licentric.console.site import BASE, SCOPE, ConsoleController, ConsoleSite
from licentric.db import ConsoleDb, WebCalls
from licentric.web.security import digest, new_secret
from licentric.web.site import PAGE_HEADERS, form_of, uuid_or_404

log = logging.getLogger("licentric.console")


@get("/", include_in_schema=False)
async def root() -> Redirect:
    """The first page a founder opens: the console."""
    return Redirect(BASE, status_code=303)


class ConsoleSignInController(ConsoleController):
    path = BASE

    async def _is_signed_in(self, request: Request[Any, Any, State], site: ConsoleSite) -> bool:
        value = request.cookies.get(site.cookies.session_name)
        if not value:
            return False
        try:
            await ConsoleDb(request.app.state.pool).signed_in(digest(value), _nothing)
        except psycopg.Error as exc:
            if exc.sqlstate == "LAUTH":
                return False
            raise
        return True

    @get("/login")
    async def login_page(
        self, request: Request[Any, Any, State], site: NamedDependency[ConsoleSite]
    ) -> Response[Any]:
        """The sign-in form (a signed-in visitor goes to the overview)."""
        keys = site.require_keys()
        if await self._is_signed_in(request, site):
            return site.see_other(BASE)
        login_value, cookies = site.login_cookie(request)
        signed_out = request.query_params.get("signed_out") == "1"
        return site.page(
            "login.html",
            cookies=cookies,
            csrf=keys.login_csrf(SCOPE, login_value),
            notice="You have signed out." if signed_out else None,
            email="",
        )

    @post("/login", status_code=202)
    async def request_link(
        self, request: Request[Any, Any, State], site: NamedDependency[ConsoleSite]
    ) -> Response[Any]:
        """Ask for a sign-in link. The answer is the same page and status whatever happened: the address
        unknown, rate limited or sent (the mail leaves from a background task)."""
        form = await form_of(request)
        site.check_login_csrf(request, SCOPE, form)
        keys = site.require_keys()
        token = new_secret()
        email = form.get("email", "").strip()
        args = {
            "email": email,
            "token_hash": digest(token),
            "ip_hash": keys.address_hash(get_remote_address(request)),
        }
        try:
            answer = await ConsoleDb(request.app.state.pool).visitor(
                lambda calls: calls.one("service.request_console_login", args)
            )
        except psycopg.Error as exc:
            if exc.sqlstate != "LINVL":
                raise
            # A malformed address: says nothing about which addresses exist.
            return site.page(
                "login.html",
                status=422,
                csrf=keys.login_csrf(SCOPE, request.cookies[site.cookies.login_name]),
                error="Enter your email address, like name@example.com.",
                email=email[:320],
            )
        log.info("console sign-in link requested", extra={"fields": {"outcome": answer["reason"]}})
        background = BackgroundTask(site.send_login, answer, token) if answer["send"] else None
        return site.page("sent.html", status=202, background=background)

    @get("/login/confirm")
    async def confirm_page(
        self, request: Request[Any, Any, State], site: NamedDependency[ConsoleSite]
    ) -> Response[Any]:
        """What the emailed link opens: who it signs in (masked), the accounts to choose from and a
        button. Changes nothing, so a mail scanner following the link cannot use it up."""
        keys = site.require_keys()
        token = request.query_params.get("token", "")
        peek = await ConsoleDb(request.app.state.pool).visitor(
            lambda calls: calls.one("service.peek_console_login", {"token_hash": digest(token)})
        )
        login_value, cookies = site.login_cookie(request)
        if not peek["usable"]:
            return site.page("link_unusable.html", status=410, cookies=cookies)
        return site.page(
            "confirm.html",
            cookies=cookies,
            csrf=keys.login_csrf(SCOPE, login_value),
            masked_email=peek["masked_email"],
            expires_at=peek["expires_at"],
            accounts=peek["accounts"] or [],
            token=token,
        )

    @head("/login/confirm")
    async def confirm_head(self) -> Response[None]:
        """A scanner's HEAD of the link: headers only, nothing looked up, nothing changed."""
        return Response(None, status_code=200, media_type="text/html", headers=PAGE_HEADERS)

    @post("/login/confirm")
    async def confirm(
        self, request: Request[Any, Any, State], site: NamedDependency[ConsoleSite]
    ) -> Response[Any]:
        """Spend the link and start a NEW session for the chosen account: a fresh random id, of which SQL
        keeps only the hash; the browser's previous session (if any) is ended in the same transaction."""
        form = await form_of(request)
        site.check_login_csrf(request, SCOPE, form)
        session_id = new_secret()
        previous = request.cookies.get(site.cookies.session_name)
        args = {
            "token_hash": digest(form.get("token", "")),
            "session_hash": digest(session_id),
            "account_id": uuid_or_404(form.get("account_id"), missing_ok=True),
            "replaces_session_hash": digest(previous) if previous else None,
        }
        try:
            await ConsoleDb(request.app.state.pool).visitor(
                lambda calls: calls.one("service.confirm_console_login", args)
            )
        except psycopg.Error as exc:
            if exc.sqlstate != "LAUTH":
                raise
            # A second click of the button, once the first has signed this browser in.
            if await self._is_signed_in(request, site):
                return site.see_other(BASE)
            return site.page("link_unusable.html", status=410)
        return site.see_other(BASE, [site.cookies.session(session_id)])

    # Invitations: the mailed link opens a page that changes nothing (GET, HEAD); its button (a POST with
    # the page's pre-session cookie and CSRF token) accepts and signs the new member in.

    @get("/invitations/accept")
    async def invitation_page(
        self, request: Request[Any, Any, State], site: NamedDependency[ConsoleSite]
    ) -> Response[Any]:
        keys = site.require_keys()
        token = request.query_params.get("token", "")
        peek = await ConsoleDb(request.app.state.pool).visitor(
            lambda calls: calls.one("service.peek_member_invitation", {"token": token})
        )
        login_value, cookies = site.login_cookie(request)
        if not peek["usable"]:
            return site.page("link_unusable.html", status=410, cookies=cookies, invitation=True)
        return site.page(
            "invitation.html",
            cookies=cookies,
            csrf=keys.login_csrf(SCOPE, login_value),
            peek=peek,
            token=token,
        )

    @head("/invitations/accept")
    async def invitation_head(self) -> Response[None]:
        return Response(None, status_code=200, media_type="text/html", headers=PAGE_HEADERS)

    @post("/invitations/accept")
    async def accept_invitation(
        self, request: Request[Any, Any, State], site: NamedDependency[ConsoleSite]
    ) -> Response[Any]:
        """Accept: the address becomes a member and this browser gets a NEW session for it."""
        form = await form_of(request)
        site.check_login_csrf(request, SCOPE, form)
        session_id = new_secret()
        previous = request.cookies.get(site.cookies.session_name)
        args = {
            "token": form.get("token", ""),
            "session_hash": digest(session_id),
            "name": form.get("name", "").strip() or None,
            "replaces_session_hash": digest(previous) if previous else None,
        }
        try:
            await ConsoleDb(request.app.state.pool).visitor(
                lambda calls: calls.one("service.accept_member_invitation", args)
            )
        except psycopg.Error as exc:
            if exc.sqlstate != "LAUTH":
                raise
            return site.page("link_unusable.html", status=410, invitation=True)
        return site.see_other(f"{BASE}?done=joined", [site.cookies.session(session_id)])

    @post("/logout")
    async def logout(
        self, request: Request[Any, Any, State], site: NamedDependency[ConsoleSite]
    ) -> Response[Any]:
        """Sign out: the session is deleted in SQL and the cookie in the browser."""
        session_hash = site.check_session_csrf(request, SCOPE, await form_of(request))
        await ConsoleDb(request.app.state.pool).visitor(
            lambda calls: calls.one("service.logout_console", {"session_hash": session_hash})
        )
        return site.see_other(f"{BASE}/login?signed_out=1", [site.cookies.expired(site.cookies.session_name)])


async def _nothing(calls: WebCalls, member: dict[str, Any]) -> dict[str, Any]:
    return {}
