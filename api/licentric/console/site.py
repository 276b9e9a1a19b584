"""The tenant console's site (issue 13, docs/console.md): a member signs in by magic link and every
page is a few api.* calls made after service.authenticate_console in the same transaction, which sets
the member's context (kind 'member'), so roles are enforced by SQL alone (a viewer's POST is LDNID, 403).
What lives here is the web's part: cookies, CSRF, rendering, mail, and mapping forms to calls."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import psycopg
from litestar import Controller, Request, Response
from litestar.datastructures import State
from litestar.di import Provide

from licentric.db import Call, ConsoleDb, WebCalls
from licentric.rate_limit import limit_client
from licentric.settings import Settings
from licentric.web.render import Theme
from licentric.web.site import SignInRequired, Site, form_of, static_files, web_error

TEMPLATES = Path(__file__).parent / "templates"
BASE = "/console"
# What the console's CSRF tokens are bound to besides the session: no portal slug contains a "/".
SCOPE = "/console"

# What a finished action says on the page it returns to (?done=…): fixed texts, so a link cannot make
# the console say anything else.
DONE = {
    "policy_created": "The policy was created.",
    "policy_archived": "The policy was archived.",
    "entitlement_created": "The entitlement was created.",
    "matrix_saved": "The plans' entitlements were saved.",
    "connected": "Stripe is connected for this mode.",
    "disconnected": "Stripe was disconnected for this mode.",
    "mapped": "The price now makes licenses of that policy.",
    "unmapped": "The mapping was removed.",
    "reprocessed": "The event was processed again.",
    "suspended": "The license was suspended.",
    "reinstated": "The license was reinstated.",
    "renewed": "The license was renewed.",
    "canceled": "The license was canceled.",
    "plan_changed": "The license's plan was changed.",
    "granted": "The entitlement was granted to this license.",
    "revoked": "The entitlement was revoked from this license.",
    "unset": "The license follows its plan for that entitlement again.",
    "deactivated": "The machine was deactivated.",
    "key_revoked": "The key was revoked.",
    "endpoint_deleted": "The endpoint was deleted.",
    "pinged": "A ping is on its way to the endpoint.",
    "replayed": "Those deliveries will be sent again.",
    "enabled": "The endpoint was enabled.",
    "disabled": "The endpoint was disabled; its pending deliveries failed.",
    "retried": "The delivery will be sent again now.",
    "account_renamed": "The account's name was saved.",
    "portal_saved": "The portal's settings were saved.",
    "invited": "The invitation is on its way.",
    "invitation_revoked": "The invitation was revoked: its link no longer works.",
    "role_changed": "The member's role was changed.",
    "member_removed": "The member was removed.",
    "ownership_transferred": "The member is now an owner.",
    "session_revoked": "The session was ended.",
    "joined": "Welcome: you are now a member of this account.",
    "meter_created": "The meter was created.",
    "budget_created": "The budget was created.",
    "budget_saved": "The budget was saved.",
}

Work = Callable[[WebCalls, dict[str, Any]], Awaitable[dict[str, Any]]]


class ConsoleSite(Site):
    """The console's site: its pages know the signed-in member (session) and whether it may change
    anything (a viewer sees no mutating button; SQL refuses its POSTs anyway)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, "console", TEMPLATES)

    def url(self, path: str = "") -> str:
        """An absolute console URL, always from LICENTRIC_PUBLIC_URL, never from the request's Host."""
        return f"{self.settings.base_url}{BASE}{path}"

    def defaults(self, context: dict[str, Any]) -> dict[str, Any]:
        session = context.get("session")
        return {
            "base": BASE,
            "product": "Licentric",
            "face": None,
            "writer": bool(session) and session["role"] != "viewer",
        }

    async def signed_in(
        self, request: Request[Any, Any, State], session_hash: bytes, work: Work
    ) -> dict[str, Any]:
        """work(calls, member) after service.authenticate_console, in one transaction; the page's context
        with the member as its session and the session's CSRF token."""

        async def run(calls: WebCalls, member: dict[str, Any]) -> dict[str, Any]:
            return {"session": member, **await work(calls, member)}

        pool = request.app.state.pool
        return await self.signed_in_context(SCOPE, session_hash, ConsoleDb(pool).signed_in(session_hash, run))

    def caller(self, request: Request[Any, Any, State], session_hash: bytes) -> Call:
        """One api function per signed-in transaction, for the HTTP API's steps that call Stripe or
        encrypt between their database calls (never inside a transaction)."""

        async def call(function: str, args: Mapping[str, Any]) -> list[dict[str, Any]]:
            try:
                return await ConsoleDb(request.app.state.pool).signed_in(
                    session_hash, lambda calls, member: calls.rows(function, args)
                )
            except psycopg.Error as exc:
                if exc.sqlstate == "LAUTH":
                    raise SignInRequired from exc
                raise

        return call

    async def show(
        self, request: Request[Any, Any, State], template: str, section: str, work: Work
    ) -> Response[str]:
        """A signed-in page: work's context rendered, with the notice of a finished action (?done=…)."""
        context = await self.signed_in(request, self.session_hash(request), work)
        notice = DONE.get(request.query_params.get("done", ""))
        return self.page(template, section=section, notice=notice, **context)

    async def act(
        self,
        request: Request[Any, Any, State],
        work: Callable[[WebCalls, dict[str, str]], Awaitable[Any]],
        then: str | Callable[[Any], str],
    ) -> Response[Any]:
        """A signed-in form: its CSRF token checked, work(calls, form) in one transaction, then a redirect
        to then (or then(work's answer)). A refusal is an error page with SQL's status and message."""
        form = await form_of(request)
        session_hash = self.check_session_csrf(request, SCOPE, form)
        answer: dict[str, Any] = {}

        async def run(calls: WebCalls, member: dict[str, Any]) -> dict[str, Any]:
            answer["value"] = await work(calls, form)
            return {}

        await self.signed_in(request, session_hash, run)
        return self.see_other(then if isinstance(then, str) else then(answer["value"]))

    async def answer(
        self,
        request: Request[Any, Any, State],
        template: str,
        section: str,
        work: Callable[[WebCalls, dict[str, str]], Awaitable[dict[str, Any]]],
    ) -> Response[str]:
        """A signed-in form answered by a page rather than a redirect: what is shown once (a new API key)
        must not pass through a URL or a page that can be loaded again."""
        form = await form_of(request)
        session_hash = self.check_session_csrf(request, SCOPE, form)
        context = await self.signed_in(request, session_hash, lambda calls, member: work(calls, form))
        return self.page(template, section=section, **context)

    async def send_login(self, answer: dict[str, Any], token: str) -> None:
        await self._mail(
            "login",
            answer["email"],
            answer["name"],
            "Your sign-in link for the Licentric console",
            "console sign-in",
            name=answer["name"],
            link=self.url(f"/login/confirm?token={token}"),
            expires_at=answer["expires_at"],
            accounts=answer["accounts"] or [],
        )

    async def send_invitation(self, invitation: dict[str, Any], account_name: str) -> None:
        await self._mail(
            "invitation",
            invitation["email"],
            None,
            f"You are invited to {account_name} on Licentric",
            "console invitation",
            account_name=account_name,
            role=invitation["role"],
            link=self.url(f"/invitations/accept?token={invitation['token']}"),
            expires_at=invitation["expires_at"],
        )

    async def _mail(
        self, template: str, to: str, to_name: str | None, subject: str, what: str, **context: Any
    ) -> None:
        """A console mail: Licentric's own look, from Licentric."""
        await self.send(
            template,
            to=to,
            to_name=to_name,
            subject=subject,
            sender_name="Licentric",
            what=what,
            face={"account_name": "Licentric", "branded": True, "logo_url": None},
            product="Licentric",
            theme=Theme.of(None),
            **context,
        )


def provide_site(state: State) -> ConsoleSite:
    return state.console


def console_exception_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Every console error is an HTML page with the right status (or, signed out, the sign-in page)."""
    site: ConsoleSite = request.app.state.console
    if isinstance(exc, SignInRequired):
        return site.see_other(f"{BASE}/login", [site.cookies.expired(site.cookies.session_name)])
    return site.error_page(web_error(exc))


class ConsoleController(Controller):
    """What every console controller shares: the site, HTML error pages, the per-client limit in SQL
    (decision 59), and no place in the API's schema."""

    include_in_schema = False
    dependencies = {"site": Provide(provide_site, sync_to_thread=False)}  # noqa: RUF012
    exception_handlers = {Exception: console_exception_handler}  # noqa: RUF012
    before_request = limit_client


console_static = static_files(f"{BASE}/static", "console_static")
