"""The portal in a real browser: Playwright driving Debian's headless Chromium against a real
`licentric serve`, with JavaScript turned off (the portal has none). Request a link, read it from the
development mail backend, open it, confirm, see the plan and the usage chart, deactivate a machine,
invite a member, open billing, sign out. A screenshot of each page is saved under
tests/artifacts/portal/ (git-ignored)."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest
from conftest import needs_chromium

from license_helpers import make_entitlement
from portal_support import add_customer, add_license, add_usage, link_in, mails_to, open_portal

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "portal"

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def artifacts() -> Path:
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    return ARTIFACTS


async def check_page(page, name: str, artifacts: Path) -> None:
    """Landmarks, a label for every field, no script; then the screenshot."""
    assert await page.locator("header").count() == 1
    assert await page.locator("main#main").count() == 1
    assert await page.locator("script").count() == 0
    for field in await page.locator("input:not([type=hidden]), select").all():
        field_id = await field.get_attribute("id")
        assert field_id and await page.locator(f'label[for="{field_id}"]').count() == 1, field_id
    await page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)


async def test_a_customer_uses_the_portal_in_chromium(served, browser, account, database_url, artifacts):
    base_url, mail_dir = served
    async with httpx.AsyncClient(base_url=base_url) as api:
        tenant = await open_portal(api, account, database_url, max_machines=3, max_users=3)
        alice = await add_customer(api, tenant, "alice@example.com", "Alice Example")
        license_ = await add_license(api, tenant, alice, machines=2)
        await add_usage(api, tenant, license_["id"])
    for code in ("export", "priority-support"):
        make_entitlement(database_url, account.id, code, [tenant.policy_code])

    context = await browser.new_context(java_script_enabled=False, viewport={"width": 1100, "height": 800})
    page = await context.new_page()
    portal = f"{base_url}{tenant.base}"

    # Ask for a link.
    await page.goto(f"{portal}/login")
    # The first Tab reaches the skip link.
    await page.keyboard.press("Tab")
    assert await page.locator(".skip").evaluate("link => link === document.activeElement")
    await check_page(page, "01-login", artifacts)
    await page.get_by_label("Email address").fill("alice@example.com")
    await page.get_by_role("button", name="Email me a sign-in link").click()
    await page.get_by_role("heading", name="Check your email").wait_for()
    await check_page(page, "02-link-sent", artifacts)

    # Read it from the development mail backend and open it: a confirm page, nothing spent.
    [message] = mails_to(mail_dir, "alice@example.com")
    link = link_in(message)
    assert link.startswith(f"{portal}/login/confirm?token=")
    await page.goto(link)
    await page.get_by_text("a***@example.com").wait_for()
    await check_page(page, "03-confirm", artifacts)
    await page.get_by_role("button", name="Sign in").click()

    # The overview: the plan.
    await page.get_by_role("heading", name="Your licenses").wait_for()
    assert page.url.rstrip("/") == portal
    assert await page.get_by_role("link", name="Pro", exact=True).count() == 1
    assert license_["key"] in await page.content()
    await check_page(page, "04-overview", artifacts)
    await page.set_viewport_size({"width": 390, "height": 844})
    await page.screenshot(path=str(artifacts / "04b-overview-phone.png"), full_page=True)
    await page.set_viewport_size({"width": 1100, "height": 800})

    # The license: entitlements and the usage chart with its text alternative.
    await page.get_by_role("link", name="Plan and usage of Pro").click()
    await page.get_by_role("heading", name="Usage this period").wait_for()
    assert await page.locator("svg[role=img] title").text_content() == (
        "Usage against budgets for the current period"
    )
    assert await page.get_by_role("row", name="AI tokens").count() == 1
    assert await page.get_by_text("(priority-support)").count() == 1
    await check_page(page, "05-license-usage", artifacts)

    # Machines: deactivate one.
    await page.get_by_role("link", name="Machines", exact=True).click()
    await page.get_by_role("heading", name="Machines").wait_for()
    await check_page(page, "06-machines", artifacts)
    buttons = page.get_by_role("button", name="Deactivate")
    assert await buttons.count() == 2
    await buttons.first.click()
    await page.get_by_text("The machine was deactivated.").wait_for()
    assert await page.get_by_role("button", name="Deactivate").count() == 1
    await check_page(page, "07-machine-deactivated", artifacts)

    # Team: invite a member, who gets a sign-in link by mail.
    await page.get_by_role("link", name="Team", exact=True).click()
    await page.get_by_role("heading", name="Invite someone").wait_for()
    await check_page(page, "08-team", artifacts)
    await page.get_by_label("Email address").fill("bob@example.com")
    await page.get_by_label("Name (optional)").fill("Bob Builder")
    await page.get_by_role("button", name="Invite").click()
    await page.get_by_text("They have a seat now").wait_for()
    assert await page.get_by_role("rowheader", name="Bob Builder").count() == 1
    await check_page(page, "09-member-invited", artifacts)
    [invitation] = mails_to(mail_dir, "bob@example.com")
    assert "Alice Example gave you a seat" in invitation.get_body(("plain",)).get_content()
    assert link_in(invitation).startswith(f"{portal}/login/confirm?token=")

    # Billing: no Stripe customer here, so no button.
    await page.get_by_role("link", name="Billing").click()
    await page.get_by_role("heading", name="Billing", exact=True).wait_for()
    await check_page(page, "10-billing", artifacts)

    # Sign out: the session is gone, the overview sends the browser to the sign-in form.
    await page.get_by_role("button", name="Sign out").click()
    await page.get_by_text("You have signed out.").wait_for()
    await check_page(page, "11-signed-out", artifacts)
    await page.goto(portal)
    assert page.url == f"{portal}/login"
    await context.close()


async def test_a_branded_portal_in_chromium(served, browser, make_account, database_url, artifacts):
    base_url, _ = served
    account = make_account("Widgets Inc", plan="starter")
    async with httpx.AsyncClient(base_url=base_url) as api:
        tenant = await open_portal(
            api,
            account,
            database_url,
            primary_color="#0b6e4f",
            accent_color="#f59e0b",
            product_name="Widgets Cloud",
        )
    context = await browser.new_context(java_script_enabled=False, viewport={"width": 1100, "height": 700})
    page = await context.new_page()
    await page.goto(f"{base_url}{tenant.base}/login")
    await page.get_by_role("heading", name="Sign in to Widgets Cloud").wait_for()
    header = page.locator("header.masthead")
    assert await header.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(11, 110, 79)"
    await check_page(page, "12-branded-login", artifacts)
    await context.close()
