"""Connecting a Stripe account (PUT/GET/DELETE /v1/stripe/connection): the webhook endpoint Licentric
makes with an API key, pasted signing secrets, rotation, test and live kept apart, secrets never
shown, credentials encrypted and bound to their account, and the errors."""

from __future__ import annotations

import base64
import os
import secrets
import stat
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from licentric.cli import _with_secret_key
from licentric.crypto import DecryptionError, SecretBox
from licentric.settings import ConfigurationError, Settings
from licentric.stripe_api import API_VERSION, ENABLED_EVENTS

from fake_stripe import FakeStripe
from license_helpers import superuser
from stripe_support import connect, deliver, new_id, stripe_event
from support import assert_error, create_key


def stripe_key(mode: str = "test", kind: str = "rk") -> str:
    return f"{kind}_{mode}_{secrets.token_hex(24)}"


def whsec() -> str:
    return f"whsec_{secrets.token_hex(16)}"


def ignored_event(livemode: bool = False) -> dict:
    """An event Licentric records and does not act on."""
    return stripe_event("customer.created", {"id": new_id("cus"), "object": "customer"}, livemode=livemode)


async def connections(client, account) -> list[dict]:
    response = await client.get("/v1/stripe/connection", headers=account.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "list" and body["has_more"] is False
    return body["data"]


async def test_connecting_with_an_api_key_makes_the_webhook_endpoint_in_stripe(client, account, fake_stripe):
    key = stripe_key()
    response = await client.put("/v1/stripe/connection", headers=account.headers, json={"api_key": key})
    assert response.status_code == 200, response.text
    connection = response.json()

    [endpoint] = fake_stripe.webhook_endpoints.values()
    url = f"https://licentric.test/v1/stripe/webhooks/{account.id}"
    assert endpoint["url"] == url
    assert endpoint["enabled_events"] == list(ENABLED_EVENTS)
    assert endpoint["api_version"] == API_VERSION == "2025-03-31.basil"
    assert set(fake_stripe.stripe_versions) == {API_VERSION}
    assert connection["object"] == "stripe_connection"
    assert connection["livemode"] is False
    assert connection["webhook_endpoint_id"] == endpoint["id"]
    assert connection["webhook_url"] == url
    assert connection["api_key_redacted"] == f"rk_test_…{key[-4:]}"
    [secret] = connection["secrets"]
    assert secret["redacted"] == f"whsec_…{endpoint['secret'][-4:]}"
    assert secret["expires_at"] is None
    assert key not in response.text and endpoint["secret"] not in response.text
    # The secret Stripe gave verifies deliveries.
    delivered = await deliver(client, account, ignored_event(), endpoint["secret"])
    assert delivered.status_code == 200, delivered.text
    assert delivered.json()["outcome"] == "ignored"


async def test_connect_helper_returns_the_secret_of_the_endpoint_made(client, account, fake_stripe):
    secret = await connect(client, account, api_key=stripe_key())
    assert secret == next(iter(fake_stripe.webhook_endpoints.values()))["secret"]


async def test_a_new_key_for_a_connected_mode_replaces_the_key_and_makes_no_second_endpoint(
    client, account, fake_stripe
):
    await connect(client, account, api_key=stripe_key())
    second = stripe_key(kind="sk")
    response = await client.put("/v1/stripe/connection", headers=account.headers, json={"api_key": second})
    assert response.status_code == 200, response.text
    assert len(fake_stripe.webhook_endpoints) == 1
    assert response.json()["api_key_redacted"] == f"sk_test_…{second[-4:]}"
    assert len(response.json()["secrets"]) == 1


async def test_a_key_added_to_a_pasted_secret_makes_no_endpoint(client, account, fake_stripe):
    secret = whsec()
    await connect(client, account, webhook_secret=secret)
    response = await client.put(
        "/v1/stripe/connection", headers=account.headers, json={"api_key": stripe_key()}
    )
    assert response.status_code == 200, response.text
    assert fake_stripe.webhook_endpoints == {}
    assert [s["expires_at"] for s in response.json()["secrets"]] == [None]
    assert (await deliver(client, account, ignored_event(), secret)).status_code == 200


async def test_pasting_a_signing_secret_connects_without_stripe(client, account):
    secret = whsec()
    response = await client.put(
        "/v1/stripe/connection",
        headers=account.headers,
        json={
            "webhook_secret": secret,
            "livemode": False,
            "portal_return_url": "https://app.example.com/billing",
        },
    )
    assert response.status_code == 200, response.text
    connection = response.json()
    assert connection["api_key_redacted"] is None and connection["webhook_endpoint_id"] is None
    assert connection["portal_return_url"] == "https://app.example.com/billing"
    assert secret not in response.text
    listed = await connections(client, account)
    assert [c["secrets"][0]["id"] for c in listed] == [connection["secrets"][0]["id"]]
    assert secret not in str(listed)


async def test_get_never_shows_a_key_or_secret_and_the_database_holds_only_ciphertext(
    client, account, fake_stripe, database_url
):
    key = stripe_key()
    secret = await connect(client, account, api_key=key)
    listed = await client.get("/v1/stripe/connection", headers=account.headers)
    assert key not in listed.text and secret not in listed.text
    rows = superuser(
        database_url,
        "select c.api_key_ciphertext, s.secret_ciphertext from lic.stripe_connections as c"
        " join lic.stripe_webhook_secrets as s using (account_id, livemode) where c.account_id = %s",
        (account.id,),
    )
    [row] = rows
    for stored in (row["api_key_ciphertext"], row["secret_ciphertext"]):
        assert key.encode() not in stored and secret.encode() not in stored
        assert key[-12:].encode() not in stored and secret[-12:].encode() not in stored


async def test_rotation_keeps_the_old_secret_valid_for_24_hours_then_refuses_it(
    client, account, database_url
):
    old, new = whsec(), whsec()
    await connect(client, account, webhook_secret=old)
    before = datetime.now(UTC)
    response = await client.put(
        "/v1/stripe/connection", headers=account.headers, json={"webhook_secret": new, "livemode": False}
    )
    assert response.status_code == 200, response.text
    newest, previous = response.json()["secrets"]
    assert newest["expires_at"] is None
    expires = datetime.fromisoformat(previous["expires_at"])
    assert (
        before + timedelta(hours=24) - timedelta(minutes=1)
        < expires
        <= datetime.now(UTC) + timedelta(hours=24)
    )

    # During the overlap both verify.
    for secret in (old, new):
        assert (await deliver(client, account, ignored_event(), secret)).status_code == 200

    # A third secret never extends the old one's life.
    third = whsec()
    response = await client.put(
        "/v1/stripe/connection", headers=account.headers, json={"webhook_secret": third, "livemode": False}
    )
    by_redaction = {s["redacted"]: s["expires_at"] for s in response.json()["secrets"]}
    assert by_redaction[f"whsec_…{old[-4:]}"] == previous["expires_at"]

    # 24 hours later (time moved in the database) the old secret is refused.
    superuser(
        database_url,
        "update lic.stripe_webhook_secrets set expires_at = now() - interval '1 second'"
        " where account_id = %s and expires_at = %s",
        (account.id, expires),
    )
    refused = await deliver(client, account, ignored_event(), old)
    assert_error(refused, 400, "signature_invalid")
    assert (await deliver(client, account, ignored_event(), new)).status_code == 200
    assert (await deliver(client, account, ignored_event(), third)).status_code == 200
    listed = await connections(client, account)
    assert f"whsec_…{old[-4:]}" not in [s["redacted"] for s in listed[0]["secrets"]]


async def test_test_and_live_are_connected_apart(client, account, fake_stripe):
    test_secret = await connect(client, account, api_key=stripe_key("test"))
    live_secret = await connect(client, account, api_key=stripe_key("live"))
    listed = await connections(client, account)
    assert [c["livemode"] for c in listed] == [False, True]
    assert len(fake_stripe.webhook_endpoints) == 2
    assert {e["livemode"] for e in fake_stripe.webhook_endpoints.values()} == {False, True}
    # Each mode's secret verifies; an event of the other mode is recorded and ignored.
    assert (await deliver(client, account, ignored_event(True), live_secret)).status_code == 200
    crossed = await deliver(client, account, ignored_event(True), test_secret)
    assert crossed.status_code == 200, crossed.text
    assert crossed.json()["outcome"] == "ignored"
    # Replacing the test connection's secret leaves live's alone.
    response = await client.put(
        "/v1/stripe/connection", headers=account.headers, json={"webhook_secret": whsec(), "livemode": False}
    )
    assert response.status_code == 200
    live = (await connections(client, account))[1]
    assert [s["expires_at"] for s in live["secrets"]] == [None]


async def test_delete_removes_the_endpoint_in_stripe_and_the_secrets(client, account, fake_stripe):
    secret = await connect(client, account, api_key=stripe_key())
    [endpoint_id] = fake_stripe.webhook_endpoints
    response = await client.delete(
        "/v1/stripe/connection", headers=account.headers, params={"livemode": "false"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["webhook_endpoint_id"] == endpoint_id
    assert fake_stripe.webhook_endpoints == {}
    assert ("DELETE", f"/v1/webhook_endpoints/{endpoint_id}", {}) in fake_stripe.requests
    assert await connections(client, account) == []
    assert_error(await deliver(client, account, ignored_event(), secret), 400, "signature_invalid")
    again = await client.delete(
        "/v1/stripe/connection", headers=account.headers, params={"livemode": "false"}
    )
    assert_error(again, 404, "resource_missing", "livemode")


async def test_delete_goes_on_when_stripe_cannot_delete_the_endpoint(client, account, fake_stripe):
    await connect(client, account, api_key=stripe_key())
    fake_stripe.fail("/v1/webhook_endpoints/", 404)
    response = await client.delete(
        "/v1/stripe/connection", headers=account.headers, params={"livemode": "false"}
    )
    assert response.status_code == 200, response.text
    assert await connections(client, account) == []


async def test_delete_needs_a_mode(client, account):
    response = await client.delete("/v1/stripe/connection", headers=account.headers)
    assert response.status_code == 400, response.text


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"api_key": "pk_test_abcdefabcdefabcdef"}, "api_key"),
        ({"api_key": "garbage"}, "api_key"),
        ({"api_key": "rk_test_abcdefabcdefabcdef", "livemode": True}, "livemode"),
        ({"webhook_secret": "whsec_abcdefabcdef"}, "livemode"),
        ({"webhook_secret": "not-a-secret", "livemode": False}, "webhook_secret"),
        (
            {"webhook_secret": "whsec_abcdefabcdef", "livemode": False, "portal_return_url": "ftp://x"},
            "portal_return_url",
        ),
        ({"livemode": False}, "api_key"),
        ({"api_key": "rk_test_abc", "webhook_secret": "whsec_abc", "livemode": True}, "livemode"),
    ],
)
async def test_invalid_connections_are_refused_before_stripe_is_called(
    client, account, fake_stripe, body, param
):
    response = await client.put("/v1/stripe/connection", headers=account.headers, json=body)
    assert_error(response, 422, "invalid_parameter", param)
    assert fake_stripe.requests == []
    assert await connections(client, account) == []


async def test_a_connection_refused_after_the_endpoint_was_made_takes_the_endpoint_back(
    client, account, fake_stripe
):
    response = await client.put(
        "/v1/stripe/connection",
        headers=account.headers,
        json={"api_key": stripe_key(), "portal_return_url": "javascript:alert(1)"},
    )
    assert_error(response, 422, "invalid_parameter", "portal_return_url")
    assert [m for m, _, _ in fake_stripe.requests] == ["POST", "DELETE"]
    assert fake_stripe.webhook_endpoints == {}


async def test_stripe_down_answers_502_and_stores_nothing(client, account, fake_stripe):
    fake_stripe.fail("/v1/webhook_endpoints", 503, times=10)
    response = await client.put(
        "/v1/stripe/connection", headers=account.headers, json={"api_key": stripe_key()}
    )
    assert_error(response, 502, "stripe_unavailable")
    assert len(fake_stripe.requests) == 3  # the SDK retried twice
    assert await connections(client, account) == []


async def test_stripe_unreachable_answers_502(make_client, account):
    async with make_client(stripe_api_base="http://127.0.0.1:9") as client:
        response = await client.put(
            "/v1/stripe/connection", headers=account.headers, json={"api_key": stripe_key()}
        )
    assert_error(response, 502, "stripe_unavailable")


async def test_a_key_stripe_refuses_answers_422(client, account, fake_stripe):
    key = stripe_key()
    fake_stripe.revoked.add(key)
    response = await client.put("/v1/stripe/connection", headers=account.headers, json={"api_key": key})
    assert_error(response, 422, "stripe_key_rejected", "api_key")
    assert key not in response.text


async def test_stripe_routes_need_a_secret_key(client, account):
    publishable = await create_key(client, account.headers, kind="publishable")
    headers = {"Authorization": f"Bearer {publishable['secret']}"}
    assert_error(await client.get("/v1/stripe/connection", headers=headers), 403, "forbidden")
    response = await client.put(
        "/v1/stripe/connection", headers=headers, json={"webhook_secret": whsec(), "livemode": False}
    )
    assert_error(response, 403, "forbidden")
    assert_error(await client.get("/v1/stripe/connection"), 401, "unauthenticated")


async def test_without_licentric_secret_key_stripe_routes_answer_not_configured(make_client, account):
    async with make_client(secret_key=None) as client:
        put = await client.put(
            "/v1/stripe/connection",
            headers=account.headers,
            json={"webhook_secret": whsec(), "livemode": False},
        )
        assert_error(put, 503, "not_configured")
        assert "LICENTRIC_SECRET_KEY" in put.json()["error"]["message"]
        assert_error(
            await client.get("/v1/stripe/connection", headers=account.headers), 503, "not_configured"
        )
        webhook = await deliver(client, account, ignored_event(), whsec())
        assert_error(webhook, 503, "not_configured")


async def test_credentials_stored_under_another_secret_key_are_not_used(make_client, client, account):
    secret = await connect(client, account, webhook_secret=whsec())
    async with make_client(secret_key=os.urandom(32)) as other:
        assert_error(await deliver(other, account, ignored_event(), secret), 400, "signature_invalid")


def test_ciphertexts_are_bound_to_their_account_and_purpose():
    box = SecretBox(os.urandom(32))
    a, b = "01890000-0000-7000-8000-00000000000a", "01890000-0000-7000-8000-00000000000b"
    sealed = box.encrypt("whsec_abc", a, "stripe_webhook_secret")
    assert box.decrypt(sealed, a, "stripe_webhook_secret") == "whsec_abc"
    assert sealed != box.encrypt("whsec_abc", a, "stripe_webhook_secret")  # a fresh nonce each time
    for account_id, purpose in ((b, "stripe_webhook_secret"), (a, "stripe_api_key")):
        with pytest.raises(DecryptionError):
            box.decrypt(sealed, account_id, purpose)
    with pytest.raises(DecryptionError):
        SecretBox(os.urandom(32)).decrypt(sealed, a, "stripe_webhook_secret")
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(DecryptionError):
        box.decrypt(tampered, a, "stripe_webhook_secret")


@pytest.mark.parametrize("value", ["", "short", base64.b64encode(os.urandom(16)).decode(), "!" * 44])
def test_a_malformed_secret_key_is_refused_at_startup(monkeypatch, value):
    monkeypatch.setenv("LICENTRIC_SECRET_KEY", value or " ")
    with pytest.raises(ConfigurationError, match="LICENTRIC_SECRET_KEY"):
        Settings.from_env()


@pytest.mark.parametrize("encode", [base64.b64encode, base64.urlsafe_b64encode])
def test_the_secret_key_is_32_bytes_in_base64(monkeypatch, encode):
    key = os.urandom(32)
    monkeypatch.setenv("LICENTRIC_SECRET_KEY", encode(key).decode())
    assert Settings.from_env().secret_key == key
    assert "secret_key" not in repr(Settings.from_env())


def test_up_makes_a_secret_key_once_and_keeps_it_private(monkeypatch, tmp_path, settings):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    bare = replace(settings, secret_key=None)
    first = _with_secret_key(bare).secret_key
    assert first is not None and len(first) == 32
    assert _with_secret_key(bare).secret_key == first
    [key_file] = tmp_path.rglob("secret-key")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    # A configured key wins.
    assert _with_secret_key(settings).secret_key == settings.secret_key


def test_the_public_url_defaults_to_host_and_port(monkeypatch):
    monkeypatch.delenv("LICENTRIC_PUBLIC_URL", raising=False)
    monkeypatch.setenv("LICENTRIC_PORT", "8123")
    assert Settings.from_env().base_url == "http://127.0.0.1:8123"
    monkeypatch.setenv("LICENTRIC_PUBLIC_URL", "https://licenses.example.com/")
    assert Settings.from_env().base_url == "https://licenses.example.com"


def test_serve_refuses_a_bad_configuration_with_a_clear_message(database_url):
    env = {**os.environ, "DATABASE_URL": database_url, "LICENTRIC_STRIPE_WEBHOOK_TOLERANCE": "0"}
    done = subprocess.run(
        [sys.executable, "-m", "licentric.cli", "serve"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "LICENTRIC_STRIPE_WEBHOOK_TOLERANCE" in done.stderr
    assert "Traceback" not in done.stderr


def test_fake_stripe_parses_stripe_form_encoding():
    from fake_stripe import parse_form

    assert parse_form("a=1&b[0]=x&b[1]=y&c[d]=2&e[]=p&e[]=q") == {
        "a": "1",
        "b": ["x", "y"],
        "c": {"d": "2"},
        "e": ["p", "q"],
    }
    assert FakeStripe().url == ""
