"""The signature headers of outbound webhooks (licentric/webhook_signing.py), verified by the two
libraries receivers use, unchanged: `stripe.WebhookSignature.verify_header` and `standardwebhooks`."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
import uuid

import pytest
import standardwebhooks
import stripe

from licentric.webhook_signing import signature_headers


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def delivery(
    secrets: list[str], body: str | None = None, at: int | None = None
) -> tuple[str, dict[str, str]]:
    event_id = str(uuid.uuid4())
    body = body or json.dumps({"id": event_id, "object": "event", "type": "license.suspended", "data": {}})
    return body, signature_headers(body, event_id, at or int(time.time()), secrets)


def test_one_secret_verifies_with_stripe_and_standard_webhooks():
    secret = new_secret()
    body, headers = delivery([secret], body='{"id":"x","note":"caf\u00e9 \u2713"}')

    stripe.WebhookSignature.verify_header(body, headers["Licentric-Signature"], secret)
    assert standardwebhooks.Webhook(secret).verify(body, headers) == json.loads(body)
    # As bytes off the wire, too.
    stripe.WebhookSignature.verify_header(body.encode(), headers["Licentric-Signature"], secret)
    standardwebhooks.Webhook(secret).verify(body.encode(), headers)


def test_the_headers_are_the_contract():
    secret = "whsec_" + base64.b64encode(bytes(range(32))).decode()
    event_id = "0192f3a4-0000-7000-8000-000000000001"
    body = '{"id":"0192f3a4-0000-7000-8000-000000000001","object":"event"}'
    headers = signature_headers(body, event_id, 1_700_000_000, [secret])

    stripe_hex = hmac.new(secret.encode(), f"1700000000.{body}".encode(), hashlib.sha256).hexdigest()
    standard = base64.b64encode(
        hmac.new(bytes(range(32)), f"{event_id}.1700000000.{body}".encode(), hashlib.sha256).digest()
    ).decode()
    assert headers == {
        "Content-Type": "application/json",
        "User-Agent": "Licentric-Webhooks/1",
        "Licentric-Signature": f"t=1700000000,v1={stripe_hex}",
        "webhook-id": event_id,
        "webhook-timestamp": "1700000000",
        "webhook-signature": f"v1,{standard}",
    }


def test_during_a_rotation_both_secrets_sign_and_either_verifies():
    current, previous = new_secret(), new_secret()
    body, headers = delivery([current, previous])

    assert headers["Licentric-Signature"].count("v1=") == 2
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (current, previous):
        stripe.WebhookSignature.verify_header(body, headers["Licentric-Signature"], secret)
        standardwebhooks.Webhook(secret).verify(body, headers)
    # The current secret signs first.
    assert headers == signature_headers(
        body, headers["webhook-id"], int(headers["webhook-timestamp"]), [current, previous]
    )
    only_current = signature_headers(
        body, headers["webhook-id"], int(headers["webhook-timestamp"]), [current]
    )
    assert headers["Licentric-Signature"].startswith(only_current["Licentric-Signature"] + ",v1=")
    assert headers["webhook-signature"].startswith(only_current["webhook-signature"] + " v1,")


def test_a_changed_body_or_another_secret_does_not_verify():
    secret = new_secret()
    body, headers = delivery([secret])
    changed = body.replace("suspended", "reinstated")

    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(changed, headers["Licentric-Signature"], secret)
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(secret).verify(changed, headers)

    other = new_secret()
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(body, headers["Licentric-Signature"], other)
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(other).verify(body, headers)


def test_another_event_id_does_not_verify_with_standard_webhooks():
    secret = new_secret()
    body, headers = delivery([secret])
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(secret).verify(body, {**headers, "webhook-id": str(uuid.uuid4())})


def test_an_old_timestamp_is_refused_by_both_libraries():
    secret = new_secret()
    body, headers = delivery([secret], at=int(time.time()) - 3600)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(body, headers["Licentric-Signature"], secret, tolerance=300)
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(secret).verify(body, headers)


@pytest.mark.parametrize("secret", ["sk_live_abc", "whsec_", "whsec_not base64!"])
def test_a_malformed_secret_is_refused(secret: str):
    with pytest.raises(ValueError):
        signature_headers("{}", str(uuid.uuid4()), int(time.time()), [secret])


def test_no_secret_is_refused():
    with pytest.raises(ValueError):
        signature_headers("{}", str(uuid.uuid4()), int(time.time()), [])
