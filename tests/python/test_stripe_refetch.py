"""What the web layer fetches from Stripe with the tenant's key: the object a needs_refetch outcome
names (a subscription, with all its items; a checkout session with its line items), applied through
service.apply_stripe_refetch; a Stripe failure leaving the event needs_refetch; reprocessing; and Customer
Portal sessions."""

from __future__ import annotations

import secrets
import time
import uuid

import pytest

from license_helpers import superuser
from stripe_support import (
    connect,
    deliver,
    new_id,
    stripe_event,
    stripe_invoice,
    stripe_subscription,
)
from support import assert_error


def api_key(mode: str = "test") -> str:
    return f"rk_{mode}_{secrets.token_hex(24)}"


async def make_policy(client, account) -> dict:
    body = {"code": f"plan-{secrets.token_hex(4)}", "name": "Plan", "duration": "P30D"}
    response = await client.post("/v1/license_policies", headers=account.headers, json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def mapped_price(client, account) -> tuple[str, dict]:
    policy = await make_policy(client, account)
    price = new_id("price")
    response = await client.post(
        "/v1/stripe/mappings",
        headers=account.headers,
        json={"stripe_price_id": price, "policy_code": policy["code"]},
    )
    assert response.status_code == 201, response.text
    return price, policy


async def licenses(client, account) -> list[dict]:
    response = await client.get("/v1/licenses", headers=account.headers, params={"limit": 100})
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def ledger_row(client, account, ledger_id: str) -> dict:
    response = await client.get(f"/v1/stripe/events/{ledger_id}", headers=account.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def test_an_invoice_for_an_unseen_subscription_fetches_it_and_applies(client, account, fake_stripe):
    secret = await connect(client, account, api_key=api_key())
    price, policy = await mapped_price(client, account)
    subscription = fake_stripe.put(stripe_subscription(price))

    response = await deliver(
        client, account, stripe_event("invoice.paid", stripe_invoice(subscription)), secret
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["outcome"] == "applied", result
    assert ("GET", f"/v1/subscriptions/{subscription['id']}", {}) in fake_stripe.requests
    [license_] = await licenses(client, account)
    assert (license_["policy_code"], license_["stripe_subscription_id"]) == (
        policy["code"],
        subscription["id"],
    )
    assert license_["status"] == "active"
    recorded = await ledger_row(client, account, result["id"])
    assert (recorded["outcome"], recorded["refetched_at"] is not None) == ("applied", True)


async def test_a_truncated_item_list_is_fetched_whole(client, account, fake_stripe):
    secret = await connect(client, account, api_key=api_key())
    price, _ = await mapped_price(client, account)
    full = fake_stripe.put(stripe_subscription(price, items=12))
    payload = {**full, "items": {**full["items"], "data": full["items"]["data"][:10], "has_more": True}}

    response = await deliver(client, account, stripe_event("customer.subscription.created", payload), secret)
    assert response.status_code == 200, response.text
    assert response.json()["outcome"] == "applied", response.json()
    assert fake_stripe.calls("GET", "/v1/subscription_items")
    made = [lic for lic in await licenses(client, account) if lic["stripe_subscription_id"] == full["id"]]
    assert len(made) == 12


async def test_a_checkout_without_line_items_fetches_the_session(client, account, fake_stripe):
    secret = await connect(client, account, api_key=api_key())
    price, policy = await mapped_price(client, account)
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
        "customer_details": {"email": "buyer@example.com"},
        "created": int(time.time()) - 300,
        "metadata": {},
    }
    fake_stripe.put(
        {
            **session,
            "line_items": [
                {
                    "id": new_id("li"),
                    "object": "item",
                    "price": {"id": price, "product": "prod_x"},
                    "quantity": 1,
                }
            ],
        }
    )
    response = await deliver(client, account, stripe_event("checkout.session.completed", session), secret)
    assert response.status_code == 200, response.text
    assert response.json()["outcome"] == "applied", response.json()
    [call] = fake_stripe.calls("GET", f"/v1/checkout/sessions/{session['id']}")
    assert call["expand"] == ["line_items"]
    [license_] = await licenses(client, account)
    assert license_["policy_code"] == policy["code"]


async def test_when_stripe_fails_the_event_stays_needs_refetch_and_reprocess_completes_it(
    client, account, fake_stripe
):
    secret = await connect(client, account, api_key=api_key())
    price, _ = await mapped_price(client, account)
    subscription = fake_stripe.put(stripe_subscription(price))
    fake_stripe.fail("/v1/subscriptions/", 500, times=3)

    response = await deliver(
        client, account, stripe_event("invoice.paid", stripe_invoice(subscription)), secret
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["outcome"] == "needs_refetch"
    assert result["refetch"] == {"object": "subscription", "id": subscription["id"]}
    assert (await ledger_row(client, account, result["id"]))["outcome"] == "needs_refetch"
    waiting = await client.get(
        "/v1/stripe/events", headers=account.headers, params={"outcome": "needs_refetch"}
    )
    assert [e["id"] for e in waiting.json()["data"]] == [result["id"]]
    assert await licenses(client, account) == []

    # A redelivery is a duplicate; reprocessing fetches again, now that Stripe answers.
    again = await deliver(client, account, stripe_event("invoice.paid", stripe_invoice(subscription)), secret)
    assert again.status_code == 200
    reprocessed = await client.post(f"/v1/stripe/events/{result['id']}/reprocess", headers=account.headers)
    assert reprocessed.status_code == 200, reprocessed.text
    assert reprocessed.json()["object"] == "stripe_event_result"
    assert reprocessed.json()["outcome"] == "applied", reprocessed.json()
    assert (await ledger_row(client, account, result["id"]))["outcome"] == "applied"
    assert len(await licenses(client, account)) == 1


async def test_an_unknown_object_at_stripe_leaves_the_event_needs_refetch(client, account, fake_stripe):
    secret = await connect(client, account, api_key=api_key())
    await mapped_price(client, account)
    subscription = stripe_subscription(new_id("price"))  # never put in the fake: Stripe answers 404
    response = await deliver(
        client, account, stripe_event("invoice.paid", stripe_invoice(subscription)), secret
    )
    assert response.status_code == 200, response.text
    assert response.json()["outcome"] == "needs_refetch"


async def test_without_an_api_key_needs_refetch_is_answered_as_is(client, account, fake_stripe):
    secret = await connect(client, account, webhook_secret=f"whsec_{secrets.token_hex(16)}")
    price, _ = await mapped_price(client, account)
    subscription = fake_stripe.put(stripe_subscription(price))
    response = await deliver(
        client, account, stripe_event("invoice.paid", stripe_invoice(subscription)), secret
    )
    assert response.status_code == 200, response.text
    assert response.json()["outcome"] == "needs_refetch"
    assert fake_stripe.requests == []
    reprocessed = await client.post(
        f"/v1/stripe/events/{response.json()['id']}/reprocess", headers=account.headers
    )
    assert reprocessed.status_code == 200, reprocessed.text
    assert reprocessed.json()["outcome"] == "needs_refetch"


async def test_reprocess_errors(client, account, fake_stripe):
    assert_error(
        await client.post(f"/v1/stripe/events/{uuid.uuid4()}/reprocess", headers=account.headers),
        404,
        "resource_missing",
    )
    assert_error(
        await client.get(f"/v1/stripe/events/{uuid.uuid4()}", headers=account.headers),
        404,
        "resource_missing",
    )
    secret = await connect(client, account, webhook_secret=f"whsec_{secrets.token_hex(16)}")
    thin = {
        "id": "evt_thin1",
        "object": "v2.core.event",
        "type": "v1.customer.updated",
        "data": {"object": {}},
    }
    invalid = await deliver(client, account, thin, secret)
    assert invalid.status_code == 400
    response = await client.post(
        f"/v1/stripe/events/{invalid.json()['id']}/reprocess", headers=account.headers
    )
    assert_error(response, 409, "invalid_state")


async def test_events_list_filters_and_hides_payloads(client, account):
    secret = await connect(client, account, webhook_secret=f"whsec_{secrets.token_hex(16)}")
    ignored = await deliver(
        client, account, stripe_event("customer.created", {"id": new_id("cus"), "object": "customer"}), secret
    )
    parked = await deliver(
        client,
        account,
        stripe_event("customer.subscription.created", stripe_subscription(new_id("price"))),
        secret,
    )
    assert (ignored.json()["outcome"], parked.json()["outcome"]) == ("ignored", "parked")
    everything = (await client.get("/v1/stripe/events", headers=account.headers)).json()["data"]
    assert [e["id"] for e in everything] == [parked.json()["id"], ignored.json()["id"]]
    assert all(e["payload"] is None for e in everything)
    assert everything[0]["object"] == "stripe_event"
    by_type = await client.get(
        "/v1/stripe/events", headers=account.headers, params={"type": "customer.created"}
    )
    assert [e["id"] for e in by_type.json()["data"]] == [ignored.json()["id"]]
    by_outcome = await client.get("/v1/stripe/events", headers=account.headers, params={"outcome": "parked"})
    assert [e["id"] for e in by_outcome.json()["data"]] == [parked.json()["id"]]
    page = await client.get("/v1/stripe/events", headers=account.headers, params={"limit": 1})
    assert page.json()["has_more"] is True
    bad = await client.get("/v1/stripe/events", headers=account.headers, params={"outcome": "duplicate"})
    assert_error(bad, 422, "invalid_parameter", "outcome")
    one = await ledger_row(client, account, parked.json()["id"])
    assert one["payload"]["type"] == "customer.subscription.created"
    assert one["subscription_id"] is not None and one["livemode"] is False


# Customer Portal sessions.


async def subscribed_license(client, account, fake_stripe, **connect_args) -> tuple[dict, str]:
    secret = await connect(client, account, api_key=api_key(), **connect_args)
    price, _ = await mapped_price(client, account)
    subscription = stripe_subscription(price)
    fake_stripe.put({"id": subscription["customer"], "object": "customer"})
    response = await deliver(
        client, account, stripe_event("customer.subscription.created", subscription), secret
    )
    assert response.json()["outcome"] == "applied", response.text
    [license_] = await licenses(client, account)
    return license_, subscription["customer"]


async def test_a_portal_session_opens_for_a_licenses_stripe_customer(client, account, fake_stripe):
    license_, customer = await subscribed_license(
        client, account, fake_stripe, portal_return_url="https://app.example.com/account"
    )
    response = await client.post(
        f"/v1/licenses/{license_['id']}/billing_portal_session", headers=account.headers
    )
    assert response.status_code == 200, response.text
    session = response.json()
    assert session["object"] == "billing_portal_session"
    assert session["url"].startswith("https://billing.stripe.test/p/session/bps_")
    [call] = fake_stripe.calls("POST", "/v1/billing_portal/sessions")
    assert call == {"customer": customer, "return_url": "https://app.example.com/account"}

    given = await client.post(
        f"/v1/licenses/{license_['id']}/billing_portal_session",
        headers=account.headers,
        json={"return_url": "https://app.example.com/elsewhere"},
    )
    assert given.status_code == 200, given.text
    assert fake_stripe.calls("POST", "/v1/billing_portal/sessions")[-1]["return_url"] == (
        "https://app.example.com/elsewhere"
    )


async def test_an_idempotency_key_gives_the_same_portal_session(client, account, fake_stripe):
    license_, _ = await subscribed_license(client, account, fake_stripe)
    path = f"/v1/licenses/{license_['id']}/billing_portal_session"
    headers = {**account.headers, "Idempotency-Key": "portal-1"}
    first = await client.post(path, headers=headers)
    second = await client.post(path, headers=headers)
    other = await client.post(path, headers={**account.headers, "Idempotency-Key": "portal-2"})
    assert first.status_code == second.status_code == other.status_code == 200
    assert first.json()["url"] == second.json()["url"] != other.json()["url"]


async def test_a_license_made_by_hand_uses_the_only_connected_mode(client, account, fake_stripe):
    await connect(client, account, api_key=api_key())
    policy = await make_policy(client, account)
    customer = new_id("cus")
    fake_stripe.put({"id": customer, "object": "customer"})
    made = await client.post("/v1/customers", headers=account.headers, json={"stripe_customer_id": customer})
    license_ = await client.post(
        "/v1/licenses",
        headers=account.headers,
        json={"policy_code": policy["code"], "customer_id": made.json()["id"]},
    )
    response = await client.post(
        f"/v1/licenses/{license_.json()['id']}/billing_portal_session", headers=account.headers
    )
    assert response.status_code == 200, response.text
    # With both modes connected the mode of a license made by hand is unknown.
    await connect(client, account, api_key=api_key("live"))
    response = await client.post(
        f"/v1/licenses/{license_.json()['id']}/billing_portal_session", headers=account.headers
    )
    assert_error(response, 409, "invalid_state", "license_id")


@pytest.mark.parametrize("case", ["no-stripe-customer", "no-api-key", "not-connected"])
async def test_a_portal_session_needs_a_stripe_customer_and_a_key(client, account, fake_stripe, case):
    if case == "no-api-key":
        await connect(client, account, webhook_secret=f"whsec_{secrets.token_hex(16)}")
    elif case == "no-stripe-customer":
        await connect(client, account, api_key=api_key())
    policy = await make_policy(client, account)
    body: dict = (
        {"external_id": "u1"} if case == "no-stripe-customer" else {"stripe_customer_id": new_id("cus")}
    )
    customer = await client.post("/v1/customers", headers=account.headers, json=body)
    license_ = await client.post(
        "/v1/licenses",
        headers=account.headers,
        json={"policy_code": policy["code"], "customer_id": customer.json()["id"]},
    )
    response = await client.post(
        f"/v1/licenses/{license_.json()['id']}/billing_portal_session", headers=account.headers
    )
    assert_error(response, 409, "invalid_state", "license_id")
    assert fake_stripe.calls("POST", "/v1/billing_portal/sessions") == []


async def test_portal_session_errors(client, account, fake_stripe, database_url):
    response = await client.post(
        f"/v1/licenses/{uuid.uuid4()}/billing_portal_session", headers=account.headers
    )
    assert_error(response, 404, "resource_missing", "license_id")
    license_, customer = await subscribed_license(client, account, fake_stripe)
    path = f"/v1/licenses/{license_['id']}/billing_portal_session"
    bad_url = await client.post(path, headers=account.headers, json={"return_url": "javascript:alert(1)"})
    assert_error(bad_url, 422, "invalid_parameter", "return_url")
    # Stripe does not know the customer.
    superuser(
        database_url,
        "update lic.customers set stripe_customer_id = 'cus_Gone1' where stripe_customer_id = %s",
        (customer,),
    )
    assert_error(await client.post(path, headers=account.headers), 422, "stripe_request_refused")
    fake_stripe.fail("/v1/billing_portal", 503, times=3)
    superuser(
        database_url,
        "update lic.customers set stripe_customer_id = %s where stripe_customer_id = 'cus_Gone1'",
        (customer,),
    )
    assert_error(await client.post(path, headers=account.headers), 502, "stripe_unavailable")
