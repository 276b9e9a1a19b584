"""The console's Stripe page (issue 13 page 3): connect a mode with a restricted key (Licentric makes the
webhook endpoint), pick a price from the connected account's products (fetched from Stripe, a page at a
time, searchable by name), map it to a plan, and a signed checkout.session.completed makes a license
that the customer's page shows with its entitlements."""

from __future__ import annotations

import re
import secrets

from console_support import console_sign_in, post_form

from fake_stripe import endpoint_secret
from license_helpers import superuser
from stripe_support import deliver, paid_checkout, stripe_event


def catalogue(fake_stripe, products: int = 12) -> None:
    """products products named Product 1…, each with a monthly price; one of them is "Pro plan"."""
    for index in range(products):
        name = "Pro plan" if index == 3 else f"Product {index}"
        fake_stripe.put({"id": f"prod_{index}x", "object": "product", "name": name, "active": True})
        fake_stripe.put(
            {
                "id": f"price_{index}m",
                "object": "price",
                "product": f"prod_{index}x",
                "unit_amount": 1500,
                "currency": "usd",
                "recurring": {"interval": "month"},
                "active": True,
            }
        )


async def test_connect_pick_map_and_sell(web, owner, account, database_url, mail_dir, fake_stripe):
    catalogue(fake_stripe)
    await console_sign_in(web, owner, mail_dir)
    await post_form(web, "/console/plans", "/console/plans", {"code": "pro", "name": "Pro"})
    await post_form(web, "/console/plans", "/console/entitlements", {"code": "export", "name": "Export"})
    plans = await web.get("/console/plans")
    [policy_id] = re.findall(r'name="shown" value="([0-9a-f-]{36}):export"', plans.text)
    await post_form(
        web,
        "/console/plans",
        "/console/plans/matrix",
        {"shown": [f"{policy_id}:export"], "cell": [f"{policy_id}:export"]},
    )

    connected = await post_form(
        web,
        "/console/stripe",
        "/console/stripe/connect",
        {"mode": "test", "api_key": f"rk_test_{secrets.token_hex(24)}"},
    )
    assert connected.status_code == 303, connected.text
    secret = endpoint_secret(f"/v1/stripe/webhooks/{account.id}")
    assert secret, "Licentric made the webhook endpoint in Stripe"
    page = await web.get("/console/stripe")
    assert "rk_test_…" in page.text

    first = await web.get("/console/stripe/products?mode=test")
    assert first.status_code == 200, first.text
    assert first.text.count('name="stripe_price_id"') == 10, "one page of ten products, each with its price"
    more = re.search(r'href="(/console/stripe/products\?mode=test&amp;after=prod_[0-9]+x)"', first.text)
    assert more, "a link to the next page"
    second = await web.get(more.group(1).replace("&amp;", "&"))
    assert second.text.count('name="stripe_price_id"') == 2
    found = await web.get("/console/stripe/products?mode=test&q=pro+plan")
    assert found.text.count('name="stripe_price_id"') == 1
    assert "price_3m" in found.text

    mapped = await post_form(
        web,
        "/console/stripe/products?mode=test&q=pro+plan",
        "/console/stripe/mappings",
        {"stripe_price_id": "price_3m", "policy_id": policy_id},
    )
    assert mapped.status_code == 303, mapped.text
    assert (
        "mapped to <strong>pro</strong>"
        in (await web.get("/console/stripe/products?mode=test&q=pro+plan")).text
    )

    session = paid_checkout(fake_stripe, "buyer@example.com", "price_3m", "prod_3x")
    delivered = await deliver(web, account, stripe_event("checkout.session.completed", session), secret)
    assert delivered.json()["outcome"] == "applied", delivered.json()

    events = await web.get("/console/stripe/events")
    assert "checkout.session.completed" in events.text
    overview = await web.get("/console")
    assert overview.status_code == 200, "the overview shows a mode's last event (a date in JSON)"
    assert "none yet" in overview.text and "UTC" in overview.text
    customers = await web.get("/console/customers?q=buyer@example.com")
    [customer_id] = re.findall(r'href="/console/customers/([0-9a-f-]{36})"', customers.text)
    page = await web.get(f"/console/customers/{customer_id}")
    assert page.status_code == 200, page.text
    assert "<code>export</code>" in page.text and "from the plan" in page.text
    [license_id] = [
        row["id"]
        for row in superuser(
            database_url, "select id::text from lic.licenses where account_id = %s", (account.id,)
        )
    ]
    assert f"/console/licenses/{license_id}/suspend" in page.text


async def test_a_mode_connected_by_a_signing_secret_has_no_picker(web, owner, mail_dir):
    await console_sign_in(web, owner, mail_dir)
    connected = await post_form(
        web,
        "/console/stripe",
        "/console/stripe/connect",
        {"mode": "live", "webhook_secret": f"whsec_{secrets.token_hex(16)}"},
    )
    assert connected.status_code == 303, connected.text
    picker = await web.get("/console/stripe/products?mode=live")
    assert picker.status_code == 409
    assert "signing secret only" in picker.text
