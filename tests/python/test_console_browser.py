"""The console in a real browser: Playwright driving Debian's headless Chromium, JavaScript off, against a
real `licentric serve` whose Stripe is the fake one. The founder's core flow (issue 13): sign in by the
mailed link → the getting-started checklist → a policy and two entitlements → the matrix ticked →
Stripe connected with a restricted key and a price picked from the listing mapped → a signed
checkout.session.completed → the license on the customer's page with its entitlements → suspended →
the audit log names who did it. Then every page at desktop and phone widths, saved under
tests/artifacts/console/ (git-ignored)."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import httpx
from conftest import needs_chromium
from console_support import add_member, console_link

from fake_stripe import endpoint_secret
from stripe_support import deliver, paid_checkout, stripe_event

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "console"
WIDTHS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}

pytestmark = needs_chromium


async def check_page(page, name: str) -> None:
    """Landmarks, a name for every field, no script; then a screenshot."""
    await page.wait_for_load_state()  # a click starts a navigation; a loaded machine may not have finished it
    assert await page.locator("header").count() == 1
    assert await page.locator("main#main").count() == 1
    assert await page.locator("script").count() == 0
    for field in await page.locator("input:not([type=hidden]), select").all():
        field_id = await field.get_attribute("id")
        labelled = field_id and await page.locator(f'label[for="{field_id}"]').count() == 1
        assert labelled or await field.get_attribute("aria-label"), field_id
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def catalogue(fake_stripe) -> None:
    """Three products with a monthly price each; one is "Pro plan" (price_pro)."""
    for code, name in (("basic", "Basic"), ("pro", "Pro plan"), ("team", "Team")):
        fake_stripe.put({"id": f"prod_{code}", "object": "product", "name": name, "active": True})
        fake_stripe.put(
            {
                "id": f"price_{code}",
                "object": "price",
                "product": f"prod_{code}",
                "unit_amount": 1500,
                "currency": "usd",
                "recurring": {"interval": "month"},
                "active": True,
            }
        )


async def test_the_founders_core_flow_in_chromium(served, browser, account, database_url, fake_stripe):
    base_url, mail_dir = served
    owner = f"founder-{secrets.token_hex(4)}@example.com"
    add_member(database_url, account.id, owner, "owner", "Fay Founder")
    catalogue(fake_stripe)
    context = await browser.new_context(java_script_enabled=False, viewport=WIDTHS["desktop"])
    page = await context.new_page()
    console = f"{base_url}/console"

    # Sign in by the mailed link.
    await page.goto(base_url)
    assert page.url == f"{console}/login", "the root leads to the console's sign-in"
    await check_page(page, "01-login")
    await page.get_by_label("Email address").fill(owner)
    await page.get_by_role("button", name="Email me a sign-in link").click()
    await check_page(page, "02-link-sent")
    await page.goto(console_link(mail_dir, owner))
    await check_page(page, "03-confirm")
    await page.get_by_role("button", name="Sign in").click()

    # The getting-started checklist.
    await page.get_by_role("heading", name="Getting started").wait_for()
    assert await page.get_by_text("0 of 6 done").count() == 1

    # A policy, two entitlements, the matrix ticked.
    await page.get_by_role("link", name="Plans", exact=True).click()
    await page.get_by_label("Code").first.fill("pro")
    await page.get_by_label("Name").first.fill("Pro")
    await page.get_by_role("button", name="Create plan").click()
    await page.get_by_text("The policy was created.").wait_for()
    for code in ("export", "sso"):
        await page.locator("#entitlement-code").fill(code)
        await page.locator("#entitlement-name").fill(code.upper())
        await page.get_by_role("button", name="Create entitlement").click()
        await page.get_by_text("The entitlement was created.").wait_for()
    for code in ("export", "sso"):
        await page.get_by_label(f"Pro includes {code}").check()
    await page.get_by_role("button", name="Save the matrix").click()
    await page.get_by_text("The plans' entitlements were saved.").wait_for()
    assert await page.get_by_label("Pro includes sso").is_checked()
    await check_page(page, "04-plans")
    await page.get_by_role("link", name="Overview").click()
    await page.get_by_text("2 of 6 done").wait_for()

    # Stripe: connect test mode with a restricted key, pick the Pro price from the listing, map it.
    await page.get_by_role("link", name="Stripe", exact=True).click()
    await page.locator("#key-test").fill(f"rk_test_{secrets.token_hex(24)}")
    await page.get_by_role("button", name="Connect test mode").click()
    await page.get_by_text("Stripe is connected for this mode.").wait_for()
    signing_secret = endpoint_secret(f"/v1/stripe/webhooks/{account.id}")
    assert signing_secret, "Licentric made the webhook endpoint in Stripe"
    await check_page(page, "05-stripe")
    await page.get_by_role("link", name="Pick a product or price to map").first.click()
    await page.get_by_label("Product name").fill("Pro plan")
    await page.get_by_role("button", name="Search").click()
    await page.wait_for_url("**q=Pro+plan**")
    await page.wait_for_load_state()
    assert await page.get_by_role("button", name="Map").count() == 1
    await check_page(page, "06-stripe-products")
    await page.get_by_role("button", name="Map").click()
    await page.get_by_text("The price now makes licenses of that policy.").wait_for()

    # A signed checkout.session.completed, as Stripe sends it.
    session = paid_checkout(fake_stripe, "buyer@example.com", "price_pro", "prod_pro")
    async with httpx.AsyncClient(base_url=base_url) as stripe_side:
        delivered = await deliver(
            stripe_side, account, stripe_event("checkout.session.completed", session), signing_secret
        )
    assert delivered.json()["outcome"] == "applied", delivered.text

    # The checklist has ticked itself off, every step: it is gone.
    await page.get_by_role("link", name="Overview").click()
    await page.wait_for_url(console)
    await page.wait_for_load_state()
    assert await page.get_by_role("heading", name="Getting started").count() == 0
    await check_page(page, "07-overview")

    # The license on the customer's page with its entitlements; suspend it behind a confirmation.
    await page.get_by_role("link", name="Customers", exact=True).click()
    await page.get_by_label("Email, external id or license key").fill("buyer@example.com")
    await page.get_by_role("button", name="Search").click()
    await check_page(page, "08-customers")
    await page.get_by_role("link", name="buyer@example.com").click()
    await page.get_by_role("heading", name="Customer", exact=True).wait_for()
    content = await page.content()
    assert "<code>export</code>" in content and "<code>sso</code>" in content
    await check_page(page, "09-customer")
    await page.get_by_role("link", name="Suspend…").click()
    await check_page(page, "10-confirm-suspend")
    await page.get_by_label("Reason (optional)").fill("chargeback")
    await page.get_by_role("button", name="Yes, suspend").click()
    await page.get_by_text("The license was suspended.").wait_for()
    assert await page.locator(".badge-suspended").count() >= 1

    # The audit log names the founder.
    await page.get_by_role("link", name="Audit log").click()
    await page.get_by_role("heading", name="Audit log").wait_for()
    row = page.get_by_role("row").filter(has_text="license.suspended")
    assert await row.count() == 1
    assert owner in await row.inner_text()
    await check_page(page, "11-audit")

    # Every page, at desktop and phone widths.
    pages = {
        "overview": "",
        "plans": "/plans",
        "stripe": "/stripe",
        "stripe-products": "/stripe/products?mode=test",
        "stripe-events": "/stripe/events",
        "customers": "/customers",
        "usage": "/usage",
        "developers": "/developers",
        "settings": "/settings",
        "audit": "/audit",
    }
    for width, viewport in WIDTHS.items():
        await page.set_viewport_size(viewport)
        for name, path in pages.items():
            answer = await page.goto(f"{console}{path}")
            assert answer and answer.status == 200, name
            await check_page(page, f"page-{name}-{width}")
        await page.goto(f"{console}/customers?q=buyer@example.com")
        await page.get_by_role("link", name="buyer@example.com").click()
        await check_page(page, f"page-customer-{width}")
    assert re.search(r"/console/customers/[0-9a-f-]{36}$", page.url)
    await context.close()
