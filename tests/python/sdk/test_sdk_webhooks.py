"""licentric_sdk.webhooks verifies deliveries signed by the server's own signing code
(licentric.webhook_signing), in both schemes: valid, tampered, expired, rotated secrets, typed events."""

from __future__ import annotations

import base64
import json
import os
import time

import pytest

from licentric.webhook_signing import signature_headers
from licentric_sdk import webhooks
from licentric_sdk.types import License
from licentric_sdk.webhooks import WebhookVerificationError, construct_event

OLD = "whsec_" + base64.b64encode(os.urandom(32)).decode()
NEW = "whsec_" + base64.b64encode(os.urandom(32)).decode()
LICENSE = {
    "object": "license",
    "id": "01930000-0000-7000-8000-000000000001",
    "key": "ABCD-EFGH",
    "policy_id": "01930000-0000-7000-8000-000000000002",
    "policy_code": "pro",
    "customer_id": None,
    "status": "suspended",
    "effective_status": "suspended",
    "expires_at": None,
    "grace_ends_at": None,
    "suspended_reason": "fraud",
    "metadata": {},
    "created_at": "2025-01-01T00:00:00Z",
    "updated_at": "2025-01-02T00:00:00Z",
    "canceled_at": None,
}
BODY = json.dumps(
    {
        "id": "01930000-0000-7000-8000-0000000000e1",
        "object": "event",
        "type": "license.suspended",
        "created": 1735776000,
        "account": "01930000-0000-7000-8000-0000000000a1",
        "data": {"object": LICENSE, "previous_attributes": {"status": "active"}},
    }
)


def delivery(secrets: list[str], at: float | None = None, body: str = BODY) -> dict[str, str]:
    return signature_headers(body, "01930000-0000-7000-8000-0000000000e1", int(at or time.time()), secrets)


def only(headers: dict[str, str], scheme: str) -> dict[str, str]:
    names = {
        "licentric": {"Licentric-Signature"},
        "standard": {"webhook-id", "webhook-timestamp", "webhook-signature"},
    }
    return {
        k: v
        for k, v in headers.items()
        if k not in names["standard" if scheme == "licentric" else "licentric"]
    }


@pytest.mark.parametrize("scheme", ["licentric", "standard", "both"])
def test_a_signed_delivery_is_a_typed_event(scheme):
    headers = delivery([NEW])
    event = construct_event(BODY.encode(), headers if scheme == "both" else only(headers, scheme), NEW)
    assert (event.type, event.created) == ("license.suspended", 1735776000)
    assert isinstance(event.data.object, License) and event.data.object.status == "suspended"
    assert event.data.previous_attributes == {"status": "active"}


@pytest.mark.parametrize("scheme", ["licentric", "standard", "both"])
def test_a_tampered_body_is_refused(scheme):
    headers = delivery([NEW])
    tampered = BODY.replace("suspended", "active", 1).encode()
    with pytest.raises(WebhookVerificationError) as refused:
        construct_event(tampered, headers if scheme == "both" else only(headers, scheme), NEW)
    assert refused.value.code == "signature_invalid"


def test_one_forged_scheme_fails_the_delivery_even_if_the_other_verifies():
    headers = delivery([NEW])
    headers["webhook-signature"] = "v1," + base64.b64encode(b"x" * 32).decode()
    with pytest.raises(WebhookVerificationError):
        construct_event(BODY, headers, NEW)


@pytest.mark.parametrize("scheme", ["licentric", "standard"])
def test_an_old_or_future_timestamp_is_refused(scheme):
    for at in (time.time() - 301, time.time() + 301):
        with pytest.raises(WebhookVerificationError) as refused:
            construct_event(BODY, only(delivery([NEW], at), scheme), NEW)
        assert refused.value.code == "timestamp_outside_tolerance"
    assert (
        construct_event(BODY, only(delivery([NEW], time.time() - 290), scheme), NEW).type
        == "license.suspended"
    )
    assert construct_event(BODY, only(delivery([NEW], time.time() - 900), scheme), NEW, tolerance=1000)


@pytest.mark.parametrize("scheme", ["licentric", "standard", "both"])
def test_during_a_rotation_either_secret_verifies(scheme):
    headers = delivery([NEW, OLD])  # the server signs with both while the old one overlaps
    headers = headers if scheme == "both" else only(headers, scheme)
    assert construct_event(BODY, headers, OLD).id
    assert construct_event(BODY, headers, NEW).id
    assert construct_event(BODY, delivery([NEW]), [OLD, NEW]).id  # a receiver holding both, after it
    other = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    with pytest.raises(WebhookVerificationError):
        construct_event(BODY, headers, other)


def test_a_delivery_without_signatures_or_with_a_bad_body_is_refused():
    with pytest.raises(WebhookVerificationError) as unsigned:
        construct_event(BODY, {"Content-Type": "application/json"}, NEW)
    assert unsigned.value.code == "signature_missing"
    body = "not json"
    with pytest.raises(WebhookVerificationError) as garbage:
        construct_event(body, delivery([NEW], body=body), NEW)
    assert garbage.value.code == "payload_invalid"


def test_an_object_of_no_known_shape_stays_a_dict():
    body = json.dumps(
        {
            "id": "e",
            "object": "event",
            "type": "ping",
            "created": 1,
            "data": {"object": {"object": "webhook_endpoint", "id": "we"}},
        }
    )
    event = construct_event(body, delivery([NEW], body=body), NEW)
    assert event.data.object == {"object": "webhook_endpoint", "id": "we"}
    assert webhooks.verify(body, delivery([NEW], body=body), NEW) is None
