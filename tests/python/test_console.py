"""The tenant console (issue 13): signing in by the mailed link, and each page doing its work through
api.* calls in the member's context: the overview's checklist, the plans matrix, customers and license
actions behind confirmations, the audit log. Security: tests/python/test_console_security.py."""

from __future__ import annotations

import re

from console_support import console_sign_in, page_csrf, post_form

from license_helpers import make_policy


async def test_the_root_opens_the_console(web):
    response = await web.get("/")
    assert response.status_code == 303
    assert response.headers["location"] == "/console"
    signed_out = await web.get("/console")
    assert signed_out.status_code == 303
    assert signed_out.headers["location"] == "/console/login"


async def test_a_member_signs_in_by_the_mailed_link_and_sees_the_checklist(web, owner, mail_dir):
    confirmed = await console_sign_in(web, owner, mail_dir)
    assert confirmed.headers["location"] == "/console"
    overview = await web.get("/console")
    assert overview.status_code == 200, overview.text
    assert "Getting started" in overview.text
    assert "0 of 6 done" in overview.text
    assert f"Signed in as {owner} (owner)" in overview.text


async def test_the_checklist_ticks_itself_off(web, owner, mail_dir, account, database_url):
    await console_sign_in(web, owner, mail_dir)
    make_policy(database_url, account.id, "pro")
    overview = await web.get("/console")
    assert "1 of 6 done" in overview.text
    assert re.search(r"✓</span> Make a plan", overview.text)


async def test_plans_and_the_matrix_are_edited_in_one_place(web, owner, mail_dir, account):
    await console_sign_in(web, owner, mail_dir)
    made = await post_form(web, "/console/plans", "/console/plans", {"code": "pro", "name": "Pro"})
    assert made.status_code == 303, made.text
    for code in ("export", "sso"):
        made = await post_form(
            web, "/console/plans", "/console/entitlements", {"code": code, "name": code.upper()}
        )
        assert made.status_code == 303, made.text
    page = await web.get("/console/plans")
    [policy_id] = re.findall(r'name="shown" value="([0-9a-f-]{36}):export"', page.text)
    cells = [f"{policy_id}:export", f"{policy_id}:sso"]
    saved = await post_form(
        web, "/console/plans", "/console/plans/matrix", {"shown": cells, "cell": cells[:1]}
    )
    assert saved.status_code == 303, saved.text
    policy = await web.get(f"/v1/license_policies/{policy_id}", headers=account.headers)
    assert policy.json()["entitlements"] == ["export"]
    # Untick export, tick sso: the matrix is the whole truth of what it shows.
    await post_form(web, "/console/plans", "/console/plans/matrix", {"shown": cells, "cell": cells[1:]})
    policy = await web.get(f"/v1/license_policies/{policy_id}", headers=account.headers)
    assert policy.json()["entitlements"] == ["sso"]
    page = await web.get("/console/plans?done=matrix_saved")
    assert "The plans&#39; entitlements were saved." in page.text or "entitlements were saved" in page.text


async def test_a_license_is_suspended_behind_a_confirmation(web, owner, mail_dir, account, database_url):
    await console_sign_in(web, owner, mail_dir)
    make_policy(database_url, account.id, "pro")
    customer = await web.post("/v1/customers", headers=account.headers, json={"email": "buyer@example.com"})
    license_ = await web.post(
        "/v1/licenses",
        headers=account.headers,
        json={"policy_code": "pro", "customer_id": customer.json()["id"]},
    )
    license_id = license_.json()["id"]
    found = await web.get("/console/customers?q=buyer@example.com")
    assert f"/console/customers/{customer.json()['id']}" in found.text
    page = await web.get(f"/console/customers/{customer.json()['id']}")
    assert license_.json()["key"] in page.text
    assert f"/console/licenses/{license_id}/suspend" in page.text
    # The link opens a confirmation; only its POST suspends.
    confirm = await web.get(f"/console/licenses/{license_id}/suspend")
    assert confirm.status_code == 200
    assert (await web.get(f"/v1/licenses/{license_id}", headers=account.headers)).json()["status"] == "active"
    done = await post_form(
        web,
        f"/console/licenses/{license_id}/suspend",
        f"/console/licenses/{license_id}/suspend",
        {"reason": "fraud"},
    )
    assert done.status_code == 303, done.text
    assert (await web.get(f"/v1/licenses/{license_id}", headers=account.headers)).json()[
        "status"
    ] == "suspended"


# The members branch has not yet committed api.list_audit_events (the audit page's one call); strict, so the
# test fails the day it passes and this mark must go.
async def test_the_audit_log_names_the_member_who_suspended(web, owner, mail_dir, account, database_url):
    await console_sign_in(web, owner, mail_dir)
    make_policy(database_url, account.id, "pro")
    license_ = await web.post("/v1/licenses", headers=account.headers, json={"policy_code": "pro"})
    license_id = license_.json()["id"]
    done = await post_form(
        web, f"/console/licenses/{license_id}/suspend", f"/console/licenses/{license_id}/suspend", {}
    )
    assert done.status_code == 303, done.text
    audit = await web.get("/console/audit?type=license.suspended")
    assert audit.status_code == 200, audit.text
    assert "license.suspended" in audit.text
    assert owner in audit.text


async def test_a_license_key_finds_its_license(web, owner, mail_dir, account, database_url):
    await console_sign_in(web, owner, mail_dir)
    make_policy(database_url, account.id, "pro")
    license_ = await web.post("/v1/licenses", headers=account.headers, json={"policy_code": "pro"})
    found = await web.get(f"/console/customers?q={license_.json()['key']}")
    assert found.status_code == 200, found.text
    assert license_.json()["key"] in found.text


async def test_every_page_renders_for_a_new_account(web, owner, mail_dir):
    await console_sign_in(web, owner, mail_dir)
    for path in (
        "/console",
        "/console/plans",
        "/console/stripe",
        "/console/stripe/events",
        "/console/customers",
    ):
        page = await web.get(path)
        assert page.status_code == 200, (path, page.text)
        assert await page_csrf(web, path)
