"""The console's signed-in pages (docs/console.md): each maps a page to a few api.* reads and a form to
one api.* call, in the member's context. Nothing here decides what a member may do: SQL refuses, and the
refusal is the page answered (a viewer's POST is LDNID, 403)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Request, Response, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import FromPath

from licentric.console.site import BASE, ConsoleController, ConsoleSite
from licentric.console.usage import usage_series
from licentric.db import WebCalls
from licentric.web.render import Theme, sparkline
from licentric.web.site import PAGE_ROWS, WebError, page_cut, uuid_or_404

MATRIX_ROWS = 100  # policies and entitlements the matrix shows at once
SPARK_DAYS = 14


def _rows(request: Request[Any, Any, State]) -> dict[str, Any]:
    """A list page's cursor arguments (?after=…)."""
    return {
        "page_limit": PAGE_ROWS,
        "starting_after": uuid_or_404(request.query_params.get("after"), missing_ok=True),
    }


def _cell(value: str) -> tuple[UUID, str]:
    """A matrix checkbox's value: policy id and entitlement code."""
    policy, _, code = value.partition(":")
    return uuid_or_404(policy), code  # type: ignore[return-value]


class ConsolePages(ConsoleController):
    path = BASE

    @get("/theme.css")
    async def theme(self) -> Response[str]:
        """Licentric's own colours (the console is not branded)."""
        return Response(
            Theme.of(None).css(),
            media_type="text/css",
            headers={"Cache-Control": "max-age=300", "X-Content-Type-Options": "nosniff"},
        )

    # 1. Overview.

    @get("/")
    async def overview(
        self, request: Request[Any, Any, State], site: NamedDependency[ConsoleSite]
    ) -> Response[Any]:
        """Plan and limits, licenses by status, Stripe and webhook health, usage per meter and the
        getting-started checklist."""

        async def work(calls: WebCalls, member: dict[str, Any]) -> dict[str, Any]:
            meters = []
            for meter in (await calls.rows("api.list_meters", {"page_limit": 10}))[:10]:
                days = await usage_series(calls, meter["id"], "day", SPARK_DAYS)
                meters.append({**meter, "days": days, "points": sparkline([d["value"] for d in days])})
            return {
                "account": await calls.one("api.get_account"),
                "overview": await calls.one("api.get_console_overview"),
                "meters": meters,
            }

        return await site.show(request, "overview.html", "overview", work)

    # 2. Plans and entitlements.

    @get("/plans")
    async def plans(
        self, request: Request[Any, Any, State], site: NamedDependency[ConsoleSite]
    ) -> Response[Any]:
        """The policies with their settings, and the policies-by-entitlements matrix."""
        archived = request.query_params.get("archived") == "1"

        async def work(calls: WebCalls, member: dict[str, Any]) -> dict[str, Any]:
            policies = await calls.rows(
                "api.list_license_policies", {"page_limit": MATRIX_ROWS, "include_archived": archived}
            )
            entitlements = await calls.rows("api.list_entitlements", {"page_limit": MATRIX_ROWS})
            return {
                "policies": policies[:MATRIX_ROWS],
                "entitlements": entitlements[:MATRIX_ROWS],
                "more": len(policies) > MATRIX_ROWS or len(entitlements) > MATRIX_ROWS,
                "archived": archived,
            }

        return await site.show(request, "plans.html", "plans", work)

    @post("/plans")
    async def create_policy(
        self, request: Request[Any, Any, State], site: NamedDependency[ConsoleSite]
    ) -> Response[Any]:
        async def work(calls: WebCalls, form: dict[str, str]) -> Any:
            return await calls.one(
                "api.create_license_policy",
                {
                    "code": form.get("code", "").strip(),
                    "name": form.get("name", "").strip(),
                    "duration": form.get("duration") or None,
                    "max_machines": form.get("max_machines") or None,
                    "max_users": form.get("max_users") or None,
                },
            )

        return await site.act(request, work, f"{BASE}/plans?done=policy_created")

    @post("/plans/{policy_id:str}/archive")
    async def archive_policy(
        self, request: Request[Any, Any, State], site: NamedDependency[ConsoleSite], policy_id: FromPath[str]
    ) -> Response[Any]:
        policy = uuid_or_404(policy_id)
        return await site.act(
            request,
            lambda calls, form: calls.one("api.archive_license_policy", {"license_policy_id": policy}),
            f"{BASE}/plans?done=policy_archived",
        )

    @post("/entitlements")
    async def create_entitlement(
        self, request: Request[Any, Any, State], site: NamedDependency[ConsoleSite]
    ) -> Response[Any]:
        return await site.act(
            request,
            lambda calls, form: calls.one(
                "api.create_entitlement",
                {"code": form.get("code", "").strip(), "name": form.get("name", "").strip()},
            ),
            f"{BASE}/plans?done=entitlement_created",
        )

    @post("/plans/matrix")
    async def save_matrix(
        self, request: Request[Any, Any, State], site: NamedDependency[ConsoleSite]
    ) -> Response[Any]:
        """The matrix form: every cell it showed (shown) is attached when ticked and detached when not.
        Both calls change nothing when the cell already is so, so a form saved twice is harmless."""
        form = await request.form()
        shown = {_cell(value) for value in form.getall("shown", []) if isinstance(value, str)}
        ticked = {_cell(value) for value in form.getall("cell", []) if isinstance(value, str)}

        async def work(calls: WebCalls, _: dict[str, str]) -> None:
            for policy, code in sorted(shown, key=str):
                function = "api.attach_entitlement" if (policy, code) in ticked else "api.detach_entitlement"
                await calls.one(function, {"license_policy_id": policy, "code": code})

        return await site.act(request, work, f"{BASE}/plans?done=matrix_saved")

    # 4. Customers and licenses.

    @get("/customers")
    async def customers(
        self, request: Request[Any, Any, State], site: NamedDependency[ConsoleSite]
    ) -> Response[Any]:
        """Search by email, external id or license key; without a search, every customer newest first."""
        query = request.query_params.get("q", "").strip()

        async def work(calls: WebCalls, member: dict[str, Any]) -> dict[str, Any]:
            if "@" not in query and query.count("-") >= 3:
                # A license key: that license (another account's, or none, is the 404 page).
                license_ = await calls.one("api.get_license", {"key": query})
                return {"query": query, "customers": [], "next_after": None, "licenses": [license_]}
            args = _rows(request)
            if "@" in query:
                args["email"] = query
            elif query:
                args["external_id"] = query
            customers, next_after = page_cut(await calls.rows("api.list_customers", args))
            return {"query": query, "customers": customers, "next_after": next_after, "licenses": []}

        return await site.show(request, "customers.html", "customers", work)

    @get("/customers/{customer_id:str}")
    async def customer(
        self,
        request: Request[Any, Any, State],
        site: NamedDependency[ConsoleSite],
        customer_id: FromPath[str],
    ) -> Response[Any]:
        """A customer: its licenses with their effective entitlements (and source), machines and seats."""
        customer_uuid = uuid_or_404(customer_id)

        async def work(calls: WebCalls, member: dict[str, Any]) -> dict[str, Any]:
            customer = await calls.one("api.get_customer", {"customer_id": customer_uuid})
            licenses = (
                await calls.rows("api.list_licenses", {"customer_id": customer_uuid, "page_limit": 20})
            )[:20]
            for license_ in licenses:
                license_["entitlements"] = await calls.rows(
                    "api.list_license_entitlements", {"license_id": license_["id"]}
                )
                license_["machine_rows"] = (
                    await calls.rows("api.list_machines", {"license_id": license_["id"], "page_limit": 20})
                )[:20]
                license_["user_rows"] = (
                    await calls.rows(
                        "api.list_license_users", {"license_id": license_["id"], "page_limit": 20}
                    )
                )[:20]
            policies = await calls.rows("api.list_license_policies", {"page_limit": MATRIX_ROWS})
            entitlements = await calls.rows("api.list_entitlements", {"page_limit": MATRIX_ROWS})
            return {
                "customer": customer,
                "licenses": licenses,
                "policies": policies[:MATRIX_ROWS],
                "all_entitlements": entitlements[:MATRIX_ROWS],
            }

        return await site.show(request, "customer.html", "customers", work)

    @get("/licenses/{license_id:str}/{action:str}")
    async def confirm_license_action(
        self,
        request: Request[Any, Any, State],
        site: NamedDependency[ConsoleSite],
        license_id: FromPath[str],
        action: FromPath[str],
    ) -> Response[Any]:
        """The confirmation page of a license action: what it will do, and the button that does it."""
        license_uuid = _license_action(license_id, action)

        async def work(calls: WebCalls, member: dict[str, Any]) -> dict[str, Any]:
            license_ = await calls.one("api.get_license", {"license_id": license_uuid})
            policies = await calls.rows("api.list_license_policies", {"page_limit": MATRIX_ROWS})
            return {
                "license": license_,
                "action": action,
                "policies": policies[:MATRIX_ROWS],
                "code": request.query_params.get("code", ""),
            }

        return await site.show(request, "license_action.html", "customers", work)

    @post("/licenses/{license_id:str}/{action:str}")
    async def license_action(
        self,
        request: Request[Any, Any, State],
        site: NamedDependency[ConsoleSite],
        license_id: FromPath[str],
        action: FromPath[str],
    ) -> Response[Any]:
        """Suspend, reinstate, renew, cancel, change plan; grant, revoke or unset an entitlement."""
        license_uuid = _license_action(license_id, action)

        async def work(calls: WebCalls, form: dict[str, str]) -> Any:
            function, args = LICENSE_ACTIONS[action](license_uuid, form)
            await calls.rows(function, args)
            return await calls.one("api.get_license", {"license_id": license_uuid})

        def back(license_: dict[str, Any]) -> str:
            done = DONE_OF.get(action, action)
            if license_["customer_id"]:
                return f"{BASE}/customers/{license_['customer_id']}?done={done}#license-{license_['id']}"
            return f"{BASE}/customers?q={license_['key']}&done={done}"

        return await site.act(request, work, back)

    @post("/machines/{machine_id:str}/deactivate")
    async def deactivate_machine(
        self, request: Request[Any, Any, State], site: NamedDependency[ConsoleSite], machine_id: FromPath[str]
    ) -> Response[Any]:
        machine = uuid_or_404(machine_id)

        async def work(calls: WebCalls, form: dict[str, str]) -> Any:
            machine_row = await calls.one("api.deactivate_machine", {"machine_id": machine})
            return await calls.one("api.get_license", {"license_id": machine_row["license_id"]})

        return await site.act(
            request, work, lambda license_: f"{BASE}/customers/{license_['customer_id']}?done=deactivated"
        )

    # The audit log.

    @get("/audit")
    async def audit(
        self, request: Request[Any, Any, State], site: NamedDependency[ConsoleSite]
    ) -> Response[Any]:
        """Who changed what, newest first; filters by member and event type."""
        event_type = request.query_params.get("type") or None
        member = uuid_or_404(request.query_params.get("member"), missing_ok=True)

        async def work(calls: WebCalls, session: dict[str, Any]) -> dict[str, Any]:
            rows = await calls.rows(
                "api.list_audit_events", {**_rows(request), "type": event_type, "member_id": member}
            )
            events, next_after = page_cut(rows)
            members = await calls.rows("api.list_members", {"page_limit": 100})
            return {
                "events": events,
                "next_after": next_after,
                "type": event_type or "",
                "member": member,
                "members": members[:100],
            }

        return await site.show(request, "audit.html", "audit", work)


def _license_action(license_id: str, action: str) -> UUID:
    """The license of a license action's URL; an unknown action is a page that cannot exist."""
    if action not in LICENSE_ACTIONS:
        raise WebError(404, "Not found", "There is nothing here.")
    return uuid_or_404(license_id)  # type: ignore[return-value]


def _reason(form: dict[str, str]) -> str | None:
    return form.get("reason", "").strip() or None


# A license action: the api function and its arguments, from the license and the form.
LICENSE_ACTIONS = {
    "suspend": lambda license_id, form: (
        "api.suspend_license",
        {"license_id": license_id, "reason": _reason(form)},
    ),
    "reinstate": lambda license_id, form: ("api.reinstate_license", {"license_id": license_id}),
    "renew": lambda license_id, form: ("api.renew_license", {"license_id": license_id}),
    "cancel": lambda license_id, form: (
        "api.cancel_license",
        {"license_id": license_id, "reason": _reason(form)},
    ),
    "change-plan": lambda license_id, form: (
        "api.change_license_policy",
        {"license_id": license_id, "license_policy_id": uuid_or_404(form.get("license_policy_id"))},
    ),
    "grant": lambda license_id, form: (
        "api.set_license_entitlement",
        {"license_id": license_id, "code": form.get("code", ""), "effect": "grant"},
    ),
    "revoke": lambda license_id, form: (
        "api.set_license_entitlement",
        {"license_id": license_id, "code": form.get("code", ""), "effect": "revoke"},
    ),
    "unset": lambda license_id, form: (
        "api.remove_license_entitlement",
        {"license_id": license_id, "code": form.get("code", "")},
    ),
}
DONE_OF = {
    "suspend": "suspended",
    "reinstate": "reinstated",
    "renew": "renewed",
    "cancel": "canceled",
    "change-plan": "plan_changed",
    "grant": "granted",
    "revoke": "revoked",
    "unset": "unset",
}
