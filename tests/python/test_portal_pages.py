"""The portal's pages for a signed-in customer: overview, license with entitlements and usage,
machines, team, billing page; branding; errors as HTML pages."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from license_helpers import set_license, superuser
from portal_support import (
    add_customer,
    add_license,
    confirm_link,
    csrf_of,
    html_of,
    link_in,
    mails_to,
    open_portal,
    portal_client,
    sign_in,
    text_of,
)
from support import assert_error, bearer, create_key


async def test_a_customer_signs_in_and_sees_the_plan(web, account, database_url, mail_dir):
    tenant = await open_portal(web, account, database_url)
    alice = await add_customer(web, tenant, "alice@example.com", "Alice")
    license_ = await add_license(web, tenant, alice, machines=2)
    confirmed = await sign_in(web, tenant, "alice@example.com", mail_dir)
    assert confirmed.headers["location"] == tenant.base
    page = await web.get(tenant.base)
    assert page.status_code == 200, page.text
    assert "Pro" in page.text and license_["key"] in page.text
    assert "Hello, Alice" in page.text
    detail = await web.get(f"{tenant.base}/licenses/{license_['id']}")
    assert detail.status_code == 200, detail.text
    machines = await web.get(f"{tenant.base}/licenses/{license_['id']}/machines")
    assert machines.status_code == 200, machines.text
    assert machines.text.count("/deactivate") == 2
    team = await web.get(f"{tenant.base}/licenses/{license_['id']}/team")
    assert team.status_code == 200, team.text
    billing = await web.get(f"{tenant.base}/billing")
    assert billing.status_code == 200, billing.text
    assert csrf_of(billing.text)
    assert len(mails_to(mail_dir, "alice@example.com")) == 1


# The tenant's settings: slug and branding (PUT /v1/portal/branding).


async def test_a_tenant_opens_its_portal_and_reads_its_settings(web, account, settings):
    before = await web.get("/v1/portal/branding", headers=account.headers)
    assert before.status_code == 200, before.text
    assert (before.json()["slug"], before.json()["url"], before.json()["custom_branding"]) == (
        None,
        None,
        False,
    )
    response = await web.put("/v1/portal/branding", headers=account.headers, json={"slug": "Widgets-Co"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "portal_settings"
    assert (body["slug"], body["url"]) == ("widgets-co", f"{settings.public_url}/portal/widgets-co")
    assert (await web.get("/v1/portal/branding", headers=account.headers)).json()["slug"] == "widgets-co"


async def test_branding_needs_the_starter_plan(web, account):
    response = await web.put(
        "/v1/portal/branding", headers=account.headers, json={"primary_color": "#112233"}
    )
    assert_error(response, 402, "plan_limit_reached")


@pytest.mark.parametrize(
    ("body", "status", "code", "param"),
    [
        ({"slug": "a"}, 422, "invalid_parameter", "slug"),
        ({"slug": "admin"}, 422, "invalid_parameter", "slug"),
        ({"primary_color": "red"}, 422, "invalid_parameter", "primary_color"),
        ({"logo_url": "http://example.com/logo.png"}, 422, "invalid_parameter", "logo_url"),
        ({"colour": "#000000"}, 422, "invalid_parameter", "colour"),
    ],
)
async def test_bad_portal_settings_are_refused(web, make_account, body, status, code, param):
    account = make_account(plan="starter")
    assert_error(
        await web.put("/v1/portal/branding", headers=account.headers, json=body), status, code, param
    )


async def test_a_slug_belongs_to_one_account(web, make_account):
    first, second = make_account(), make_account()
    slug = f"taken-{uuid.uuid4().hex[:6]}"
    assert (
        await web.put("/v1/portal/branding", headers=first.headers, json={"slug": slug})
    ).status_code == 200
    response = await web.put("/v1/portal/branding", headers=second.headers, json={"slug": slug})
    assert_error(response, 409, "already_exists")


async def test_a_null_slug_closes_the_portal(web, account, database_url):
    tenant = await open_portal(web, account, database_url)
    assert (await web.get(f"{tenant.base}/login")).status_code == 200
    closed = await web.put("/v1/portal/branding", headers=account.headers, json={"slug": None})
    assert closed.json()["slug"] is None
    response = await web.get(f"{tenant.base}/login")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")


async def test_a_publishable_key_cannot_change_the_portal(web, account):
    key = await create_key(web, account.headers, kind="publishable")
    response = await web.put("/v1/portal/branding", headers=bearer(key["secret"]), json={"slug": "pk-try"})
    assert_error(response, 403, "forbidden")


async def test_a_starter_portal_shows_its_brand_in_pages_and_mail(web, make_account, database_url, mail_dir):
    account = make_account("Widgets Inc", plan="starter")
    tenant = await open_portal(
        web,
        account,
        database_url,
        logo_url="https://cdn.example.com/widgets.png",
        primary_color="#FFD700",
        accent_color="#123456",
        product_name="Widgets Cloud",
    )
    await add_customer(web, tenant, "alice@example.com", "Alice")
    page = await web.get(f"{tenant.base}/login")
    assert "Sign in to Widgets Cloud" in page.text
    assert 'src="https://cdn.example.com/widgets.png"' in page.text
    assert "Customer portal by Licentric" not in page.text
    theme = await web.get(f"{tenant.base}/theme.css")
    assert theme.status_code == 200
    assert theme.headers["content-type"].startswith("text/css")
    # Gold is too pale for white text or links: ink on it, ink for links; the accent stays.
    assert "--brand: #ffd700;" in theme.text and "--on-brand: #111827;" in theme.text
    assert "--link: #111827;" in theme.text and "--accent: #123456;" in theme.text
    await sign_in(web, tenant, "alice@example.com", mail_dir)
    [message] = mails_to(mail_dir, "alice@example.com")
    assert str(message["From"]).startswith("Widgets Cloud <")
    assert message["Subject"] == "Your sign-in link for Widgets Cloud"
    assert "https://cdn.example.com/widgets.png" in html_of(message)
    assert "background:#ffd700;color:#111827" in html_of(message)
    # Dropped to free: the default look again, whatever is stored.
    superuser(database_url, "update lic.accounts set plan = 'free' where account_id = %s", (account.id,))
    assert "Widgets Cloud" not in (await web.get(f"{tenant.base}/login")).text
    assert "--brand: #3730a3;" in (await web.get(f"{tenant.base}/theme.css")).text


async def test_a_free_portal_has_licentrics_look(web, account, database_url):
    tenant = await open_portal(web, account, database_url)
    page = await web.get(f"{tenant.base}/login")
    assert "Sign in to Test account" in page.text
    assert "Customer portal by Licentric" in page.text
    assert "<img" not in page.text
    css = await web.get("/portal/static/site.css")
    assert css.status_code == 200 and ":focus-visible" in css.text


# Errors and signing in.


async def test_an_unknown_portal_is_a_404_page(web):
    # (Signed out, /portal/no-such-portal itself sends to its sign-in form, which is this 404.)
    for path in (
        "/portal/no-such-portal/login",
        "/portal/no-such-portal/x/y",
        "/portal/no-such-portal/theme.css",
    ):
        response = await web.get(path)
        assert response.status_code == 404, path
        assert response.headers["content-type"].startswith("text/html")
        assert "<h1" in response.text


async def test_signed_out_pages_go_to_the_sign_in_form(web, account, database_url):
    tenant = await open_portal(web, account, database_url)
    for path in ("", "/billing", f"/licenses/{uuid.uuid4()}", f"/licenses/{uuid.uuid4()}/team"):
        response = await web.get(tenant.base + path)
        assert response.status_code == 303, path
        assert response.headers["location"] == f"{tenant.base}/login"


async def test_a_signed_in_visitor_of_the_sign_in_form_goes_to_the_overview(
    web, account, database_url, mail_dir
):
    tenant = await open_portal(web, account, database_url)
    await add_customer(web, tenant, "alice@example.com")
    await sign_in(web, tenant, "alice@example.com", mail_dir)
    response = await web.get(f"{tenant.base}/login")
    assert (response.status_code, response.headers["location"]) == (303, tenant.base)


async def test_the_portal_is_not_in_the_openapi_document(web):
    paths = (await web.get("/schema/openapi.json")).json()["paths"]
    assert not [path for path in paths if path.startswith("/portal")]
    assert "/v1/portal/branding" in paths


# Overview, machines, team.


async def test_a_license_in_payment_grace_shows_a_banner(web, account, database_url, mail_dir):
    tenant = await open_portal(web, account, database_url)
    alice = await add_customer(web, tenant, "alice@example.com")
    license_ = await add_license(web, tenant, alice)
    set_license(
        database_url, license_["id"], status="past_due", grace_ends_at=datetime.now(UTC) + timedelta(days=3)
    )
    await sign_in(web, tenant, "alice@example.com", mail_dir)
    page = await web.get(tenant.base)
    assert "did not go through" in page.text
    assert 'role="alert"' in page.text
    assert "Payment due" in page.text
    set_license(database_url, license_["id"], grace_ends_at=datetime.now(UTC) - timedelta(hours=1))
    assert "is overdue" in (await web.get(tenant.base)).text


async def test_a_machine_moves_to_another_license_the_customer_owns(web, account, database_url, mail_dir):
    tenant = await open_portal(web, account, database_url)
    alice = await add_customer(web, tenant, "alice@example.com")
    source = await add_license(web, tenant, alice, machines=1)
    target = await add_license(web, tenant, alice)
    await sign_in(web, tenant, "alice@example.com", mail_dir)
    page = await web.get(f"{tenant.base}/licenses/{source['id']}/machines")
    machine = page.text.split("/machines/")[1].split("/")[0]
    assert f'<option value="{target["id"]}">' in page.text
    moved = await web.post(
        f"{tenant.base}/licenses/{source['id']}/machines/{machine}/transfer",
        data={"csrf_token": csrf_of(page.text), "license_id": target["id"]},
    )
    assert moved.status_code == 303
    assert moved.headers["location"].endswith("/machines?done=transferred")
    [row] = superuser(database_url, "select license_id::text from lic.machines where id = %s", (machine,))
    assert row["license_id"] == target["id"]
    after = await web.get(moved.headers["location"])
    assert "The machine moved to the other license." in after.text


async def test_a_full_license_refuses_a_transfer_beside_the_form(web, account, database_url, mail_dir):
    tenant = await open_portal(web, account, database_url, max_machines=1)
    alice = await add_customer(web, tenant, "alice@example.com")
    source = await add_license(web, tenant, alice, machines=1)
    target = await add_license(web, tenant, alice, machines=1)
    await sign_in(web, tenant, "alice@example.com", mail_dir)
    page = await web.get(f"{tenant.base}/licenses/{source['id']}/machines")
    machine = page.text.split("/machines/")[1].split("/")[0]
    refused = await web.post(
        f"{tenant.base}/licenses/{source['id']}/machines/{machine}/transfer",
        data={"csrf_token": csrf_of(page.text), "license_id": target["id"]},
    )
    assert refused.status_code == 409
    assert 'role="alert"' in refused.text and "Machines" in refused.text


async def test_an_owner_invites_and_removes_a_member_within_the_seats(web, account, database_url, mail_dir):
    tenant = await open_portal(web, account, database_url, max_users=2)
    alice = await add_customer(web, tenant, "alice@example.com", "Alice")
    license_ = await add_license(web, tenant, alice)
    await sign_in(web, tenant, "alice@example.com", mail_dir)
    team = f"{tenant.base}/licenses/{license_['id']}/team"
    token = csrf_of((await web.get(team)).text)
    invited = await web.post(team, data={"csrf_token": token, "email": "bob@example.com", "name": "Bob"})
    assert (invited.status_code, invited.headers["location"]) == (303, f"{team}?done=invited")
    [invitation] = mails_to(mail_dir, "bob@example.com")
    assert invitation["Subject"] == "You have a seat on Test account"
    assert "Alice gave you a seat on their Pro license" in text_of(invitation)
    # The seats are full now (the owner holds one).
    full = await web.post(team, data={"csrf_token": token, "email": "carol@example.com"})
    assert full.status_code == 409
    assert "seats" in full.text and 'value="carol@example.com"' in full.text
    bob = superuser(
        database_url,
        "select id::text from lic.customers where account_id = %s and email = 'bob@example.com'",
        (account.id,),
    )
    removed = await web.post(f"{team}/{bob[0]['id']}/remove", data={"csrf_token": token})
    assert (removed.status_code, removed.headers["location"]) == (303, f"{team}?done=removed")
    page = await web.get(removed.headers["location"])
    assert "The member was removed" in page.text and "bob@example.com" not in page.text
    # The owner's own seat stays.
    own = await web.post(f"{team}/{alice}/remove", data={"csrf_token": token})
    assert own.status_code == 409


async def test_an_invitee_signs_in_from_the_invitation_as_a_member(
    settings, web, account, database_url, mail_dir
):
    tenant = await open_portal(web, account, database_url)
    alice = await add_customer(web, tenant, "alice@example.com", "Alice")
    license_ = await add_license(web, tenant, alice, machines=1)
    await sign_in(web, tenant, "alice@example.com", mail_dir)
    team = f"{tenant.base}/licenses/{license_['id']}/team"
    await web.post(team, data={"csrf_token": csrf_of((await web.get(team)).text), "email": "bob@example.com"})
    [invitation] = mails_to(mail_dir, "bob@example.com")
    async with portal_client(settings, mail_dir) as bob:
        confirmed = await confirm_link(bob, link_in(invitation))
        assert confirmed.status_code == 303
        overview = await bob.get(tenant.base)
        assert license_["key"] in overview.text and "Member" in overview.text
        page = await bob.get(team)
        assert "Only an owner of this license can invite" in page.text
        refused = await bob.post(team, data={"csrf_token": csrf_of(page.text), "email": "eve@example.com"})
        assert refused.status_code == 403
        assert "only an owner" in refused.text
        # A member may still deactivate a machine of the shared license.
        machines = await bob.get(f"{tenant.base}/licenses/{license_['id']}/machines")
        machine = machines.text.split("/machines/")[1].split("/")[0]
        gone = await bob.post(
            f"{tenant.base}/licenses/{license_['id']}/machines/{machine}/deactivate",
            data={"csrf_token": csrf_of(machines.text)},
        )
        assert gone.status_code == 303


async def test_names_are_escaped_in_pages_and_mail(web, account, database_url, mail_dir):
    tenant = await open_portal(web, account, database_url)
    evil = '<script>alert("x")</script>'
    alice = await add_customer(web, tenant, "alice@example.com", evil)
    await add_license(web, tenant, alice)
    await sign_in(web, tenant, "alice@example.com", mail_dir)
    page = await web.get(tenant.base)
    assert evil not in page.text and "&lt;script&gt;" in page.text
    [message] = mails_to(mail_dir, "alice@example.com")
    assert evil not in html_of(message) and "&lt;script&gt;" in html_of(message)
    assert "script-src" not in page.headers["content-security-policy"]  # default-src 'none': no script runs
