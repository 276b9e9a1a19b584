"""API keys over HTTP: create, get, list, roll, revoke, and the account they belong to."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from support import all_key_ids, assert_error, bearer, create_key, with_checksum

KEY_FIELDS = {
    "object",
    "id",
    "kind",
    "name",
    "redacted",
    "expires_at",
    "revoked_at",
    "last_used_at",
    "rolled_from",
    "created_at",
    "secret",
}


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.mark.parametrize(("kind", "prefix"), [("secret", "lic_sk_"), ("publishable", "lic_pk_")])
async def test_created_key_is_shown_once_with_its_secret(client, account, kind, prefix):
    response = await client.post("/v1/api_keys", headers=account.headers, json={"kind": kind, "name": "ci"})
    assert response.status_code == 201
    key = response.json()
    assert set(key) == KEY_FIELDS
    assert key["object"] == "api_key"
    assert key["kind"] == kind
    assert key["name"] == "ci"
    assert key["revoked_at"] is None and key["expires_at"] is None and key["rolled_from"] is None
    secret = key["secret"]
    assert re.fullmatch(rf"{prefix}{uuid.UUID(account.id).hex}[0-9a-f]{{40}}[0-9a-f]{{8}}", secret)
    assert with_checksum(secret[:-8]) == secret
    assert key["redacted"] == f"{secret[:7]}…{secret[-4:]}"


async def test_created_secret_key_authenticates_as_the_same_account(client, account):
    key = await create_key(client, account.headers)
    response = await client.get("/v1/account", headers=bearer(key["secret"]))
    assert response.status_code == 200
    assert response.json()["id"] == account.id


async def test_secret_is_never_shown_after_creation(client, account):
    key = await create_key(client, account.headers, name="hidden")
    got = await client.get(f"/v1/api_keys/{key['id']}", headers=account.headers)
    listed = await client.get("/v1/api_keys", headers=account.headers)
    for response in (got, listed):
        assert response.status_code == 200
        assert key["secret"] not in response.text
        assert key["secret"][7:-4] not in response.text
    assert got.json()["secret"] is None
    assert all(item["secret"] is None for item in listed.json()["data"])


async def test_get_returns_the_key_as_created_without_its_secret(client, account):
    key = await create_key(client, account.headers, "publishable", name="web")
    response = await client.get(f"/v1/api_keys/{key['id']}", headers=account.headers)
    assert response.status_code == 200
    assert response.json() == {**key, "secret": None}


async def test_list_shows_every_key_of_the_account(client, account):
    made = [await create_key(client, account.headers, kind) for kind in ("secret", "publishable")]
    page = (await client.get("/v1/api_keys", headers=account.headers)).json()
    assert page["object"] == "list"
    assert page["has_more"] is False
    assert [key["id"] for key in page["data"][:2]] == [made[1]["id"], made[0]["id"]]
    assert len(page["data"]) == 3  # and the account's first key


async def test_using_a_key_records_last_used_at(client, account):
    key = await create_key(client, account.headers)
    assert key["last_used_at"] is None
    await client.get("/v1/account", headers=bearer(key["secret"]))
    used = (await client.get(f"/v1/api_keys/{key['id']}", headers=account.headers)).json()
    assert used["last_used_at"] is not None


async def test_rolled_key_is_replaced_and_the_old_one_works_until_expires_at(client, account):
    old = await create_key(client, account.headers, name="backend")
    overlap_ends = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    response = await client.post(
        f"/v1/api_keys/{old['id']}/roll",
        headers=account.headers,
        json={"expires_at": overlap_ends.isoformat()},
    )
    assert response.status_code == 200
    new = response.json()
    assert new["id"] != old["id"]
    assert new["rolled_from"] == old["id"]
    assert (new["kind"], new["name"]) == ("secret", "backend")
    assert new["secret"] and new["secret"] != old["secret"]
    assert new["expires_at"] is None
    for secret in (new["secret"], old["secret"]):
        assert (await client.get("/v1/account", headers=bearer(secret))).status_code == 200
    old_now = (await client.get(f"/v1/api_keys/{old['id']}", headers=account.headers)).json()
    assert at(old_now["expires_at"]) == overlap_ends
    assert old_now["revoked_at"] is None


async def test_roll_without_expires_at_keeps_the_old_key_for_24_hours(client, account):
    old = await create_key(client, account.headers)
    before = datetime.now(UTC)
    response = await client.post(f"/v1/api_keys/{old['id']}/roll", headers=account.headers)
    assert response.status_code == 200
    expires_at = at(
        (await client.get(f"/v1/api_keys/{old['id']}", headers=account.headers)).json()["expires_at"]
    )
    assert (
        before + timedelta(hours=23, minutes=59)
        < expires_at
        < datetime.now(UTC) + timedelta(hours=24, minutes=1)
    )


@pytest.mark.parametrize("delta", [timedelta(days=7, minutes=1), timedelta(days=365), -timedelta(minutes=1)])
async def test_roll_with_expires_at_outside_the_next_7_days_is_a_422(client, account, delta):
    old = await create_key(client, account.headers)
    expires_at = (datetime.now(UTC) + delta).isoformat()
    response = await client.post(
        f"/v1/api_keys/{old['id']}/roll", headers=account.headers, json={"expires_at": expires_at}
    )
    assert_error(response, 422, "invalid_parameter", "expires_at")
    # Nothing changed: the old key has no expiry and no successor.
    assert (await client.get(f"/v1/api_keys/{old['id']}", headers=account.headers)).json()[
        "expires_at"
    ] is None
    assert len(await all_key_ids(client, account.headers)) == 2


async def test_rolling_a_revoked_key_is_a_conflict(client, account):
    key = await create_key(client, account.headers)
    assert (await client.delete(f"/v1/api_keys/{key['id']}", headers=account.headers)).status_code == 200
    response = await client.post(f"/v1/api_keys/{key['id']}/roll", headers=account.headers)
    assert_error(response, 409, "invalid_state")
    assert len(await all_key_ids(client, account.headers)) == 2


async def test_rolling_an_unknown_key_is_a_404(client, account):
    response = await client.post(f"/v1/api_keys/{uuid.uuid4()}/roll", headers=account.headers)
    assert_error(response, 404, "resource_missing", "id")


async def test_revoked_key_stops_working_at_once(client, account):
    key = await create_key(client, account.headers)
    assert (await client.get("/v1/account", headers=bearer(key["secret"]))).status_code == 200
    response = await client.delete(f"/v1/api_keys/{key['id']}", headers=account.headers)
    assert response.status_code == 200
    revoked = response.json()
    assert revoked["id"] == key["id"]
    assert revoked["revoked_at"] is not None
    assert revoked["secret"] is None
    error = assert_error(
        await client.get("/v1/account", headers=bearer(key["secret"])), 401, "unauthenticated"
    )
    assert "revoked" in error["message"]


async def test_revoking_a_revoked_key_returns_it_unchanged(client, account):
    key = await create_key(client, account.headers)
    first = (await client.delete(f"/v1/api_keys/{key['id']}", headers=account.headers)).json()
    again = await client.delete(f"/v1/api_keys/{key['id']}", headers=account.headers)
    assert again.status_code == 200
    assert again.json()["revoked_at"] == first["revoked_at"]


async def test_a_key_can_revoke_itself_while_another_secret_key_is_active(client, account):
    key = await create_key(client, account.headers)
    response = await client.delete(f"/v1/api_keys/{key['id']}", headers=bearer(key["secret"]))
    assert response.status_code == 200
    assert (await client.get("/v1/account", headers=bearer(key["secret"]))).status_code == 401


async def test_revoking_the_last_active_secret_key_is_a_conflict(client, account):
    first_key_id = (await all_key_ids(client, account.headers))[0]
    await create_key(client, account.headers, "publishable")  # publishable keys do not count
    response = await client.delete(f"/v1/api_keys/{first_key_id}", headers=account.headers)
    assert_error(response, 409, "invalid_state")
    assert (await client.get("/v1/account", headers=account.headers)).status_code == 200


async def test_after_a_roll_the_new_key_may_revoke_the_old_and_is_then_the_last(client, account):
    old_id = (await all_key_ids(client, account.headers))[0]
    rolled = await client.post(f"/v1/api_keys/{old_id}/roll", headers=account.headers)
    new = rolled.json()
    # The new key may revoke the old one (it is still active, but not the last) ...
    assert (await client.delete(f"/v1/api_keys/{old_id}", headers=bearer(new["secret"]))).status_code == 200
    # ... and is then the last active secret key itself.
    response = await client.delete(f"/v1/api_keys/{new['id']}", headers=bearer(new["secret"]))
    assert_error(response, 409, "invalid_state")


async def test_revoking_an_unknown_key_is_a_404(client, account):
    assert_error(
        await client.delete(f"/v1/api_keys/{uuid.uuid4()}", headers=account.headers), 404, "resource_missing"
    )


async def test_account_shows_name_plan_limits_and_active_key_count(client, make_account):
    account = make_account("Acme Ltd", "growth")
    response = await client.get("/v1/account", headers=account.headers)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {
        "object",
        "id",
        "name",
        "plan",
        "limits",
        "usage",
        "created_at",
        "status",
        "status_reason",
    }
    assert body["object"] == "account"
    assert (body["id"], body["name"], body["plan"]) == (account.id, "Acme Ltd", "growth")
    assert (body["status"], body["status_reason"]) == ("active", None)
    assert body["limits"] == {
        "active_licenses": 10000,
        "agents": 500,
        "webhook_endpoints": 256,
        "custom_branding": True,
        "embeddable_analytics": True,
    }
    assert body["usage"] == {"active_licenses": 0, "agents": 0, "webhook_endpoints": 0, "api_keys": 1}


async def test_enterprise_limits_are_null_meaning_unlimited(client, make_account):
    account = make_account("Big Co", "enterprise")
    limits = (await client.get("/v1/account", headers=account.headers)).json()["limits"]
    assert (
        limits["active_licenses"] is None and limits["agents"] is None and limits["webhook_endpoints"] is None
    )


async def test_account_usage_counts_only_active_keys(client, account):
    async def active_keys() -> int:
        return (await client.get("/v1/account", headers=account.headers)).json()["usage"]["api_keys"]

    assert await active_keys() == 1
    secret = await create_key(client, account.headers)
    publishable = await create_key(client, account.headers, "publishable")
    assert await active_keys() == 3
    await client.delete(f"/v1/api_keys/{publishable['id']}", headers=account.headers)
    assert await active_keys() == 2
    now = datetime.now(UTC) + timedelta(minutes=5)
    await client.post(
        f"/v1/api_keys/{secret['id']}/roll", headers=account.headers, json={"expires_at": now.isoformat()}
    )
    assert await active_keys() == 3  # the old key is still in its overlap
