"""The portal's billing button: a Stripe Customer Portal session for the signed-in customer's own
Stripe customer, returning to the portal, tested against the local fake Stripe."""

from __future__ import annotations

import secrets

from portal_support import add_customer, add_license, csrf_of, open_portal, sign_in
from stripe_support import connect, new_id


def api_key() -> str:
    return f"rk_test_{secrets.token_hex(24)}"


async def paying_customer(web, account, database_url, fake_stripe, address: str = "alice@example.com"):
    """A tenant connected to (fake) Stripe and a customer of it with a Stripe customer and a license."""
    await connect(web, account, api_key=api_key(), portal_return_url="https://app.example.com/account")
    tenant = await open_portal(web, account, database_url)
    stripe_customer = new_id("cus")
    fake_stripe.put({"id": stripe_customer, "object": "customer"})
    made = await web.post(
        "/v1/customers",
        headers=account.headers,
        json={"email": address, "name": "Alice", "stripe_customer_id": stripe_customer},
    )
    assert made.status_code == 201, made.text
    await add_license(web, tenant, made.json()["id"])
    return tenant, stripe_customer


async def test_the_billing_button_opens_the_stripe_portal_and_returns_here(
    web, account, database_url, fake_stripe, mail_dir, settings
):
    tenant, stripe_customer = await paying_customer(web, account, database_url, fake_stripe)
    await sign_in(web, tenant, "alice@example.com", mail_dir)
    page = await web.get(f"{tenant.base}/billing")
    assert page.status_code == 200
    assert "Manage billing" in page.text
    response = await web.post(f"{tenant.base}/billing", data={"csrf_token": csrf_of(page.text)})
    assert response.status_code == 303, response.text
    assert response.headers["location"].startswith("https://billing.stripe.test/p/session/bps_")
    [call] = fake_stripe.calls("POST", "/v1/billing_portal/sessions")
    # Back to this portal (built from LICENTRIC_PUBLIC_URL), not the connection's own return URL.
    assert call == {"customer": stripe_customer, "return_url": f"{settings.public_url}/portal/{tenant.slug}"}


async def test_billing_needs_the_csrf_token(web, account, database_url, fake_stripe, mail_dir):
    tenant, _ = await paying_customer(web, account, database_url, fake_stripe)
    await sign_in(web, tenant, "alice@example.com", mail_dir)
    assert (await web.post(f"{tenant.base}/billing")).status_code == 403
    assert fake_stripe.calls("POST", "/v1/billing_portal/sessions") == []


async def test_a_customer_without_stripe_gets_no_button(web, account, database_url, fake_stripe, mail_dir):
    await connect(web, account, api_key=api_key())
    tenant = await open_portal(web, account, database_url)
    bob = await add_customer(web, tenant, "bob@example.com")
    await add_license(web, tenant, bob)
    await sign_in(web, tenant, "bob@example.com", mail_dir)
    page = await web.get(f"{tenant.base}/billing")
    assert "Manage billing" not in page.text
    assert "no billing account" in page.text
    response = await web.post(f"{tenant.base}/billing", data={"csrf_token": csrf_of(page.text)})
    assert response.status_code == 409
    assert response.headers["content-type"].startswith("text/html")
    assert fake_stripe.calls("POST", "/v1/billing_portal/sessions") == []


async def test_stripe_failing_is_a_friendly_502(web, account, database_url, fake_stripe, mail_dir):
    tenant, _ = await paying_customer(web, account, database_url, fake_stripe)
    await sign_in(web, tenant, "alice@example.com", mail_dir)
    token = csrf_of((await web.get(f"{tenant.base}/billing")).text)
    fake_stripe.fail("/v1/billing_portal", 503, times=3)
    response = await web.post(f"{tenant.base}/billing", data={"csrf_token": token})
    assert response.status_code == 502
    assert "Billing is not available right now" in response.text
