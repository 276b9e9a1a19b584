"""Every call Licentric makes to Stripe's API, in one place.

One `StripeClient` per tenant key and use (never the global `stripe.api_key`, which concurrent
requests of different tenants would share), pointed at LICENTRIC_STRIPE_API_BASE when set (tests run
a fake Stripe). Requests are raw: Stripe's JSON comes back as plain dicts and goes to SQL as it is,
with no SDK object in between. Every request, and the webhook endpoints Licentric makes, use
API_VERSION, so events and objects fetched for them have the same shape (the SQL reads both the
pre-basil and the basil+ shapes anyway).

Stripe's failures become ApiErrors: a refused key 422 stripe_key_rejected, a refused request 422
stripe_request_refused, anything else (network, timeout, Stripe's 5xx after retries) 502
stripe_unavailable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import stripe

from licentric.errors import ApiError

# The API version of every request and of the webhook endpoints Licentric makes: the first of the
# basil generation, whose shapes docs/stripe.md describes (invoice.parent.subscription_details,
# items.data[].current_period_end, line.pricing.price_details).
API_VERSION = "2025-03-31.basil"

# The events Licentric acts on (docs/stripe.md); the endpoint it makes receives only these.
ENABLED_EVENTS = (
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed",
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "customer.subscription.paused",
    "customer.subscription.resumed",
    "customer.subscription.trial_will_end",
    "invoice.paid",
    "invoice.payment_succeeded",
    "invoice.payment_failed",
    "charge.refunded",
    "charge.dispute.created",
    "charge.dispute.closed",
)

# A webhook delivery waits for refetches, so calls are kept short: 10 s each, retried twice on a
# network error, a 409 or a 5xx (the SDK adds idempotency keys to retried POSTs).
TIMEOUT_SECONDS = 10.0
NETWORK_RETRIES = 2
PICKER_PAGE = 10  # products on one page of the console's picker
PAGE_SIZE = 100
# Stripe ids go into request paths: letters, digits and underscores only.
STRIPE_ID = re.compile(r"[A-Za-z0-9_]{1,255}")


@dataclass(frozen=True)
class WebhookEndpoint:
    id: str
    secret: str


def _path_id(value: Any, what: str) -> str:
    if not isinstance(value, str) or not STRIPE_ID.fullmatch(value):
        raise ApiError("LSREQ", f"not a Stripe {what} id: {value!r}")
    return value


class StripeApi:
    """Stripe's API with one tenant's key. Use as `async with StripeApi(key, base) as api: ...`."""

    def __init__(self, api_key: str, api_base: str | None = None) -> None:
        self._http = stripe.HTTPXClient(timeout=TIMEOUT_SECONDS)
        self._client = stripe.StripeClient(
            api_key,
            stripe_version=API_VERSION,
            base_addresses={"api": api_base} if api_base else None,
            max_network_retries=NETWORK_RETRIES,
            http_client=self._http,
        )

    async def __aenter__(self) -> StripeApi:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._http.close_async()

    async def _request(self, method: str, path: str, **params: Any) -> dict[str, Any]:
        try:
            response = await self._client.raw_request_async(method, path, **params)
        except (stripe.AuthenticationError, stripe.PermissionError) as exc:
            raise ApiError(
                "LSKEY", f"Stripe refused the API key: {exc.user_message or 'not authorized'}", "api_key"
            ) from exc
        except stripe.InvalidRequestError as exc:
            raise ApiError("LSREQ", f"Stripe refused the request: {exc.user_message or exc}") from exc
        except stripe.StripeError as exc:
            raise ApiError("LSUNV", "Stripe could not be reached or failed; retry later") from exc
        data = response.data
        if not isinstance(data, Mapping):
            raise ApiError("LSUNV", "Stripe answered something that is not a JSON object")
        return dict(data)

    async def _rest_of_list(self, path: str, first: Mapping[str, Any], **params: Any) -> list[Any]:
        """Every item of a Stripe list whose first page is first, following has_more."""
        items = list(first.get("data") or [])
        page = first
        while page.get("has_more") and items:
            last = _path_id(items[-1].get("id"), "list item")
            page = await self._request("get", path, limit=PAGE_SIZE, starting_after=last, **params)
            items += page.get("data") or []
        return items

    async def create_webhook_endpoint(self, url: str) -> WebhookEndpoint:
        endpoint = await self._request(
            "post",
            "/v1/webhook_endpoints",
            url=url,
            enabled_events=list(ENABLED_EVENTS),
            api_version=API_VERSION,
            description="Licentric: licenses from Stripe events",
        )
        if not isinstance(endpoint.get("id"), str) or not isinstance(endpoint.get("secret"), str):
            raise ApiError("LSUNV", "Stripe made the webhook endpoint but returned no id or secret")
        return WebhookEndpoint(endpoint["id"], endpoint["secret"])

    async def delete_webhook_endpoint(self, endpoint_id: str) -> None:
        await self._request("delete", f"/v1/webhook_endpoints/{_path_id(endpoint_id, 'webhook endpoint')}")

    async def list_products(
        self, *, search: str | None = None, starting_after: str | None = None, page: str | None = None
    ) -> dict[str, Any]:
        """One page of the active products (PICKER_PAGE), newest first: a list, or with search a search
        result by name (Stripe's search query, the term quoted), whose next page is named by page."""
        if search:
            term = search.replace("\\", "\\\\").replace('"', '\\"')
            params: dict[str, Any] = {"query": f'active:"true" AND name~"{term}"', "limit": PICKER_PAGE}
            if page:
                params["page"] = page
            return await self._request("get", "/v1/products/search", **params)
        params = {"active": "true", "limit": PICKER_PAGE}
        if starting_after:
            params["starting_after"] = _path_id(starting_after, "product")
        return await self._request("get", "/v1/products", **params)

    async def list_prices(self, product_id: str) -> list[dict[str, Any]]:
        """Every active price of a product."""
        params = {"product": product_id, "active": "true", "limit": PAGE_SIZE}
        first = await self._request("get", "/v1/prices", **params)
        return await self._rest_of_list("/v1/prices", first, product=product_id, active="true")

    async def retrieve_subscription(self, subscription_id: str) -> dict[str, Any]:
        """The subscription with all its items in items.data, even past the first page of ten."""
        sub_id = _path_id(subscription_id, "subscription")
        subscription = await self._request("get", f"/v1/subscriptions/{sub_id}")
        items = subscription.get("items")
        if isinstance(items, Mapping) and items.get("has_more"):
            first = await self._request("get", "/v1/subscription_items", subscription=sub_id, limit=PAGE_SIZE)
            everything = await self._rest_of_list("/v1/subscription_items", first, subscription=sub_id)
            subscription["items"] = {**items, "data": everything, "has_more": False}
        return subscription

    async def retrieve_checkout_session(self, session_id: str) -> dict[str, Any]:
        """The Checkout Session with all its line items in line_items.data."""
        cs_id = _path_id(session_id, "checkout session")
        session = await self._request("get", f"/v1/checkout/sessions/{cs_id}", expand=["line_items"])
        line_items = session.get("line_items")
        if isinstance(line_items, Mapping) and line_items.get("has_more"):
            path = f"/v1/checkout/sessions/{cs_id}/line_items"
            session["line_items"] = {
                **line_items,
                "data": await self._rest_of_list(path, line_items),
                "has_more": False,
            }
        return session

    async def retrieve_invoice_payment(self, payment_intent: str) -> dict[str, Any]:
        """The invoice payment made by a PaymentIntent (basil+: how a payment leads to its invoice)."""
        listed = await self._request(
            "get",
            "/v1/invoice_payments",
            payment={"type": "payment_intent", "payment_intent": _path_id(payment_intent, "payment intent")},
            limit=1,
        )
        data = listed.get("data") or []
        if not data or not isinstance(data[0], Mapping):
            raise ApiError("LSREQ", f"Stripe has no invoice payment for {payment_intent}")
        return dict(data[0])

    async def fetch(self, refetch: Mapping[str, Any]) -> dict[str, Any]:
        """The object a needs_refetch outcome names: {"object": "subscription", "id"},
        {"object": "checkout.session", "id"} or {"object": "invoice_payment", "payment_intent"}."""
        kind = refetch.get("object")
        if kind == "subscription":
            return await self.retrieve_subscription(refetch.get("id"))  # type: ignore[arg-type]
        if kind == "checkout.session":
            return await self.retrieve_checkout_session(refetch.get("id"))  # type: ignore[arg-type]
        if kind == "invoice_payment":
            return await self.retrieve_invoice_payment(refetch.get("payment_intent"))  # type: ignore[arg-type]
        raise ApiError("LSREQ", f"cannot fetch a {kind!r} from Stripe")

    async def create_billing_portal_session(
        self, customer: str, return_url: str | None, idempotency_key: str | None = None
    ) -> str:
        params: dict[str, Any] = {"customer": _path_id(customer, "customer")}
        if return_url:
            params["return_url"] = return_url
        if idempotency_key:
            params["idempotency_key"] = idempotency_key
        session = await self._request("post", "/v1/billing_portal/sessions", **params)
        if not isinstance(session.get("url"), str):
            raise ApiError("LSUNV", "Stripe made the portal session but returned no url")
        return session["url"]
