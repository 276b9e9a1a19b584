"""The console's Settings page (issue 13 page 7): the account's name, the portal's slug and branding
(plan-gated in SQL), the members with their roles and the invitations (owners only, in SQL), and the
signed-in member's own sessions. Accepting an invitation is signed out: console/signin.py."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.background_tasks import BackgroundTask
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import FromPath

from licentric.console.site import BASE, ConsoleController, ConsoleSite
from licentric.db import WebCalls
from licentric.web.site import uuid_or_404

PATH = f"{BASE}/settings"
ROLES = ("owner", "admin", "developer", "viewer")
PORTAL_FIELDS = ("slug", "product_name", "logo_url", "primary_color", "accent_color")
MEMBER_ROWS = 100  # members and invitations the page shows
CONFIRMATIONS = {
    "remove": ("Remove this member from the account?", "Yes, remove", "Their console sessions end at once."),
    "transfer": (
        "Make this member an owner?",
        "Yes, make them owner",
        "You become an admin in the same step.",
    ),
}


class ConsoleSettings(ConsoleController):
    path = PATH

    @get("/")
    async def settings(
        self, request: Request[Any, Any, State], site: NamedDependency[ConsoleSite]
    ) -> Response[Any]:
        """The account, its portal, its members and invitations, and this member's sessions."""

        async def work(calls: WebCalls, member: dict[str, Any]) -> dict[str, Any]:
            members = await calls.rows("api.list_members", {"page_limit": MEMBER_ROWS})
            invitations = await calls.rows("api.list_member_invitations", {"page_limit": MEMBER_ROWS})
            return {
                "account": await calls.one("api.get_account"),
                "portal": await calls.one("api.get_portal_settings"),
                "members": members[:MEMBER_ROWS],
                "invitations": [i for i in invitations[:MEMBER_ROWS] if i["status"] == "pending"],
                "sessions": await calls.rows("api.list_member_sessions"),
                "roles": ROLES,
                "portal_url": site.settings.base_url + "/portal/",
            }

        return await site.show(request, "settings.html", "settings", work)

    @post("/account")
    async def rename(
        self, request: Request[Any, Any, State], site: NamedDependency[ConsoleSite]
    ) -> Response[Any]:
        return await site.act(
            request,
            lambda calls, form: calls.one("api.update_account", {"name": form.get("name", "")}),
            f"{PATH}?done=account_renamed",
        )

    @post("/portal")
    async def portal(
        self, request: Request[Any, Any, State], site: NamedDependency[ConsoleSite]
    ) -> Response[Any]:
        """The portal form: a filled field is set, an emptied one that was set is cleared (an empty slug
        closes the portal), one the form did not show (branding on a plan without it) is left alone."""

        async def work(calls: WebCalls, form: dict[str, str]) -> Any:
            current = await calls.one("api.get_portal_settings")
            values = {name: form[name].strip() for name in PORTAL_FIELDS if name in form}
            changed = {name: value for name, value in values.items() if value and value != current[name]}
            clear = [name for name, value in values.items() if not value and current[name] is not None]
            return await calls.one("api.update_portal_settings", {**changed, "clear": clear})

        return await site.act(request, work, f"{PATH}?done=portal_saved")

    # Members and invitations.

    @post("/invitations")
    async def invite(
        self, request: Request[Any, Any, State], site: NamedDependency[ConsoleSite]
    ) -> Response[Any]:
        """Invite an address as a role; the link is mailed once the page has answered."""
        answer: dict[str, Any] = {}

        async def work(calls: WebCalls, form: dict[str, str]) -> Any:
            answer["invitation"] = await calls.one(
                "api.invite_member", {"email": form.get("email", "").strip(), "role": form.get("role", "")}
            )
            answer["account_name"] = (await calls.one("api.get_account"))["name"]

        response = await site.act(request, work, f"{PATH}?done=invited")
        invitation, account_name = answer["invitation"], answer["account_name"]
        response.background = BackgroundTask(site.send_invitation, invitation, account_name)
        return response

    @post("/invitations/{invitation:str}/revoke")
    async def revoke_invitation(
        self, request: Request[Any, Any, State], site: NamedDependency[ConsoleSite], invitation: FromPath[str]
    ) -> Response[Any]:
        invitation_id = uuid_or_404(invitation)
        return await site.act(
            request,
            lambda calls, form: calls.one("api.revoke_member_invitation", {"invitation_id": invitation_id}),
            f"{PATH}?done=invitation_revoked",
        )

    @post("/members/{member_id:str}/role")
    async def change_role(
        self, request: Request[Any, Any, State], site: NamedDependency[ConsoleSite], member_id: FromPath[str]
    ) -> Response[Any]:
        member = uuid_or_404(member_id)
        return await site.act(
            request,
            lambda calls, form: calls.one(
                "api.update_member_role", {"member_id": member, "role": form.get("role", "")}
            ),
            f"{PATH}?done=role_changed",
        )

    @get("/members/{member_id:str}/remove")
    async def confirm_remove(
        self, request: Request[Any, Any, State], site: NamedDependency[ConsoleSite], member_id: FromPath[str]
    ) -> Response[Any]:
        return await _confirm(request, site, member_id, "remove")

    @post("/members/{member_id:str}/remove")
    async def remove(
        self, request: Request[Any, Any, State], site: NamedDependency[ConsoleSite], member_id: FromPath[str]
    ) -> Response[Any]:
        member = uuid_or_404(member_id)
        return await site.act(
            request,
            lambda calls, form: calls.one("api.remove_member", {"member_id": member}),
            f"{PATH}?done=member_removed",
        )

    @get("/members/{member_id:str}/transfer")
    async def confirm_transfer(
        self, request: Request[Any, Any, State], site: NamedDependency[ConsoleSite], member_id: FromPath[str]
    ) -> Response[Any]:
        return await _confirm(request, site, member_id, "transfer")

    @post("/members/{member_id:str}/transfer")
    async def transfer(
        self, request: Request[Any, Any, State], site: NamedDependency[ConsoleSite], member_id: FromPath[str]
    ) -> Response[Any]:
        member = uuid_or_404(member_id)
        return await site.act(
            request,
            lambda calls, form: calls.one("api.transfer_ownership", {"member_id": member}),
            f"{PATH}?done=ownership_transferred",
        )

    # The member's own sessions.

    @post("/sessions/{session_id:str}/revoke")
    async def revoke_session(
        self, request: Request[Any, Any, State], site: NamedDependency[ConsoleSite], session_id: FromPath[str]
    ) -> Response[Any]:
        """End one of this member's sessions (this one too: then the sign-in page follows)."""
        session = uuid_or_404(session_id)
        return await site.act(
            request,
            lambda calls, form: calls.one("api.revoke_member_session", {"session_id": session}),
            f"{PATH}?done=session_revoked",
        )


async def _confirm(
    request: Request[Any, Any, State], site: ConsoleSite, member_id: str, action: str
) -> Response[str]:
    member_uuid = uuid_or_404(member_id)

    async def work(calls: WebCalls, session: dict[str, Any]) -> dict[str, Any]:
        member = await calls.one("api.get_member", {"member_id": member_uuid})
        question, button, consequence = CONFIRMATIONS[action]
        return {
            "question": question,
            "button": button,
            "label": f"{member['email']} ({member['role']}). {consequence}",
            "action_path": f"{PATH}/members/{member_uuid}/{action}",
            "back": PATH,
            "overlaps": [],
        }

    return await site.show(request, "confirm_action.html", "settings", work)
