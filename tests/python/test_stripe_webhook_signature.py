"""The webhook's gate (POST /v1/stripe/webhooks/{account_id}): Stripe-Signature verified on the raw
body, the reference's scenarios 12-20 (/work/shared/reference/stripe-webhooks.md §4) as written there:
stale replays, tampering, header fuzzing, rotation, tenants and modes, future timestamps, the
tolerance setting, malformed bodies and thin events. Signatures are built here with hmac
(stripe_support.sign), not with the stripe package."""

from __future__ import annotations

import json
import secrets
import time
import uuid
from dataclasses import replace

import pytest

from licentric.settings import ConfigurationError, Settings

from license_helpers import superuser
from stripe_support import connect, deliver, new_id, sign, stripe_event, stripe_subscription
from support import assert_error


def whsec() -> str:
    return f"whsec_{secrets.token_hex(16)}"


def ignored_event(livemode: bool = False) -> dict:
    """A well-formed event of a type Licentric records and does not act on."""
    return stripe_event("customer.created", {"id": new_id("cus"), "object": "customer"}, livemode=livemode)


async def ledger(client, account, **params) -> list[dict]:
    response = await client.get("/v1/stripe/events", headers=account.headers, params={"limit": 100, **params})
    assert response.status_code == 200, response.text
    return response.json()["data"]


@pytest.fixture
async def secret(client, account) -> str:
    """The account connected in test mode with a pasted signing secret."""
    return await connect(client, account, webhook_secret=whsec())


def v1(body: bytes, secret: str, stamp: int) -> str:
    return sign(body, secret, stamp).split(",v1=")[1]


# 12. Stale replay with a valid old signature.


async def test_a_stale_signature_is_refused_and_nothing_recorded_then_a_fresh_one_is_accepted(
    client, account, secret
):
    evt = ignored_event()
    stale = await deliver(client, account, evt, secret, timestamp=int(time.time()) - 301)
    error = assert_error(stale, 400, "signature_invalid", None)
    assert "tolerance" in error["message"]
    assert await ledger(client, account) == []

    fresh = await deliver(client, account, evt, secret)  # Stripe's retry: same body, new t
    assert fresh.status_code == 200, fresh.text
    assert (fresh.json()["outcome"], fresh.json()["stripe_event_id"]) == ("ignored", evt["id"])
    again = await deliver(client, account, evt, secret)
    assert again.status_code == 200
    assert again.json()["outcome"] == "duplicate"
    assert [e["stripe_event_id"] for e in await ledger(client, account)] == [evt["id"]]


async def test_a_signature_inside_the_tolerance_is_accepted(client, account, secret):
    response = await deliver(client, account, ignored_event(), secret, timestamp=int(time.time()) - 290)
    assert response.status_code == 200, response.text


# 13. Tampering.


async def test_a_body_changed_by_one_byte_is_refused(client, account, secret):
    body = json.dumps(ignored_event()).encode()
    header = sign(body, secret)
    position = body.index(b'"customer"') + 2
    tampered = body[:position] + bytes([body[position] ^ 1]) + body[position + 1 :]
    assert_error(await deliver(client, account, tampered, secret, header=header), 400, "signature_invalid")
    assert await ledger(client, account) == []


@pytest.mark.parametrize(
    "reserialise",
    [
        lambda evt: json.dumps(evt, indent=2),
        lambda evt: json.dumps(evt, separators=(",", ":")),
        lambda evt: json.dumps(evt, sort_keys=True),
    ],
    ids=["indented", "compact", "sorted-keys"],
)
async def test_a_reserialised_body_is_refused(client, account, secret, reserialise):
    evt = ignored_event()
    header = sign(json.dumps(evt), secret)
    response = await deliver(client, account, reserialise(evt), secret, header=header)
    assert_error(response, 400, "signature_invalid")
    assert await ledger(client, account) == []


async def test_the_original_body_text_is_what_gets_recorded(client, account, secret):
    # Unusual but valid JSON: key order, spacing and escapes exactly as Stripe sent them.
    evt = ignored_event()
    text = json.dumps(evt, indent=3, ensure_ascii=True).replace(
        '"customer.created"', '"customer\\u002ecreated"'
    )
    response = await deliver(client, account, text, secret)
    assert response.status_code == 200, response.text
    recorded = await client.get(f"/v1/stripe/events/{response.json()['id']}", headers=account.headers)
    assert recorded.json()["payload"] == evt
    assert recorded.json()["type"] == "customer.created"


# 14. Header fuzzing.


def fuzzed_headers(body: bytes, secret: str) -> dict[str, str]:
    now = int(time.time())
    good = v1(body, secret, now)
    return {
        "missing": "",
        "garbage": "garbage",
        "t-not-a-number": f"t=abc,v1={good}",
        "no-t": f"v1={good}",
        "v0-only": f"t={now},v0={good}",
        "upper-case-hex": f"t={now},v1={good.upper()}",
        "space-after-comma": f"t={now}, v1={good}",
        "duplicated-t": f"t={now},t={now},v1={good}",
        "duplicated-t-other-first": f"t={now - 10},t={now},v1={good}",
        "wrong-secret": sign(body, whsec(), now),
        "empty-v1": f"t={now},v1=",
        "only-t": f"t={now}",
    }


@pytest.mark.parametrize("case", list(fuzzed_headers(b"", "whsec_x")))
async def test_malformed_signature_headers_are_refused(client, account, secret, case):
    body = json.dumps(ignored_event()).encode()
    response = await deliver(client, account, body, secret, header=fuzzed_headers(body, secret)[case])
    assert_error(response, 400, "signature_invalid", None)
    assert await ledger(client, account) == []


@pytest.mark.parametrize("extra", ["v2=deadbeef", "v0=deadbeef", "x=1"])
async def test_a_valid_v1_with_unknown_extra_schemes_is_accepted(client, account, secret, extra):
    body = json.dumps(ignored_event()).encode()
    now = int(time.time())
    header = f"t={now},v1={v1(body, secret, now)},{extra}"
    response = await deliver(client, account, body, secret, header=header)
    assert response.status_code == 200, response.text


# 15. Secret rotation.


@pytest.mark.parametrize("configured", ["old", "new", "both"])
@pytest.mark.parametrize("order", ["old-first", "new-first"])
async def test_two_v1_signatures_verify_with_either_secret_configured(
    client, make_account, database_url, configured, order
):
    account = make_account()
    old, new = whsec(), whsec()
    if configured in ("old", "both"):
        await connect(client, account, webhook_secret=old)
    if configured in ("new", "both"):
        await connect(client, account, webhook_secret=new)
    if configured == "new":
        assert (
            len(
                superuser(
                    database_url,
                    "select 1 from lic.stripe_webhook_secrets where account_id = %s",
                    (account.id,),
                )
            )
            == 1
        )
    body = json.dumps(ignored_event()).encode()
    now = int(time.time())
    signatures = [v1(body, old, now), v1(body, new, now)]
    if order == "new-first":
        signatures.reverse()
    header = f"t={now}," + ",".join(f"v1={s}" for s in signatures)
    response = await deliver(client, account, body, old, header=header)
    assert response.status_code == 200, response.text


async def test_after_the_overlap_an_old_secret_signature_is_refused(client, account, database_url):
    old, new = whsec(), whsec()
    await connect(client, account, webhook_secret=old)
    await connect(client, account, webhook_secret=new)
    assert (await deliver(client, account, ignored_event(), old)).status_code == 200
    superuser(
        database_url,
        "update lic.stripe_webhook_secrets set expires_at = now() - interval '1 second'"
        " where account_id = %s and expires_at is not null",
        (account.id,),
    )
    assert_error(await deliver(client, account, ignored_event(), old), 400, "signature_invalid")
    assert (await deliver(client, account, ignored_event(), new)).status_code == 200


# 16. Tenants and modes.


async def test_another_tenants_secret_is_refused_like_an_unknown_account(client, make_account):
    a, b = make_account("A"), make_account("B")
    await connect(client, a, webhook_secret=whsec())
    b_secret = await connect(client, b, webhook_secret=whsec())
    evt = ignored_event()
    crossed = await deliver(client, a, evt, b_secret)
    assert_error(crossed, 400, "signature_invalid")
    unknown = await deliver(client, str(uuid.uuid4()), evt, b_secret)
    not_an_id = await deliver(client, "not-an-account", evt, b_secret)
    never_connected = make_account("C")
    unconnected = await deliver(client, never_connected, evt, b_secret)
    for response in (unknown, not_an_id, unconnected):
        assert response.status_code == crossed.status_code
        assert response.json() == crossed.json()
    assert await ledger(client, a) == [] and await ledger(client, b) == []
    # Delivered where it belongs, it counts.
    assert (await deliver(client, b, evt, b_secret)).status_code == 200


async def test_a_test_mode_secret_does_not_make_a_live_event_count(client, account):
    test_secret = await connect(client, account, livemode=False, webhook_secret=whsec())
    live_secret = await connect(client, account, livemode=True, webhook_secret=whsec())
    price = new_id("price")
    # Verified by the live secret, a live subscription event is taken up (parked: its price is not mapped).
    taken = await deliver(
        client,
        account,
        stripe_event(
            "customer.subscription.created", stripe_subscription(price, livemode=True), livemode=True
        ),
        live_secret,
    )
    assert taken.status_code == 200, taken.text
    assert taken.json()["outcome"] == "parked"
    # Verified only by the test secret, the same kind of live event is recorded and ignored.
    crossed = await deliver(
        client,
        account,
        stripe_event(
            "customer.subscription.created", stripe_subscription(price, livemode=True), livemode=True
        ),
        test_secret,
    )
    assert crossed.status_code == 200, crossed.text
    assert crossed.json()["outcome"] == "ignored"
    # And the reverse.
    reverse = await deliver(
        client,
        account,
        stripe_event("customer.subscription.created", stripe_subscription(price)),
        live_secret,
    )
    assert reverse.json()["outcome"] == "ignored"


async def test_a_live_event_is_refused_by_an_account_connected_only_in_test_mode_with_another_secret(
    client, account, secret
):
    assert_error(await deliver(client, account, ignored_event(True), whsec()), 400, "signature_invalid")


# 17. Future timestamps.


async def test_a_timestamp_an_hour_ahead_is_refused(client, account, secret):
    response = await deliver(client, account, ignored_event(), secret, timestamp=int(time.time()) + 3600)
    error = assert_error(response, 400, "signature_invalid")
    assert "future" in error["message"]
    assert await ledger(client, account) == []


async def test_a_timestamp_slightly_ahead_is_accepted(client, account, secret):
    response = await deliver(client, account, ignored_event(), secret, timestamp=int(time.time()) + 60)
    assert response.status_code == 200, response.text


async def test_the_future_skew_is_configurable(make_client, client, account, secret):
    async with make_client(stripe_webhook_max_future_skew=0) as strict:
        response = await deliver(strict, account, ignored_event(), secret, timestamp=int(time.time()) + 30)
    assert_error(response, 400, "signature_invalid")


# 18. The tolerance setting.


@pytest.mark.parametrize("tolerance", [0, -1])
def test_a_tolerance_of_zero_or_less_is_refused_at_startup(settings, monkeypatch, tolerance):
    with pytest.raises(ConfigurationError, match="LICENTRIC_STRIPE_WEBHOOK_TOLERANCE"):
        replace(settings, stripe_webhook_tolerance=tolerance)
    monkeypatch.setenv("LICENTRIC_STRIPE_WEBHOOK_TOLERANCE", str(tolerance))
    with pytest.raises(ConfigurationError, match="LICENTRIC_STRIPE_WEBHOOK_TOLERANCE"):
        Settings.from_env()


def test_the_tolerance_defaults_to_300_seconds(monkeypatch):
    monkeypatch.delenv("LICENTRIC_STRIPE_WEBHOOK_TOLERANCE", raising=False)
    monkeypatch.delenv("LICENTRIC_STRIPE_WEBHOOK_MAX_FUTURE_SKEW", raising=False)
    settings = Settings.from_env()
    assert (settings.stripe_webhook_tolerance, settings.stripe_webhook_max_future_skew) == (300, 300)
    monkeypatch.setenv("LICENTRIC_STRIPE_WEBHOOK_TOLERANCE", "abc")
    with pytest.raises(ConfigurationError):
        Settings.from_env()


async def test_a_shorter_tolerance_applies(make_client, account, secret):
    async with make_client(stripe_webhook_tolerance=10) as client:
        response = await deliver(client, account, ignored_event(), secret, timestamp=int(time.time()) - 60)
    assert_error(response, 400, "signature_invalid")


# 19. Malformed bodies with a valid signature.


@pytest.mark.parametrize(
    "body",
    [b"not json", b"", b"{", b"[1, 2]", b'"a string"', b"null", b'{"id": NaN}', b"\xef\xbb\xbf{}"],
    ids=["text", "empty", "truncated", "array", "string", "null", "nan", "bom"],
)
async def test_a_signed_body_that_is_not_a_json_object_is_refused(client, account, secret, body):
    response = await deliver(client, account, body, secret)
    assert_error(response, 400, "payload_invalid")
    assert await ledger(client, account) == []


@pytest.mark.parametrize("body", [b'{"id": "evt_\xff"}', b"\xc3\x28", b"{\xed\xa0\x80}"])
async def test_a_body_that_is_not_utf8_is_refused(client, account, secret, body):
    response = await deliver(client, account, body, secret)
    assert_error(response, 400, "payload_invalid")
    assert await ledger(client, account) == []


async def test_json_the_database_cannot_hold_is_refused_not_a_500(client, account, secret):
    evt = ignored_event()
    evt["data"]["object"]["name"] = "nul \u0000 inside"
    response = await deliver(client, account, evt, secret)
    assert_error(response, 400, "payload_invalid")


@pytest.mark.parametrize("missing", ["id", "type", "data", "data.object", "object"])
async def test_a_signed_object_that_is_no_stripe_event_is_recorded_invalid_and_answered_400(
    client, account, secret, missing
):
    evt = ignored_event()
    if missing == "data.object":
        del evt["data"]["object"]
    else:
        del evt[missing]
    response = await deliver(client, account, evt, secret)
    assert response.status_code == 400, response.text
    assert response.json()["outcome"] == "invalid"
    [recorded] = await ledger(client, account, outcome="invalid")
    assert recorded["id"] == response.json()["id"]
    assert recorded["stripe_event_id"] is None


# 20. Thin events.


async def test_a_thin_event_is_recorded_invalid_and_answered_400(client, account, secret):
    thin = {
        "id": "evt_test_65R8Dq",
        "object": "v2.core.event",
        "type": "v1.customer.subscription.updated",
        "created": "2025-10-01T12:00:00.000Z",
        "livemode": False,
        "related_object": {"id": new_id("sub"), "type": "subscription", "url": "/v1/subscriptions/sub_x"},
    }
    response = await deliver(client, account, thin, secret)
    assert response.status_code == 400, response.text
    assert response.json()["outcome"] == "invalid"
    assert [e["outcome"] for e in await ledger(client, account)] == ["invalid"]


# Operations.


async def test_stripe_deliveries_are_not_rate_limited(make_client, account, secret):
    async with make_client(rate_limit_per_minute=2) as client:
        statuses = [(await deliver(client, account, ignored_event(), secret)).status_code for _ in range(5)]
    assert statuses == [200] * 5


async def test_the_webhook_needs_no_api_key_and_ignores_one(client, account, secret):
    evt = ignored_event()
    body = json.dumps(evt).encode()
    response = await client.post(
        f"/v1/stripe/webhooks/{account.id}",
        content=body,
        headers={"Stripe-Signature": sign(body, secret), "Authorization": "Bearer nonsense"},
    )
    assert response.status_code == 200, response.text


async def test_a_delivery_to_a_deleted_connection_is_refused(client, account, secret):
    deleted = await client.delete(
        "/v1/stripe/connection", headers=account.headers, params={"livemode": "false"}
    )
    assert deleted.status_code == 200
    assert_error(await deliver(client, account, ignored_event(), secret), 400, "signature_invalid")
