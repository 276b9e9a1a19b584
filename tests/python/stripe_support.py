"""Helpers for the Stripe tests: signing a delivery as Stripe does (built here with hmac, not with
the stripe package, so a shared bug cannot hide), connecting an account, and delivering an event."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from typing import Any

import httpx

from fake_stripe import endpoint_secret


def sign(payload: bytes | str, secret: str, timestamp: int | None = None) -> str:
    """A Stripe-Signature header: t=<unix time>,v1=<hex HMAC-SHA256 of "t." + the body by the secret>."""
    stamp = int(time.time()) if timestamp is None else timestamp
    body = payload.encode() if isinstance(payload, str) else payload
    digest = hmac.new(secret.encode(), str(stamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={stamp},v1={digest}"


def _account_id(account: Any) -> str:
    return str(getattr(account, "id", account))


async def connect(
    client: Any,
    account: Any,
    *,
    livemode: bool = False,
    webhook_secret: str | None = None,
    api_key: str | None = None,
    portal_return_url: str | None = None,
) -> str:
    """Connect the account to Stripe (PUT /v1/stripe/connection) and return the signing secret that
    now verifies its deliveries: webhook_secret when given, else the one of the endpoint Licentric made
    in the fake Stripe with api_key (the mode is then the key's)."""
    body: dict[str, Any] = {}
    if api_key is not None:
        body["api_key"] = api_key
    else:
        body["livemode"] = livemode
    if webhook_secret is not None:
        body["webhook_secret"] = webhook_secret
    if portal_return_url is not None:
        body["portal_return_url"] = portal_return_url
    response = await client.put("/v1/stripe/connection", headers=account.headers, json=body)
    assert response.status_code == 200, response.text
    if webhook_secret is not None:
        return webhook_secret
    secret = endpoint_secret(f"/v1/stripe/webhooks/{_account_id(account)}")
    assert secret, "no webhook endpoint was made in the fake Stripe for this account"
    return secret


def body_of(event: dict[str, Any] | bytes | str) -> bytes:
    """The bytes delivered: a dict serialised once with json.dumps, text as UTF-8, bytes as they are."""
    if isinstance(event, dict):
        return json.dumps(event).encode()
    return event.encode() if isinstance(event, str) else event


async def deliver(
    client: Any,
    account: Any,
    event: dict[str, Any] | bytes | str,
    secret: str,
    *,
    timestamp: int | None = None,
    header: str | None = None,
) -> httpx.Response:
    """POST a delivery to the account's webhook URL, signed with secret over exactly the bytes sent.
    header replaces the signature header as given ("" sends none)."""
    body = body_of(event)
    signature = sign(body, secret, timestamp) if header is None else header
    headers = {"Content-Type": "application/json"}
    if signature:
        headers["Stripe-Signature"] = signature
    return await client.post(f"/v1/stripe/webhooks/{_account_id(account)}", content=body, headers=headers)


def new_id(prefix: str) -> str:
    """A fresh Stripe-looking id."""
    return f"{prefix}_{secrets.token_hex(12)}"


def stripe_event(
    type_: str, obj: dict[str, Any], *, livemode: bool = False, created: int | None = None
) -> dict[str, Any]:
    """A snapshot event envelope (API version basil) around obj."""
    return {
        "id": new_id("evt"),
        "object": "event",
        "api_version": "2025-03-31.basil",
        "created": int(time.time()) - 60 if created is None else created,
        "data": {"object": obj},
        "livemode": livemode,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": type_,
    }


def stripe_subscription(
    price: str,
    *,
    customer: str | None = None,
    items: int = 1,
    status: str = "active",
    livemode: bool = False,
    product: str = "prod_licentric",
) -> dict[str, Any]:
    """A basil subscription with `items` items of one price, current for 30 days."""
    now = int(time.time())
    sub_id = new_id("sub")
    data = [
        {
            "id": new_id("si"),
            "object": "subscription_item",
            "price": {"id": price, "object": "price", "product": product},
            "quantity": 1,
            "subscription": sub_id,
            "current_period_start": now - 3600,
            "current_period_end": now + 30 * 86_400,
        }
        for _ in range(items)
    ]
    return {
        "id": sub_id,
        "object": "subscription",
        "customer": customer or new_id("cus"),
        "status": status,
        "livemode": livemode,
        "cancel_at": None,
        "cancel_at_period_end": False,
        "pause_collection": None,
        "metadata": {},
        "created": now - 3600,
        "items": {"object": "list", "data": data, "has_more": False},
    }


def stripe_invoice(subscription: dict[str, Any], *, livemode: bool = False) -> dict[str, Any]:
    """A basil invoice paying the subscription's current period."""
    now = int(time.time())
    return {
        "id": new_id("in"),
        "object": "invoice",
        "customer": subscription["customer"],
        "created": now - 120,
        "livemode": livemode,
        "billing_reason": "subscription_cycle",
        "status": "paid",
        "amount_paid": 1500,
        "attempt_count": 1,
        "parent": {
            "type": "subscription_details",
            "subscription_details": {"subscription": subscription["id"], "metadata": {}},
        },
        "lines": {
            "object": "list",
            "has_more": False,
            "data": [
                {
                    "id": new_id("il"),
                    "object": "line_item",
                    "period": {"start": now - 3600, "end": now + 30 * 86_400},
                }
            ],
        },
    }


def paid_checkout(fake_stripe: Any, email: str, price: str, product: str) -> dict[str, Any]:
    """A paid one-off checkout session of one price, as checkout.session.completed carries it; the fake
    Stripe answers its refetch with the line items."""
    session = {
        "id": new_id("cs"),
        "object": "checkout.session",
        "mode": "payment",
        "payment_status": "paid",
        "status": "complete",
        "livemode": False,
        "customer": new_id("cus"),
        "payment_intent": new_id("pi"),
        "client_reference_id": "user-42",
        "customer_details": {"email": email},
        "created": int(time.time()) - 300,
        "metadata": {},
    }
    line = {"id": new_id("li"), "object": "item", "price": {"id": price, "product": product}, "quantity": 1}
    fake_stripe.put({**session, "line_items": [line]})
    return session
