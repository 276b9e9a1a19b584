"""The console's Settings page (issue 13 page 7): the account's name, the portal's slug and branding
(plan-gated), members and invitations (an invitation mailed, opened and accepted by a new browser),
ownership, and the member's own sessions."""

from __future__ import annotations

import re
import secrets

from console_support import add_member, console_sign_in, member, page_csrf, post_form

from license_helpers import superuser
from portal_support import mails_to, path_of, portal_client, text_of

INVITATION = re.compile(r"(https?://\S+/console/invitations/accept\?token=[A-Za-z0-9_-]+)")


async def test_the_account_is_renamed_and_a_viewer_may_not(web, owner, account, database_url, mail_dir):
    await console_sign_in(web, owner, mail_dir)
    renamed = await post_form(web, "/console/settings", "/console/settings/account", {"name": " Acme Tools "})
    assert renamed.headers["location"] == "/console/settings?done=account_renamed"
    page = await web.get(renamed.headers["location"])
    assert 'value="Acme Tools"' in page.text
    assert "The account&#39;s name was saved." in page.text
    assert "account.updated" in (await web.get("/console/audit?type=account.updated")).text
    blank = await post_form(web, "/console/settings", "/console/settings/account", {"name": " "})
    assert blank.status_code == 422

    await post_form(web, "/console", "/console/logout")
    await console_sign_in(web, member(database_url, account.id, "viewer"), mail_dir)
    page = await web.get("/console/settings")
    assert 'action="/console/settings/account"' not in page.text
    assert "Save the portal" not in page.text
    csrf = await page_csrf(web, "/console/settings")
    refused = await web.post("/console/settings/account", data={"csrf_token": csrf, "name": "Mine"})
    assert refused.status_code == 403


async def test_the_portal_slug_on_free_and_branding_on_starter(web, make_account, database_url, mail_dir):
    free = make_account()
    await console_sign_in(web, member(database_url, free.id, "owner"), mail_dir)
    page = await web.get("/console/settings")
    assert "Branding (logo, colours, product name) needs the starter plan" in page.text
    assert 'name="product_name"' not in page.text
    slug = f"acme-{secrets.token_hex(3)}"
    saved = await post_form(web, "/console/settings", "/console/settings/portal", {"slug": slug})
    assert saved.headers["location"] == "/console/settings?done=portal_saved"
    assert f"https://licentric.test/portal/{slug}" in (await web.get("/console/settings")).text
    gated = await post_form(
        web, "/console/settings", "/console/settings/portal", {"slug": slug, "product_name": "Acme"}
    )
    assert gated.status_code == 402, "branding is refused by SQL on the free plan"
    await post_form(web, "/console", "/console/logout")

    starter = make_account(plan="starter")
    await console_sign_in(web, member(database_url, starter.id, "owner"), mail_dir)
    fields = {"slug": f"tools-{secrets.token_hex(3)}", "product_name": "Acme Pro", "primary_color": "#112233"}
    saved = await post_form(web, "/console/settings", "/console/settings/portal", fields)
    assert saved.status_code == 303, saved.text
    page = await web.get("/console/settings")
    assert 'value="Acme Pro"' in page.text
    assert 'value="#112233"' in page.text
    # An emptied field is cleared; the others stay.
    cleared = await post_form(
        web, "/console/settings", "/console/settings/portal", {**fields, "product_name": ""}
    )
    assert cleared.status_code == 303
    page = await web.get("/console/settings")
    assert 'value="Acme Pro"' not in page.text
    assert 'value="#112233"' in page.text
    bad = await post_form(
        web, "/console/settings", "/console/settings/portal", {**fields, "accent_color": "red"}
    )
    assert bad.status_code == 422
    assert "accent_color must be #rrggbb" in bad.text


async def test_an_invitation_is_mailed_opened_and_accepted(settings, web, owner, mail_dir, account):
    await console_sign_in(web, owner, mail_dir)
    invitee = f"dev-{secrets.token_hex(4)}@example.com"
    invited = await post_form(
        web, "/console/settings", "/console/settings/invitations", {"email": invitee, "role": "developer"}
    )
    assert invited.headers["location"] == "/console/settings?done=invited"
    page = await web.get("/console/settings")
    assert invitee in page.text, "pending invitations are listed"
    [mail] = mails_to(mail_dir, invitee)
    assert "as developer" in text_of(mail)
    link = INVITATION.search(text_of(mail)).group(1)

    async with portal_client(settings, mail_dir) as browser:
        assert (await browser.head(path_of(link))).status_code == 200
        opened = await browser.get(path_of(link))
        assert opened.status_code == 200
        assert "Accept and sign in" in opened.text
        assert invitee not in opened.text, "the address is masked"
        csrf = re.search(r'name="csrf_token" value="([0-9a-f]{64})"', opened.text).group(1)
        token = link.split("token=")[1]
        accepted = await browser.post(
            "/console/invitations/accept", data={"csrf_token": csrf, "token": token, "name": "Dee Dev"}
        )
        assert accepted.status_code == 303, accepted.text
        assert accepted.headers["location"] == "/console?done=joined"
        welcome = await browser.get(accepted.headers["location"])
        assert f"Signed in as {invitee} (developer)" in welcome.text
        assert "Welcome: you are now a member" in welcome.text
        again = await browser.get(path_of(link))
        assert again.status_code == 410
        assert "This invitation can no longer be accepted" in again.text

    members = await web.get("/console/settings")
    assert "Dee Dev" in members.text
    assert "member.joined" in (await web.get("/console/audit?type=member.joined")).text


async def test_a_revoked_invitation_and_a_scanner_accept_nothing(settings, web, owner, mail_dir):
    await console_sign_in(web, owner, mail_dir)
    invitee = f"late-{secrets.token_hex(4)}@example.com"
    await post_form(
        web, "/console/settings", "/console/settings/invitations", {"email": invitee, "role": "viewer"}
    )
    link = INVITATION.search(text_of(mails_to(mail_dir, invitee)[-1])).group(1)
    async with portal_client(settings, mail_dir) as scanner:
        pressed = await scanner.post(
            "/console/invitations/accept", data={"token": link.split("token=")[1], "csrf_token": "0" * 64}
        )
        assert pressed.status_code == 403, "no pre-session cookie, no acceptance"
    page = await web.get("/console/settings")
    [invitation_id] = re.findall(r"/console/settings/invitations/([0-9a-f-]{36})/revoke", page.text)
    revoked = await post_form(
        web, "/console/settings", f"/console/settings/invitations/{invitation_id}/revoke"
    )
    assert revoked.headers["location"] == "/console/settings?done=invitation_revoked"
    async with portal_client(settings, mail_dir) as browser:
        assert (await browser.get(path_of(link))).status_code == 410


async def test_roles_ownership_and_the_last_owner(web, owner, account, database_url, mail_dir):
    await console_sign_in(web, owner, mail_dir)
    address = f"ann-{secrets.token_hex(4)}@example.com"
    colleague = add_member(database_url, account.id, address, "viewer")
    changed = await post_form(
        web, "/console/settings", f"/console/settings/members/{colleague}/role", {"role": "admin"}
    )
    assert changed.headers["location"] == "/console/settings?done=role_changed"
    assert 'value="admin" selected' in (await web.get("/console/settings")).text

    confirm = await web.get(f"/console/settings/members/{colleague}/transfer")
    assert "Make this member an owner?" in confirm.text
    assert "You become an admin" in confirm.text
    moved = await post_form(
        web,
        f"/console/settings/members/{colleague}/transfer",
        f"/console/settings/members/{colleague}/transfer",
    )
    assert moved.headers["location"] == "/console/settings?done=ownership_transferred"
    page = await web.get("/console/settings")
    assert f"Signed in as {owner} (admin)" in page.text, "the session follows the new role at once"
    assert 'action="/console/settings/invitations"' not in page.text, "an admin manages no members"

    await post_form(web, "/console", "/console/logout")
    await console_sign_in(web, address, mail_dir)
    [first_owner] = superuser(database_url, "select id from lic.members where email = %s", (owner,))
    demoted = await post_form(
        web, "/console/settings", f"/console/settings/members/{first_owner['id']}/role", {"role": "viewer"}
    )
    assert demoted.status_code == 303
    last = await post_form(
        web, f"/console/settings/members/{colleague}/remove", f"/console/settings/members/{colleague}/remove"
    )
    assert last.status_code == 409, "the last owner cannot leave"
    assert "That did not work" in last.text
    removed = await post_form(
        web,
        f"/console/settings/members/{first_owner['id']}/remove",
        f"/console/settings/members/{first_owner['id']}/remove",
    )
    assert removed.headers["location"] == "/console/settings?done=member_removed"
    assert owner not in (await web.get("/console/settings")).text


async def test_a_member_ends_its_other_session(settings, web, owner, mail_dir, database_url):
    await console_sign_in(web, owner, mail_dir)
    # A link a minute per address: the first one was asked for two minutes ago.
    superuser(
        database_url, "update private.console_login_tokens set created_at = created_at - interval '2 minutes'"
    )
    async with portal_client(settings, mail_dir) as other:
        await console_sign_in(other, owner, mail_dir)
        page = await web.get("/console/settings")
        sessions = re.findall(r"/console/settings/sessions/([0-9a-f-]{36})/revoke", page.text)
        assert len(sessions) == 2
        assert "(this browser)" in page.text
        # The other browser's session: the row not marked as this one.
        row_of = {s: page.text.index(f"/console/settings/sessions/{s}/revoke") for s in sessions}
        mine = page.text.index("(this browser)")
        theirs = max(sessions, key=lambda s: abs(row_of[s] - mine))
        ended = await post_form(web, "/console/settings", f"/console/settings/sessions/{theirs}/revoke")
        assert ended.headers["location"] == "/console/settings?done=session_revoked"
        signed_out = await other.get("/console")
        assert signed_out.status_code == 303
        assert signed_out.headers["location"] == "/console/login"
    assert (await web.get("/console")).status_code == 200, "this browser's session goes on"
