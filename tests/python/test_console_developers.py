"""The console's Developers page (issue 13 page 6): API keys created and shown once, rolled and revoked;
webhook endpoints created, their secret revealed and rotated, a ping, deliveries with their attempts,
retry and replay; what a developer and a viewer may do there."""

from __future__ import annotations

import re

from console_support import console_sign_in, member, page_csrf, post_form

from license_helpers import superuser

PUBLIC_URL = "https://93.184.215.14/hooks"  # an address literal: no DNS lookup in the SSRF check
SECRET_KEY = re.compile(r"lic_sk_[A-Za-z0-9_]+")
WEBHOOK_SECRET = re.compile(r"whsec_[A-Za-z0-9+/=]+")
ENDPOINT = re.compile(r"/console/developers/webhooks/([0-9a-f-]{36})")


async def create_key(web, kind: str = "secret", name: str = "backend") -> str:
    answer = await post_form(
        web, "/console/developers", "/console/developers/keys", {"kind": kind, "name": name}
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    found = SECRET_KEY.search(answer.text) if kind == "secret" else re.search(r"lic_pk_\w+", answer.text)
    assert found, answer.text
    return found.group(0)


async def test_a_key_is_shown_once_works_rolls_and_revokes(web, owner, mail_dir):
    await console_sign_in(web, owner, mail_dir)
    secret = await create_key(web)
    assert (
        await web.get("/v1/license_policies", headers={"Authorization": f"Bearer {secret}"})
    ).status_code == 200
    listing = await web.get("/console/developers")
    assert secret not in listing.text, "shown once: the list has only the redacted key"
    [key_id] = re.findall(r"/console/developers/keys/([0-9a-f-]{36})/roll", listing.text)[:1]

    confirm = await web.get(f"/console/developers/keys/{key_id}/roll")
    assert confirm.status_code == 200
    assert "Roll this key?" in confirm.text
    rolled = await post_form(
        web,
        f"/console/developers/keys/{key_id}/roll",
        f"/console/developers/keys/{key_id}/roll",
        {"overlap": "1h"},
    )
    assert rolled.status_code == 200, rolled.text
    new_secret = SECRET_KEY.search(rolled.text).group(0)
    assert new_secret != secret
    for key in (secret, new_secret):
        answer = await web.get("/v1/license_policies", headers={"Authorization": f"Bearer {key}"})
        assert answer.status_code == 200, "the old key works for the overlap chosen"
    assert "expires" in (await web.get("/console/developers")).text

    revoked = await post_form(
        web, f"/console/developers/keys/{key_id}/revoke", f"/console/developers/keys/{key_id}/revoke"
    )
    assert revoked.status_code == 303
    assert revoked.headers["location"] == "/console/developers?done=key_revoked"
    assert (
        await web.get("/v1/license_policies", headers={"Authorization": f"Bearer {secret}"})
    ).status_code == 401
    page = await web.get(revoked.headers["location"])
    assert "The key was revoked." in page.text
    assert "revoked" in page.text


async def test_a_roll_outside_the_offered_overlaps_is_refused(web, owner, mail_dir):
    await console_sign_in(web, owner, mail_dir)
    await create_key(web)
    key_id = re.search(
        r"/console/developers/keys/([0-9a-f-]{36})/roll", (await web.get("/console/developers")).text
    )
    path = f"/console/developers/keys/{key_id.group(1)}/roll"
    refused = await post_form(web, path, path, {"overlap": "1y"})
    assert refused.status_code == 422
    assert "Pick one of the choices offered." in refused.text


async def test_a_webhook_endpoint_from_creation_to_replay(web, owner, mail_dir, account, database_url):
    await console_sign_in(web, owner, mail_dir)
    made = await post_form(
        web,
        "/console/developers",
        "/console/developers/webhooks",
        {"url": PUBLIC_URL, "event_types": "license.created, license.suspended", "description": "CRM"},
    )
    assert made.status_code == 200, made.text
    assert "The endpoint was added" in made.text
    secret = WEBHOOK_SECRET.search(made.text).group(0)
    endpoint_id = ENDPOINT.search(made.text).group(1)
    page_path = f"/console/developers/webhooks/{endpoint_id}"
    page = await web.get(page_path)
    assert secret not in page.text
    assert "license.created, license.suspended" in page.text

    revealed = await post_form(web, page_path, f"{page_path}/secret")
    assert revealed.status_code == 200
    assert revealed.headers["cache-control"] == "no-store"
    assert WEBHOOK_SECRET.search(revealed.text).group(0) == secret

    rotated = await post_form(web, page_path, f"{page_path}/rotate", {"overlap": "24h"})
    assert rotated.status_code == 200, rotated.text
    assert WEBHOOK_SECRET.search(rotated.text).group(0) != secret
    assert "The previous secret also signs deliveries until" in rotated.text

    pinged = await post_form(web, page_path, f"{page_path}/test")
    assert pinged.status_code == 303, pinged.text
    delivery_path = pinged.headers["location"].split("?")[0]
    delivery_id = delivery_path.rsplit("/", 1)[1]
    delivery = await web.get(pinged.headers["location"])
    assert "A ping is on its way" in delivery.text
    assert "Delivery of <code>ping</code>" in delivery.text
    assert "Not attempted yet" in delivery.text

    # The worker tried once and the receiver answered 500.
    superuser(
        database_url,
        "insert into lic.webhook_attempts (account_id, delivery_id, attempt, started_at, latency_ms,"
        " status_code, error_class, response_body)"
        " values (%s, %s, 1, now(), 37, 500, 'http_status', 'upstream exploded')",
        (account.id, delivery_id),
    )
    superuser(
        database_url,
        "update lic.webhook_deliveries set status = 'failed', attempts = 1, next_attempt_at = null,"
        " last_attempt_at = now(), last_status_code = 500 where account_id = %s and id = %s",
        (account.id, delivery_id),
    )
    delivery = await web.get(delivery_path)
    assert "37 ms" in delivery.text
    assert "500 http_status" in delivery.text
    assert "upstream exploded" in delivery.text
    failed = await web.get(f"{page_path}?status=failed")
    assert delivery_id in failed.text
    assert delivery_id not in (await web.get(f"{page_path}?status=succeeded")).text

    retried = await post_form(web, delivery_path, f"{delivery_path}/retry")
    assert retried.headers["location"] == f"{delivery_path}?done=retried"
    assert ">pending<" in (await web.get(retried.headers["location"])).text

    superuser(
        database_url,
        "update lic.webhook_deliveries set status = 'failed', next_attempt_at = null"
        " where account_id = %s and id = %s",
        (account.id, delivery_id),
    )
    replayed = await post_form(web, page_path, f"{page_path}/replay", {"status": "failed", "since": "1h"})
    assert replayed.headers["location"] == f"{page_path}?done=replayed"
    assert delivery_id in (await web.get(f"{page_path}?status=pending")).text

    disabled = await post_form(web, page_path, f"{page_path}/disable")
    assert disabled.headers["location"] == f"{page_path}?done=disabled"
    page = await web.get(disabled.headers["location"])
    assert "disabled by the account" in page.text
    assert f"{page_path}/test" not in page.text, "a disabled endpoint offers no ping"
    enabled = await post_form(web, page_path, f"{page_path}/enable")
    assert enabled.headers["location"] == f"{page_path}?done=enabled"

    assert "Delete this endpoint" in (await web.get(f"{page_path}/delete")).text
    deleted = await post_form(web, f"{page_path}/delete", f"{page_path}/delete")
    assert deleted.headers["location"] == "/console/developers?done=endpoint_deleted"
    assert (await web.get(page_path)).status_code == 404


async def test_an_unsafe_webhook_url_is_refused_with_its_reason(web, owner, mail_dir):
    await console_sign_in(web, owner, mail_dir)
    refused = await post_form(
        web, "/console/developers", "/console/developers/webhooks", {"url": "http://127.0.0.1:5432/"}
    )
    assert refused.status_code == 422
    assert "That did not work" in refused.text
    assert "loopback" in refused.text


async def test_a_developer_manages_keys_and_a_viewer_only_looks(
    web, account, database_url, mail_dir, settings
):
    developer = member(database_url, account.id, "developer")
    await console_sign_in(web, developer, mail_dir)
    await create_key(web, "publishable")
    made = await post_form(web, "/console/developers", "/console/developers/webhooks", {"url": PUBLIC_URL})
    assert made.status_code == 200, made.text
    endpoint_id = ENDPOINT.search(made.text).group(1)
    csrf = await page_csrf(web, "/console/developers")
    await web.post("/console/logout", data={"csrf_token": csrf})

    await console_sign_in(web, member(database_url, account.id, "viewer"), mail_dir)
    page = await web.get("/console/developers")
    assert page.status_code == 200
    assert "lic_pk_" in page.text, "a viewer sees the keys, redacted"
    assert 'action="/console/developers/keys"' not in page.text
    assert "/roll" not in page.text
    endpoint_page = await web.get(f"/console/developers/webhooks/{endpoint_id}")
    assert "/secret" not in endpoint_page.text
    csrf = await page_csrf(web, "/console/developers")
    for path, data in (
        ("/console/developers/keys", {"kind": "secret"}),
        (f"/console/developers/webhooks/{endpoint_id}/secret", {}),
        (f"/console/developers/webhooks/{endpoint_id}/test", {}),
    ):
        refused = await web.post(path, data={"csrf_token": csrf, **data})
        assert refused.status_code == 403, (path, refused.text)
        assert "whsec_" not in refused.text


async def test_another_accounts_endpoint_key_and_delivery_are_not_found(web, owner, mail_dir, make_account):
    await console_sign_in(web, owner, mail_dir)
    other = make_account()
    made = await web.post("/v1/webhook_endpoints", headers=other.headers, json={"url": PUBLIC_URL})
    assert made.status_code == 201, made.text
    endpoint_id = made.json()["id"]
    ping = await web.post(f"/v1/webhook_endpoints/{endpoint_id}/test", headers=other.headers)
    key = await web.post("/v1/api_keys", headers=other.headers, json={"kind": "publishable"})
    paths = [
        f"/console/developers/webhooks/{endpoint_id}",
        f"/console/developers/deliveries/{ping.json()['id']}",
        f"/console/developers/keys/{key.json()['id']}/revoke",
        "/console/developers/deliveries/not-a-uuid",
    ]
    for path in paths:
        assert (await web.get(path)).status_code == 404, path
    csrf = await page_csrf(web, "/console/developers")
    for path in (
        f"/console/developers/webhooks/{endpoint_id}/secret",
        f"/console/developers/keys/{key.json()['id']}/revoke",
    ):
        refused = await web.post(path, data={"csrf_token": csrf})
        assert refused.status_code == 404, path
