"""The console's Stripe pages (issue 13 page 3): the connection per mode (a restricted key, with which
Licentric makes the webhook endpoint, or a signing secret), the product and price picker fetched from
Stripe with the mode's key, the price/product map, and the event log with its reprocess button. The
connect and reprocess steps are the HTTP API's own (routes/stripe.py), called with the member's session."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import FromPath

from licentric.console.site import BASE, SCOPE, ConsoleController, ConsoleSite
from licentric.db import WebCalls
from licentric.routes.stripe import (
    StripeConnectionPut,
    StripeContext,
    connect,
    disconnect,
    refetch_for,
)
from licentric.web.site import PAGE_ROWS, WebError, form_of, page_cut, uuid_or_404

OUTCOMES = ("applied", "stale", "ignored", "parked", "needs_refetch", "failed", "invalid")


def _livemode(value: str | None) -> bool:
    """?mode=live or test (the default)."""
    if value in (None, "", "test"):
        return False
    if value == "live":
        return True
    raise WebError(404, "Not found", "There is no such mode: test or live.")


def _mode(livemode: bool) -> str:
    return "live" if livemode else "test"


def _context(request: Request[Any, Any, State]) -> StripeContext:
    return StripeContext(request.app.state.settings, request.app.state.pool)


class ConsoleStripe(ConsoleController):
    path = f"{BASE}/stripe"

    @get("/")
    async def stripe_page(
        self, request: Request[Any, Any, State], site: NamedDependency[ConsoleSite]
    ) -> Response[Any]:
        """Both modes' connections, what works without a key, and the mappings."""

        async def work(calls: WebCalls, member: dict[str, Any]) -> dict[str, Any]:
            connections = {row["livemode"]: row for row in await calls.rows("api.list_stripe_connections")}
            mappings, next_after = page_cut(
                await calls.rows(
                    "api.list_stripe_mappings",
                    {
                        "page_limit": PAGE_ROWS,
                        "starting_after": uuid_or_404(request.query_params.get("after"), missing_ok=True),
                    },
                )
            )
            return {
                "modes": [(livemode, connections.get(livemode)) for livemode in (False, True)],
                "webhook_url": _context(request).webhook_url(member["account_id"]),
                "mappings": mappings,
                "next_after": next_after,
                "policies": (await calls.rows("api.list_license_policies", {"page_limit": 100}))[:100],
            }

        return await site.show(request, "stripe.html", "stripe", work)

    @post("/connect")
    async def connect_stripe(
        self, request: Request[Any, Any, State], site: NamedDependency[ConsoleSite]
    ) -> Response[Any]:
        """Connect a mode with a restricted key (Licentric makes the webhook endpoint in Stripe) or with the
        signing secret of an endpoint made by hand."""
        form = await form_of(request)
        session_hash = site.check_session_csrf(request, SCOPE, form)
        livemode = _livemode(form.get("mode"))
        data = StripeConnectionPut(
            api_key=form.get("api_key", "").strip() or None,
            webhook_secret=form.get("webhook_secret", "").strip() or None,
            livemode=livemode,
        )
        if not (data.api_key or data.webhook_secret):
            raise WebError(
                422, "That did not work", "Paste a restricted key (rk_…) or a signing secret (whsec_…)."
            )
        await connect(site.caller(request, session_hash), _context(request), data)
        return site.see_other(f"{BASE}/stripe?done=connected")

    @post("/disconnect")
    async def disconnect_stripe(
        self, request: Request[Any, Any, State], site: NamedDependency[ConsoleSite]
    ) -> Response[Any]:
        form = await form_of(request)
        session_hash = site.check_session_csrf(request, SCOPE, form)
        await disconnect(site.caller(request, session_hash), _context(request), _livemode(form.get("mode")))
        return site.see_other(f"{BASE}/stripe?done=disconnected")

    @get("/products")
    async def products(
        self, request: Request[Any, Any, State], site: NamedDependency[ConsoleSite]
    ) -> Response[Any]:
        """The picker: the connected account's active products with their prices, a page at a time and
        searchable by name, each price (or product) with a policy to map it to."""
        livemode = _livemode(request.query_params.get("mode"))
        search = request.query_params.get("q", "").strip()[:100]
        session_hash = site.session_hash(request)
        stripe_ctx = _context(request)
        key = (await site.caller(request, session_hash)("api.get_stripe_api_key", {"livemode": livemode}))[0]
        if key["api_key_ciphertext"] is None:
            raise WebError(
                409,
                "No key for this mode",
                "The picker lists products with the mode's restricted key; this mode is connected by a "
                "signing secret only. Map a price by its id below, or connect with a key.",
            )
        api_key = stripe_ctx.decrypt(key["api_key_ciphertext"], key["account_id"], "stripe_api_key")
        async with stripe_ctx.api(api_key) as api:
            listing = await api.list_products(
                search=search or None,
                starting_after=request.query_params.get("after") or None,
                page=request.query_params.get("page") or None,
            )
            products = [
                {**product, "prices": await api.list_prices(product["id"])}
                for product in listing.get("data") or []
            ]

        async def work(calls: WebCalls, member: dict[str, Any]) -> dict[str, Any]:
            mappings = await calls.rows("api.list_stripe_mappings", {"page_limit": 100})
            return {
                "policies": (await calls.rows("api.list_license_policies", {"page_limit": 100}))[:100],
                "mapped": {
                    row["stripe_price_id"] or row["stripe_product_id"]: row["policy_code"] for row in mappings
                },
            }

        context = await site.signed_in(request, session_hash, work)
        more = bool(listing.get("has_more"))
        return site.page(
            "stripe_products.html",
            section="stripe",
            mode=_mode(livemode),
            search=search,
            products=products,
            next_after=products[-1]["id"] if more and not search and products else None,
            next_page=listing.get("next_page") if more and search else None,
            **context,
        )

    @post("/mappings")
    async def create_mapping(
        self, request: Request[Any, Any, State], site: NamedDependency[ConsoleSite]
    ) -> Response[Any]:
        """Map a price (or a product) to a policy; parked events waiting for it apply at once."""

        async def work(calls: WebCalls, form: dict[str, str]) -> Any:
            return await calls.one(
                "api.create_stripe_mapping",
                {
                    "stripe_price_id": form.get("stripe_price_id", "").strip() or None,
                    "stripe_product_id": form.get("stripe_product_id", "").strip() or None,
                    "policy_id": uuid_or_404(form.get("policy_id")),
                },
            )

        return await site.act(request, work, f"{BASE}/stripe?done=mapped")

    @post("/mappings/{mapping_id:str}/delete")
    async def delete_mapping(
        self, request: Request[Any, Any, State], site: NamedDependency[ConsoleSite], mapping_id: FromPath[str]
    ) -> Response[Any]:
        mapping = uuid_or_404(mapping_id)
        return await site.act(
            request,
            lambda calls, form: calls.one("api.delete_stripe_mapping", {"mapping_id": mapping}),
            f"{BASE}/stripe?done=unmapped",
        )

    @get("/events")
    async def events(
        self, request: Request[Any, Any, State], site: NamedDependency[ConsoleSite]
    ) -> Response[Any]:
        """The event ledger, newest first, by outcome and type; a parked event says what it waits for."""
        outcome = request.query_params.get("outcome") or None
        if outcome is not None and outcome not in OUTCOMES:
            raise WebError(404, "Not found", "There is no such outcome.")
        event_type = request.query_params.get("type", "").strip()[:255] or None

        async def work(calls: WebCalls, member: dict[str, Any]) -> dict[str, Any]:
            rows = await calls.rows(
                "api.list_stripe_events",
                {
                    "page_limit": PAGE_ROWS,
                    "starting_after": uuid_or_404(request.query_params.get("after"), missing_ok=True),
                    "outcome": outcome,
                    "type": event_type,
                },
            )
            events, next_after = page_cut(rows)
            return {
                "events": events,
                "next_after": next_after,
                "outcome": outcome or "",
                "type": event_type or "",
            }

        return await site.show(request, "stripe_events.html", "stripe", work)

    @post("/events/{event_id:str}/reprocess")
    async def reprocess(
        self, request: Request[Any, Any, State], site: NamedDependency[ConsoleSite], event_id: FromPath[str]
    ) -> Response[Any]:
        """Apply a recorded event again; when it needs an object from Stripe, that is fetched too."""
        event = uuid_or_404(event_id)
        form = await form_of(request)
        session_hash = site.check_session_csrf(request, SCOPE, form)
        call = site.caller(request, session_hash)
        result = (await call("api.reprocess_stripe_event", {"stripe_event_id": event}))[0][
            "reprocess_stripe_event"
        ]
        if result.get("outcome") == "needs_refetch":
            await refetch_for(call, _context(request), event, result)
        return site.see_other(f"{BASE}/stripe/events?done=reprocessed")
