"""The customer portal's pages, /portal/{slug}/… (DESIGN §8, docs/portal.md).

Each handler maps a form or a page to api.*portal* calls: who the visitor is, what they may see and do,
every limit and timeout is decided in SQL (functions/85_portal.sql). What lives here is the web's own
part: cookies, CSRF, the keyed client address, rendering, and sending mail after the answer has left.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
from litestar import Controller, Request, Response, get, head, post
from litestar.background_tasks import BackgroundTask
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.middleware.rate_limit import get_remote_address
from litestar.params import FromPath
from litestar.response import Redirect

from licentric.crypto import DecryptionError, SecretBox
from licentric.db import PortalDb, WebCalls
from licentric.errors import ApiError
from licentric.rate_limit import limit_client
from licentric.settings import Settings
from licentric.stripe_api import StripeApi
from licentric.web.render import Theme, usage_chart
from licentric.web.security import digest, new_secret
from licentric.web.site import (
    PAGE_HEADERS,
    PAGE_ROWS,
    SignInRequired,
    Site,
    WebError,
    form_of,
    page_cut,
    static_files,
    uuid_or_404,
    web_error,
)

log = logging.getLogger("licentric.portal")

TEMPLATES = Path(__file__).parent / "templates"

# What a finished action says on the page it returns to (?done=…): fixed texts, so a link cannot make
# the portal say anything else.
DONE = {
    "deactivated": "The machine was deactivated.",
    "transferred": "The machine moved to the other license.",
    "invited": "They have a seat now, and a sign-in link is on its way to them.",
    "removed": "The member was removed from the license.",
}


class PortalSite(Site):
    """The portal's site: its pages are a portal's face (the slug's account and branding), its CSRF
    tokens are bound to the slug."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, "portal", TEMPLATES)

    def url(self, slug: str, path: str = "") -> str:
        """An absolute portal URL, always from LICENTRIC_PUBLIC_URL, never from the request's Host."""
        return f"{self.settings.base_url}/portal/{slug}{path}"

    def defaults(self, context: dict[str, Any]) -> dict[str, Any]:
        face = context.get("face")
        slug = face["slug"] if face else None
        return {
            "face": face,
            "slug": slug,
            "product": (face.get("product_name") or face.get("account_name")) if face else "Licentric",
            "license": context.get("license"),
            "base": f"/portal/{slug}" if slug else None,
        }

    async def signed_in(
        self,
        pool: Any,
        slug: str,
        session_hash: bytes,
        work: Callable[[WebCalls, dict[str, Any], dict[str, Any]], Awaitable[dict[str, Any]]],
    ) -> dict[str, Any]:
        """work(calls, session, face) after service.authenticate_portal and service.resolve_portal, in one
        transaction; the page's context with its session, face and CSRF token. LAUTH is SignInRequired;
        other database errors become error pages with the portal's face."""
        seen: dict[str, Any] = {}

        async def run(calls: WebCalls, session: dict[str, Any]) -> dict[str, Any]:
            face = await calls.one("service.resolve_portal", {"slug": slug})
            seen["face"] = face
            return {"session": session, "face": face, **await work(calls, session, face)}

        return await self.signed_in_context(
            slug, session_hash, PortalDb(pool, slug).signed_in(session_hash, run), lambda: seen.get("face")
        )

    async def is_signed_in(self, pool: Any, slug: str, session_hash: bytes) -> bool:
        try:
            await PortalDb(pool, slug).signed_in(session_hash, lambda calls, session: _nothing())
        except psycopg.Error as exc:
            if exc.sqlstate == "LAUTH":
                return False
            raise
        return True

    # Mail, sent by background tasks after the page has answered.

    async def _mail(
        self, template: str, face: dict[str, Any], to: str, to_name: str | None, subject: str, **context: Any
    ) -> None:
        product = face.get("product_name") or face.get("account_name") or "Licentric"
        await self.send(
            template,
            to=to,
            to_name=to_name,
            subject=subject.format(product=product),
            sender_name=product,
            what="sign-in" if template == "login" else "invitation",
            face=face,
            product=product,
            theme=Theme.of(face),
            **context,
        )

    def link(self, face: dict[str, Any], token: str) -> str:
        return self.url(face["slug"], f"/login/confirm?token={token}")

    async def send_login(self, answer: dict[str, Any], token: str) -> None:
        face = answer["portal"]
        await self._mail(
            "login",
            face,
            answer["email"],
            answer["name"],
            "Your sign-in link for {product}",
            name=answer["name"],
            link=self.link(face, token),
            expires_at=answer["expires_at"],
            login_url=self.url(face["slug"], "/login"),
        )

    async def send_invite(
        self, answer: dict[str, Any], token: str, inviter: dict[str, Any], license_: dict[str, Any]
    ) -> None:
        face = answer["portal"]
        await self._mail(
            "invite",
            face,
            answer["email"],
            answer["name"],
            "You have a seat on {product}",
            name=answer["name"],
            inviter=inviter["name"] or inviter["email"],
            plan=license_["policy_name"],
            link=self.link(face, token),
            expires_at=answer["expires_at"],
            login_url=self.url(face["slug"], "/login"),
        )


async def _nothing() -> dict[str, Any]:
    return {}


def provide_site(state: State) -> PortalSite:
    return state.portal


def portal_exception_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Every portal error is an HTML page with the right status (or, signed out, the sign-in page)."""
    site: PortalSite = request.app.state.portal
    slug = str(request.path_params.get("slug", "")).lower()
    if isinstance(exc, SignInRequired):
        return site.see_other(f"/portal/{slug}/login", [site.cookies.expired(site.cookies.session_name)])
    return site.error_page(web_error(exc))


PORTAL_DEPENDENCIES = {"site": Provide(provide_site, sync_to_thread=False)}
PORTAL_EXCEPTION_HANDLERS = {Exception: portal_exception_handler}


class PortalController(Controller):
    path = "/portal/{slug:str}"
    include_in_schema = False
    dependencies = PORTAL_DEPENDENCIES
    exception_handlers = PORTAL_EXCEPTION_HANDLERS
    before_request = limit_client  # per client address, in SQL (decision 59)

    # Signed out: sign-in form, the link's confirm page, the confirm.

    @get("/login")
    async def login_page(
        self, request: Request[Any, Any, State], site: NamedDependency[PortalSite], slug: FromPath[str]
    ) -> Response[Any]:
        """The sign-in form (a signed-in visitor goes to the overview)."""
        keys = site.require_keys()
        slug = slug.lower()
        pool = request.app.state.pool
        value = request.cookies.get(site.cookies.session_name)
        if value and await site.is_signed_in(pool, slug, digest(value)):
            return site.see_other(f"/portal/{slug}")
        face = await PortalDb(pool, slug).visitor(
            lambda calls: calls.one("service.resolve_portal", {"slug": slug})
        )
        login_value, cookies = site.login_cookie(request)
        signed_out = request.query_params.get("signed_out") == "1"
        return site.page(
            "login.html",
            face=face,
            cookies=cookies,
            csrf=keys.login_csrf(slug, login_value),
            notice="You have signed out." if signed_out else None,
            email="",
        )

    @post("/login", status_code=202)
    async def request_link(
        self, request: Request[Any, Any, State], site: NamedDependency[PortalSite], slug: FromPath[str]
    ) -> Response[Any]:
        """Ask for a sign-in link. The answer is the same page and status whatever happened: the
        address unknown, rate limited or sent (the mail leaves from a background task)."""
        slug = slug.lower()
        form = await form_of(request)
        site.check_login_csrf(request, slug, form)
        keys = site.require_keys()
        address = keys.address_hash(get_remote_address(request))
        token = new_secret()
        email = form.get("email", "").strip()

        async def work(calls: WebCalls) -> tuple[dict[str, Any], dict[str, Any]]:
            face = await calls.one("service.resolve_portal", {"slug": slug})
            answer = await calls.one(
                "service.request_portal_login",
                {"slug": slug, "email": email, "token_hash": digest(token), "ip_hash": address},
            )
            return face, answer

        pool = request.app.state.pool
        try:
            face, answer = await PortalDb(pool, slug).visitor(work)
        except psycopg.Error as exc:
            if exc.sqlstate != "LINVL":
                raise
            # A malformed address: says nothing about which addresses exist.
            face = await PortalDb(pool, slug).visitor(
                lambda calls: calls.one("service.resolve_portal", {"slug": slug})
            )
            return site.page(
                "login.html",
                status=422,
                face=face,
                csrf=keys.login_csrf(slug, request.cookies[site.cookies.login_name]),
                error="Enter your email address, like name@example.com.",
                email=email[:320],
            )
        outcome = answer["reason"]  # for the log only: the page is the same whatever it says
        log.info("portal sign-in link requested", extra={"fields": {"portal": slug, "outcome": outcome}})
        background = BackgroundTask(site.send_login, answer, token) if answer["send"] else None
        return site.page("sent.html", status=202, face=face, background=background)

    @get("/login/confirm")
    async def confirm_page(
        self, request: Request[Any, Any, State], site: NamedDependency[PortalSite], slug: FromPath[str]
    ) -> Response[Any]:
        """What the emailed link opens: who it signs in (masked) and a button. Changes nothing, so a
        mail scanner following the link cannot use it up."""
        keys = site.require_keys()
        slug = slug.lower()
        token = request.query_params.get("token", "")

        async def work(calls: WebCalls) -> tuple[dict[str, Any], dict[str, Any]]:
            face = await calls.one("service.resolve_portal", {"slug": slug})
            peek = await calls.one("service.peek_portal_login", {"slug": slug, "token_hash": digest(token)})
            return face, peek

        face, peek = await PortalDb(request.app.state.pool, slug).visitor(work)
        login_value, cookies = site.login_cookie(request)
        if not peek["usable"]:
            return site.page("link_unusable.html", status=410, face=face, cookies=cookies)
        return site.page(
            "confirm.html",
            face=face,
            cookies=cookies,
            csrf=keys.login_csrf(slug, login_value),
            masked_email=peek["masked_email"],
            expires_at=peek["expires_at"],
            token=token,
        )

    @head("/login/confirm")
    async def confirm_head(self, slug: FromPath[str]) -> Response[None]:
        """A scanner's HEAD of the link: headers only, nothing looked up, nothing changed."""
        return Response(None, status_code=200, media_type="text/html", headers=PAGE_HEADERS)

    @post("/login/confirm")
    async def confirm(
        self, request: Request[Any, Any, State], site: NamedDependency[PortalSite], slug: FromPath[str]
    ) -> Response[Any]:
        """Spend the link and start a NEW session: a fresh random id, of which SQL keeps only the hash;
        the browser's previous session (if any) is ended in the same transaction."""
        slug = slug.lower()
        form = await form_of(request)
        site.check_login_csrf(request, slug, form)
        pool = request.app.state.pool
        session_id = new_secret()
        previous = request.cookies.get(site.cookies.session_name)
        args = {
            "slug": slug,
            "token_hash": digest(form.get("token", "")),
            "session_hash": digest(session_id),
            "replaces_session_hash": digest(previous) if previous else None,
        }
        try:
            await PortalDb(pool, slug).visitor(lambda calls: calls.one("service.confirm_portal_login", args))
        except psycopg.Error as exc:
            if exc.sqlstate != "LAUTH":
                raise
            # A second click of the button, once the first has signed this browser in.
            if previous and await site.is_signed_in(pool, slug, digest(previous)):
                return site.see_other(f"/portal/{slug}")
            face = await PortalDb(pool, slug).visitor(
                lambda calls: calls.one("service.resolve_portal", {"slug": slug})
            )
            return site.page("link_unusable.html", status=410, face=face)
        return site.see_other(f"/portal/{slug}", [site.cookies.session(session_id)])

    @post("/logout")
    async def logout(
        self, request: Request[Any, Any, State], site: NamedDependency[PortalSite], slug: FromPath[str]
    ) -> Response[Any]:
        """Sign out: the session is deleted in SQL and the cookie in the browser."""
        slug = slug.lower()
        session_hash = site.check_session_csrf(request, slug, await form_of(request))
        await PortalDb(request.app.state.pool, slug).visitor(
            lambda calls: calls.one("service.logout_portal", {"slug": slug, "session_hash": session_hash})
        )
        return site.see_other(
            f"/portal/{slug}/login?signed_out=1", [site.cookies.expired(site.cookies.session_name)]
        )

    @get("/theme.css")
    async def theme(self, request: Request[Any, Any, State], slug: FromPath[str]) -> Response[str]:
        """The portal's colours (branded plans), else Licentric's."""
        slug = slug.lower()
        face = await PortalDb(request.app.state.pool, slug).visitor(
            lambda calls: calls.one("service.resolve_portal", {"slug": slug})
        )
        return Response(
            Theme.of(face).css(),
            media_type="text/css",
            headers={"Cache-Control": "max-age=300", "X-Content-Type-Options": "nosniff"},
        )

    # Signed in.

    @get("/")
    async def overview(
        self, request: Request[Any, Any, State], site: NamedDependency[PortalSite], slug: FromPath[str]
    ) -> Response[Any]:
        """Plans, status, renewal or expiry, and a banner while a payment is in its grace period."""
        slug = slug.lower()

        async def work(calls: WebCalls, session: dict[str, Any], face: dict[str, Any]) -> dict[str, Any]:
            rows = await calls.rows("service.list_portal_licenses", {"page_limit": 100})
            return {"licenses": rows[:100], "more_licenses": len(rows) > 100}

        context = await site.signed_in(request.app.state.pool, slug, site.session_hash(request), work)
        return site.page("overview.html", section="overview", **context)

    @get("/licenses/{license_id:str}")
    async def license_page(
        self,
        request: Request[Any, Any, State],
        site: NamedDependency[PortalSite],
        slug: FromPath[str],
        license_id: FromPath[str],
    ) -> Response[Any]:
        """One license: its plan, effective entitlements and usage against its budgets this period."""
        slug = slug.lower()
        license_uuid = uuid_or_404(license_id)

        async def work(calls: WebCalls, session: dict[str, Any], face: dict[str, Any]) -> dict[str, Any]:
            license_ = await calls.one("service.get_portal_license", {"license_id": license_uuid})
            entitlements = await calls.rows("service.list_portal_entitlements", {"license_id": license_uuid})
            budgets = await calls.rows("service.list_portal_budgets", {"license_id": license_uuid})
            return {"license": license_, "entitlements": entitlements, "chart": usage_chart(budgets)}

        context = await site.signed_in(request.app.state.pool, slug, site.session_hash(request), work)
        return site.page("license.html", section="license", **context)

    async def _machines(
        self,
        request: Request[Any, Any, State],
        site: PortalSite,
        slug: str,
        license_id: UUID,
        session_hash: bytes,
        *,
        status: int = 200,
        error: str | None = None,
    ) -> Response[Any]:
        after = uuid_or_404(request.query_params.get("after"), missing_ok=True)

        async def work(calls: WebCalls, session: dict[str, Any], face: dict[str, Any]) -> dict[str, Any]:
            license_ = await calls.one("service.get_portal_license", {"license_id": license_id})
            rows = await calls.rows(
                "service.list_portal_machines",
                {"license_id": license_id, "page_limit": PAGE_ROWS, "starting_after": after},
            )
            machines, next_after = page_cut(rows)
            # Where a machine may move: the other licenses this customer owns (SQL decides again).
            owned = [
                row
                for row in await calls.rows("service.list_portal_licenses", {"page_limit": 100})
                if row["role"] == "owner" and row["id"] != license_id
            ]
            return {"license": license_, "machines": machines, "next_after": next_after, "targets": owned}

        context = await site.signed_in(request.app.state.pool, slug, session_hash, work)
        done = DONE.get(request.query_params.get("done", "")) if error is None else None
        return site.page(
            "machines.html", status=status, section="machines", error=error, notice=done, **context
        )

    @get("/licenses/{license_id:str}/machines")
    async def machines_page(
        self,
        request: Request[Any, Any, State],
        site: NamedDependency[PortalSite],
        slug: FromPath[str],
        license_id: FromPath[str],
    ) -> Response[Any]:
        """A license's machines: deactivate one, or move it to another license the customer owns."""
        return await self._machines(
            request, site, slug.lower(), uuid_or_404(license_id), site.session_hash(request)
        )

    async def _act(
        self,
        request: Request[Any, Any, State],
        site: PortalSite,
        slug: str,
        session_hash: bytes,
        function: str,
        args: dict[str, Any],
        after: Callable[[WebCalls, dict[str, Any], dict[str, Any]], Awaitable[dict[str, Any]]] | None = None,
    ) -> tuple[dict[str, Any] | None, tuple[int, str] | None]:
        """One action in one signed-in transaction: its context, or the (status, message) of a refusal
        the page shows beside its form (a 404 stays an error page of its own)."""

        async def work(calls: WebCalls, session: dict[str, Any], face: dict[str, Any]) -> dict[str, Any]:
            result = await calls.one(function, args)
            return await after(calls, session, result) if after else {"result": result}

        try:
            return await site.signed_in(request.app.state.pool, slug, session_hash, work), None
        except WebError as error:
            if error.status in (400, 403, 409, 422):
                return None, (error.status, error.message)
            raise

    @post("/licenses/{license_id:str}/machines/{machine_id:str}/deactivate")
    async def deactivate_machine(
        self,
        request: Request[Any, Any, State],
        site: NamedDependency[PortalSite],
        slug: FromPath[str],
        license_id: FromPath[str],
        machine_id: FromPath[str],
    ) -> Response[Any]:
        slug = slug.lower()
        session_hash = site.check_session_csrf(request, slug, await form_of(request))
        license_uuid, machine_uuid = uuid_or_404(license_id), uuid_or_404(machine_id)
        _, refused = await self._act(
            request,
            site,
            slug,
            session_hash,
            "service.deactivate_portal_machine",
            {"machine_id": machine_uuid},
        )
        if refused:
            return await self._machines(
                request, site, slug, license_uuid, session_hash, status=refused[0], error=refused[1]
            )
        return site.see_other(f"/portal/{slug}/licenses/{license_uuid}/machines?done=deactivated")

    @post("/licenses/{license_id:str}/machines/{machine_id:str}/transfer")
    async def transfer_machine(
        self,
        request: Request[Any, Any, State],
        site: NamedDependency[PortalSite],
        slug: FromPath[str],
        license_id: FromPath[str],
        machine_id: FromPath[str],
    ) -> Response[Any]:
        slug = slug.lower()
        form = await form_of(request)
        session_hash = site.check_session_csrf(request, slug, form)
        license_uuid, machine_uuid = uuid_or_404(license_id), uuid_or_404(machine_id)
        target = uuid_or_404(form.get("license_id"))
        _, refused = await self._act(
            request,
            site,
            slug,
            session_hash,
            "service.transfer_portal_machine",
            {"machine_id": machine_uuid, "license_id": target},
        )
        if refused:
            return await self._machines(
                request, site, slug, license_uuid, session_hash, status=refused[0], error=refused[1]
            )
        return site.see_other(f"/portal/{slug}/licenses/{license_uuid}/machines?done=transferred")

    async def _team(
        self,
        request: Request[Any, Any, State],
        site: PortalSite,
        slug: str,
        license_id: UUID,
        session_hash: bytes,
        *,
        status: int = 200,
        error: str | None = None,
        form: dict[str, str] | None = None,
    ) -> Response[Any]:
        after = uuid_or_404(request.query_params.get("after"), missing_ok=True)

        async def work(calls: WebCalls, session: dict[str, Any], face: dict[str, Any]) -> dict[str, Any]:
            license_ = await calls.one("service.get_portal_license", {"license_id": license_id})
            rows = await calls.rows(
                "service.list_portal_members",
                {"license_id": license_id, "page_limit": PAGE_ROWS, "starting_after": after},
            )
            members, next_after = page_cut(rows, "customer_id")
            return {"license": license_, "members": members, "next_after": next_after}

        context = await site.signed_in(request.app.state.pool, slug, session_hash, work)
        done = DONE.get(request.query_params.get("done", "")) if error is None else None
        return site.page(
            "team.html",
            status=status,
            section="team",
            error=error,
            notice=done,
            invite=form or {"email": "", "name": ""},
            **context,
        )

    @get("/licenses/{license_id:str}/team")
    async def team_page(
        self,
        request: Request[Any, Any, State],
        site: NamedDependency[PortalSite],
        slug: FromPath[str],
        license_id: FromPath[str],
    ) -> Response[Any]:
        """A license's team: owners invite by email (within the seats) and remove members."""
        return await self._team(
            request, site, slug.lower(), uuid_or_404(license_id), site.session_hash(request)
        )

    @post("/licenses/{license_id:str}/team")
    async def invite_member(
        self,
        request: Request[Any, Any, State],
        site: NamedDependency[PortalSite],
        slug: FromPath[str],
        license_id: FromPath[str],
    ) -> Response[Any]:
        """Give an address a seat, then send it a sign-in link for this portal (in the same transaction
        its token is issued; the mail leaves after the answer)."""
        slug = slug.lower()
        form = await form_of(request)
        session_hash = site.check_session_csrf(request, slug, form)
        keys = site.require_keys()
        license_uuid = uuid_or_404(license_id)
        email, name = form.get("email", "").strip(), form.get("name", "").strip() or None
        token = new_secret()
        address = keys.address_hash(get_remote_address(request))

        async def after(calls: WebCalls, session: dict[str, Any], member: dict[str, Any]) -> dict[str, Any]:
            license_ = await calls.one("service.get_portal_license", {"license_id": license_uuid})
            answer = await calls.one(
                "service.request_portal_login",
                {"slug": slug, "email": member["email"], "token_hash": digest(token), "ip_hash": address},
            )
            return {"answer": answer, "inviter": session, "license": license_}

        context, refused = await self._act(
            request,
            site,
            slug,
            session_hash,
            "service.invite_portal_member",
            {"license_id": license_uuid, "email": email, "name": name},
            after,
        )
        if refused or context is None:
            status, message = refused or (409, "")
            return await self._team(
                request,
                site,
                slug,
                license_uuid,
                session_hash,
                status=status,
                error=message,
                form={"email": email[:320], "name": (name or "")[:200]},
            )
        answer = context["answer"]
        log.info("portal member invited", extra={"fields": {"portal": slug, "link": answer["reason"]}})
        background = (
            BackgroundTask(site.send_invite, answer, token, context["inviter"], context["license"])
            if answer["send"]
            else None
        )
        redirect = site.see_other(f"/portal/{slug}/licenses/{license_uuid}/team?done=invited")
        redirect.background = background
        return redirect

    @post("/licenses/{license_id:str}/team/{customer_id:str}/remove")
    async def remove_member(
        self,
        request: Request[Any, Any, State],
        site: NamedDependency[PortalSite],
        slug: FromPath[str],
        license_id: FromPath[str],
        customer_id: FromPath[str],
    ) -> Response[Any]:
        slug = slug.lower()
        session_hash = site.check_session_csrf(request, slug, await form_of(request))
        license_uuid, customer_uuid = uuid_or_404(license_id), uuid_or_404(customer_id)
        _, refused = await self._act(
            request,
            site,
            slug,
            session_hash,
            "service.remove_portal_member",
            {"license_id": license_uuid, "customer_id": customer_uuid},
        )
        if refused:
            return await self._team(
                request, site, slug, license_uuid, session_hash, status=refused[0], error=refused[1]
            )
        return site.see_other(f"/portal/{slug}/licenses/{license_uuid}/team?done=removed")

    @get("/billing")
    async def billing_page(
        self, request: Request[Any, Any, State], site: NamedDependency[PortalSite], slug: FromPath[str]
    ) -> Response[Any]:
        """Where the Stripe Customer Portal opens, when the customer pays through Stripe."""
        slug = slug.lower()

        async def work(calls: WebCalls, session: dict[str, Any], face: dict[str, Any]) -> dict[str, Any]:
            billing = await calls.one("service.get_portal_billing", {})
            return {
                "billing_available": bool(billing["stripe_customer_id"] and billing["api_key_ciphertext"])
            }

        context = await site.signed_in(request.app.state.pool, slug, site.session_hash(request), work)
        return site.page("billing.html", section="billing", **context)

    @post("/billing")
    async def open_billing(
        self, request: Request[Any, Any, State], site: NamedDependency[PortalSite], slug: FromPath[str]
    ) -> Response[Any]:
        """Open a Stripe Customer Portal session for the signed-in customer, returning to this portal."""
        slug = slug.lower()
        session_hash = site.check_session_csrf(request, slug, await form_of(request))
        secret_key = site.settings.secret_key
        if secret_key is None:
            raise WebError(503, "Billing is not available", "Billing is not configured on this server.")
        return_url = site.url(slug)

        async def work(calls: WebCalls, session: dict[str, Any], face: dict[str, Any]) -> dict[str, Any]:
            billing = await calls.one("service.get_portal_billing", {"return_url": return_url})
            return {"billing": billing}

        context = await site.signed_in(request.app.state.pool, slug, session_hash, work)
        billing, face = context["billing"], context["face"]
        if not (billing["stripe_customer_id"] and billing["api_key_ciphertext"]):
            raise WebError(
                409, "Billing is not available", "There is no billing account to manage for you here.", face
            )
        try:
            api_key = SecretBox(secret_key).decrypt(
                billing["api_key_ciphertext"], billing["account_id"], "stripe_api_key"
            )
        except DecryptionError as exc:
            log.error("the Stripe key of portal %s does not decrypt: %s", slug, exc)
            raise WebError(
                503, "Billing is not available", "Billing is not available right now; please try later.", face
            ) from exc
        try:
            async with StripeApi(api_key, site.settings.stripe_api_base) as api:
                url = await api.create_billing_portal_session(
                    billing["stripe_customer_id"], billing["session_return_url"]
                )
        except ApiError as exc:
            log.error("opening a Stripe portal session for portal %s failed: %s", slug, exc.message)
            raise WebError(
                502, "Billing is not available", "Billing is not available right now; please try later.", face
            ) from exc
        return Redirect(url, status_code=303, headers=PAGE_HEADERS)

    @get("/{rest:path}")
    async def not_found(self, slug: FromPath[str], rest: FromPath[str]) -> Response[Any]:
        raise WebError(404, "Not found", "There is nothing here.")


portal_static = static_files("/portal/static", "portal_static")
