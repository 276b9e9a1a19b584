"""POST /v1/licenses/validate (secret and publishable keys) and
POST /v1/entitlements/check (secret keys): every answer code over HTTP,
tenancy, and bad requests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from license_helpers import (
    add_machine,
    add_seat,
    create_license,
    make_customer,
    make_entitlement,
    make_policy,
    publishable_key,
    set_license,
    superuser,
)
from support import assert_error

VALIDATION_FIELDS = {"object", "valid", "code", "detail", "license", "entitlements"}
CHECK = "/v1/entitlements/check"


@pytest.fixture
def tenant(database_url, account) -> Any:
    make_policy(database_url, account.id, "basic")
    make_policy(database_url, account.id, "locked", require_fingerprint=True, heartbeat_interval="10 minutes")
    make_policy(database_url, account.id, "small", max_machines=1, max_users=1)
    make_entitlement(database_url, account.id, "sso", ["basic", "small"])
    make_entitlement(database_url, account.id, "api", ["basic"])
    return account


async def validate(client: Any, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = await client.post("/v1/licenses/validate", headers=headers, json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert set(answer) == VALIDATION_FIELDS
    assert answer["object"] == "license_validation"
    assert answer["detail"]
    return answer


async def test_a_valid_license_answers_valid_with_the_license_and_its_entitlements(client, tenant):
    made = await create_license(client, tenant.headers, policy_code="basic")
    answer = await validate(client, tenant.headers, key=made["key"].lower().replace("-", ""))
    assert answer["valid"] is True and answer["code"] == "VALID"
    assert answer["license"] == made
    assert answer["entitlements"] == ["api", "sso"]


async def test_malformed_and_unknown_keys(client, tenant, database_url):
    made = await create_license(client, tenant.headers, policy_code="basic")
    typo = made["key"][:-1] + ("0" if made["key"][-1] != "0" else "1")
    for key, code in [("nonsense", "MALFORMED_KEY"), (typo, "MALFORMED_KEY"), ("", "MALFORMED_KEY")]:
        answer = await validate(client, tenant.headers, key=key)
        assert (answer["valid"], answer["code"], answer["license"]) == (False, code, None)
    unknown = superuser(database_url, "select private.new_license_key() as k")[0]["k"]
    answer = await validate(client, tenant.headers, key=unknown)
    assert (answer["code"], answer["license"], answer["entitlements"]) == ("NOT_FOUND", None, None)


@pytest.mark.parametrize(
    ("state", "code"),
    [
        ({"status": "canceled", "expires_at": datetime.now(UTC) - timedelta(days=1)}, "CANCELED"),
        ({"status": "suspended", "expires_at": datetime.now(UTC) - timedelta(days=1)}, "SUSPENDED"),
        ({"status": "expired", "expires_at": datetime.now(UTC) - timedelta(days=1)}, "EXPIRED"),
        ({"expires_at": datetime.now(UTC) - timedelta(seconds=1)}, "EXPIRED"),
        ({"status": "past_due", "grace_ends_at": datetime.now(UTC) - timedelta(minutes=1)}, "OVERDUE"),
    ],
)
async def test_status_codes(client, tenant, database_url, state, code):
    made = await create_license(client, tenant.headers, policy_code="basic")
    set_license(database_url, made["id"], **state)
    answer = await validate(client, tenant.headers, key=made["key"])
    assert (answer["valid"], answer["code"]) == (False, code)
    assert answer["license"]["id"] == made["id"]


async def test_payment_grace_is_valid(client, tenant, database_url):
    made = await create_license(client, tenant.headers, policy_code="basic")
    set_license(
        database_url, made["id"], status="past_due", grace_ends_at=datetime.now(UTC) + timedelta(days=2)
    )
    answer = await validate(client, tenant.headers, key=made["key"])
    assert (answer["valid"], answer["code"]) == (True, "PAYMENT_GRACE")
    missing = await validate(client, tenant.headers, key=made["key"], entitlements=["sso", 'odd "code"'])
    assert (missing["valid"], missing["code"]) == (False, "ENTITLEMENTS_MISSING")
    assert missing["detail"].endswith('lacks odd "code"')


async def test_fingerprint_codes(client, tenant, database_url):
    made = await create_license(client, tenant.headers, policy_code="locked")
    key = made["key"]
    assert (await validate(client, tenant.headers, key=key))["code"] == "FINGERPRINT_SCOPE_REQUIRED"
    assert (await validate(client, tenant.headers, key=key, fingerprint="a"))["code"] == "NO_MACHINE"
    add_machine(database_url, made["id"], "dead", silent_for="1 hour")
    assert (await validate(client, tenant.headers, key=key, fingerprint="dead"))["code"] == "HEARTBEAT_DEAD"
    assert (await validate(client, tenant.headers, key=key, fingerprint="a"))["code"] == "NO_MACHINE"
    add_machine(database_url, made["id"], "live")
    assert (await validate(client, tenant.headers, key=key, fingerprint="a"))[
        "code"
    ] == "FINGERPRINT_SCOPE_MISMATCH"
    answer = await validate(client, tenant.headers, key=key, fingerprint="live")
    assert (answer["valid"], answer["code"]) == (True, "VALID")


async def test_limits_and_entitlements_in_order(client, tenant, database_url):
    made = await create_license(client, tenant.headers, policy_code="small")
    key = made["key"]
    add_seat(database_url, made["id"], make_customer(database_url, tenant.id, "u1"), "owner")
    add_seat(database_url, made["id"], make_customer(database_url, tenant.id, "u2"))
    add_machine(database_url, made["id"], "m1")
    add_machine(database_url, made["id"], "m2")
    assert (await validate(client, tenant.headers, key=key, entitlements=["nope"]))[
        "code"
    ] == "TOO_MANY_MACHINES"
    superuser(
        database_url, "delete from lic.machines where fingerprint = 'm2' and license_id = %s", (made["id"],)
    )
    assert (await validate(client, tenant.headers, key=key, entitlements=["nope"]))[
        "code"
    ] == "TOO_MANY_USERS"
    superuser(
        database_url, "delete from lic.license_users where role = 'member' and license_id = %s", (made["id"],)
    )
    missing = await validate(client, tenant.headers, key=key, entitlements=["sso", "api"])
    assert (missing["valid"], missing["code"]) == (False, "ENTITLEMENTS_MISSING")
    assert "api" in missing["detail"]
    assert missing["entitlements"] == ["sso"]
    assert (await validate(client, tenant.headers, key=key, entitlements=[]))["code"] == "VALID"
    assert (await validate(client, tenant.headers, key=key, entitlements=["sso"]))["code"] == "VALID"


async def test_publishable_keys_validate_only_their_own_accounts_licenses(client, make_account, database_url):
    a, b = make_account("A"), make_account("B")
    for account in (a, b):
        make_policy(database_url, account.id, "basic")
    owned_by_a = await create_license(client, a.headers, policy_code="basic")
    owned_by_b = await create_license(client, b.headers, policy_code="basic")
    a_pk = await publishable_key(client, a.headers)
    assert (await validate(client, a_pk, key=owned_by_a["key"]))["code"] == "VALID"
    crossed = await validate(client, a_pk, key=owned_by_b["key"])
    assert (crossed["code"], crossed["license"]) == ("NOT_FOUND", None)
    assert (await validate(client, a.headers, key=owned_by_b["key"]))["code"] == "NOT_FOUND"


async def test_validation_writes_nothing(client, tenant, database_url):
    made = await create_license(client, tenant.headers, policy_code="basic")
    count = "select count(*)::int as n from lic.events where account_id = %s"
    before = superuser(database_url, count, (tenant.id,))[0]["n"]
    for _ in range(3):
        await validate(client, tenant.headers, key=made["key"])
    assert superuser(database_url, count, (tenant.id,))[0]["n"] == before


@pytest.mark.parametrize(
    "body",
    [{}, {"key": 1}, {"key": "k", "entitlements": "sso"}, {"key": "k", "scope": {}}],
)
async def test_bad_validation_requests_are_422(client, tenant, body):
    response = await client.post("/v1/licenses/validate", headers=tenant.headers, json=body)
    assert_error(response, 422, "invalid_parameter")


# Entitlement checks


async def check(client: Any, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = await client.post(CHECK, headers=headers, json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert set(answer) == {"object", "allowed", "reason", "license_id"}
    assert answer["object"] == "entitlement_check"
    return answer


async def test_check_by_license(client, tenant, database_url):
    made = await create_license(client, tenant.headers, policy_code="basic")
    assert await check(client, tenant.headers, entitlement="sso", license_id=made["id"]) == {
        "object": "entitlement_check",
        "allowed": True,
        "reason": "ENTITLED",
        "license_id": made["id"],
    }
    by_key = await check(client, tenant.headers, entitlement="sso", license_key=made["key"])
    assert (by_key["allowed"], by_key["reason"]) == (True, "ENTITLED")
    lacking = await check(client, tenant.headers, entitlement="audit", license_id=made["id"])
    assert (lacking["allowed"], lacking["reason"]) == (False, "NOT_ENTITLED")
    unknown = await check(client, tenant.headers, entitlement="sso", license_id=str(uuid.uuid4()))
    assert (unknown["allowed"], unknown["reason"], unknown["license_id"]) == (
        False,
        "LICENSE_NOT_FOUND",
        None,
    )
    garbage = await check(client, tenant.headers, entitlement="sso", license_key="garbage")
    assert garbage["reason"] == "LICENSE_NOT_FOUND"
    for state, reason in [
        ({"status": "suspended"}, "SUSPENDED"),
        ({"status": "past_due", "grace_ends_at": datetime.now(UTC) - timedelta(days=1)}, "OVERDUE"),
        ({"status": "active", "expires_at": datetime.now(UTC) - timedelta(days=1)}, "EXPIRED"),
        ({"status": "canceled"}, "CANCELED"),
    ]:
        set_license(database_url, made["id"], **state)
        answer = await check(client, tenant.headers, entitlement="sso", license_id=made["id"])
        assert (answer["allowed"], answer["reason"]) == (False, reason)


async def test_check_by_customer_across_seats(client, tenant, database_url):
    owner = make_customer(database_url, tenant.id, "user-1")
    member = make_customer(database_url, tenant.id, "user-2")
    make_customer(database_url, tenant.id, "user-3")
    made = await create_license(client, tenant.headers, policy_code="basic", customer_id=owner)
    add_seat(database_url, made["id"], member)
    for external_id in ("user-1", "user-2"):
        answer = await check(client, tenant.headers, entitlement="api", customer_external_id=external_id)
        assert (answer["allowed"], answer["reason"], answer["license_id"]) == (True, "ENTITLED", made["id"])
    lacking = await check(client, tenant.headers, entitlement="audit", customer_external_id="user-1")
    assert (lacking["allowed"], lacking["reason"]) == (False, "NOT_ENTITLED")
    nothing = await check(client, tenant.headers, entitlement="api", customer_external_id="user-3")
    assert nothing["reason"] == "NO_VALID_LICENSE"
    nobody = await check(client, tenant.headers, entitlement="api", customer_external_id="nobody")
    assert nobody["reason"] == "CUSTOMER_NOT_FOUND"
    set_license(database_url, made["id"], status="suspended")
    suspended = await check(client, tenant.headers, entitlement="api", customer_external_id="user-2")
    assert (suspended["allowed"], suspended["reason"]) == (False, "NO_VALID_LICENSE")


@pytest.mark.parametrize(
    "body",
    [
        {"entitlement": "sso"},
        {"entitlement": "sso", "license_id": str(uuid.uuid4()), "customer_external_id": "u"},
        {"license_key": "k"},
        {"entitlement": "sso", "license_id": "not-a-uuid"},
    ],
)
async def test_bad_checks_are_422(client, tenant, body):
    assert_error(await client.post(CHECK, headers=tenant.headers, json=body), 422, "invalid_parameter")


async def test_checks_need_a_secret_key_and_stay_in_the_tenant(client, make_account, database_url):
    a, b = make_account("A"), make_account("B")
    for account in (a, b):
        make_policy(database_url, account.id, "basic")
        make_entitlement(database_url, account.id, "sso", ["basic"])
    owned_by_b = await create_license(client, b.headers, policy_code="basic")
    a_pk = await publishable_key(client, a.headers)
    response = await client.post(CHECK, headers=a_pk, json={"entitlement": "sso", "license_key": "k"})
    assert_error(response, 403, "forbidden")
    crossed = await check(client, a.headers, entitlement="sso", license_id=owned_by_b["id"])
    assert crossed["reason"] == "LICENSE_NOT_FOUND"
    crossed = await check(client, a.headers, entitlement="sso", license_key=owned_by_b["key"])
    assert crossed["reason"] == "LICENSE_NOT_FOUND"
