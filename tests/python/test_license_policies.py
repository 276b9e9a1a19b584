"""License policies over HTTP: create, list, get, update (null clears),
archive, attach and detach entitlements, and another tenant's view of them."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from support import assert_error

POLICY_FIELDS = {
    "object",
    "id",
    "code",
    "name",
    "duration",
    "max_machines",
    "max_users",
    "require_fingerprint",
    "heartbeat_interval",
    "grace_period",
    "refund_action",
    "dispute_action",
    "entitlements",
    "metadata",
    "archived_at",
    "created_at",
    "updated_at",
}


async def create_policy(
    client: Any, headers: dict[str, str], code: str = "pro", **fields: Any
) -> dict[str, Any]:
    response = await client.post(
        "/v1/license_policies", headers=headers, json={"code": code, "name": code.title(), **fields}
    )
    assert response.status_code == 201, response.text
    return response.json()


async def create_entitlement(client: Any, headers: dict[str, str], code: str) -> dict[str, Any]:
    response = await client.post("/v1/entitlements", headers=headers, json={"code": code, "name": code})
    assert response.status_code == 201, response.text
    return response.json()


async def list_codes(client: Any, headers: dict[str, str], **params: Any) -> list[str]:
    response = await client.get("/v1/license_policies", headers=headers, params=params)
    assert response.status_code == 200, response.text
    return [policy["code"] for policy in response.json()["data"]]


async def test_created_policy_has_defaults_for_what_was_left_out(client, account):
    policy = await create_policy(client, account.headers, "basic")
    assert set(policy) == POLICY_FIELDS
    assert policy["object"] == "license_policy"
    assert (policy["code"], policy["name"]) == ("basic", "Basic")
    assert policy["duration"] is None and policy["max_machines"] is None and policy["max_users"] is None
    assert policy["heartbeat_interval"] is None and policy["require_fingerprint"] is False
    assert (policy["grace_period"], policy["refund_action"], policy["dispute_action"]) == (
        "P7D",
        "suspend",
        "suspend",
    )
    assert (policy["entitlements"], policy["metadata"], policy["archived_at"]) == ([], {}, None)


async def test_created_policy_keeps_every_field_with_iso_durations(client, account):
    fields = {
        "duration": "P1Y",
        "max_machines": 3,
        "max_users": 10,
        "require_fingerprint": True,
        "heartbeat_interval": "PT10M",
        "grace_period": "P14D",
        "refund_action": "none",
        "dispute_action": "none",
        "metadata": {"tier": 2, "tags": ["a"]},
    }
    policy = await create_policy(client, account.headers, "pro", **fields)
    assert {key: policy[key] for key in fields} == fields
    got = await client.get(f"/v1/license_policies/{policy['id']}", headers=account.headers)
    assert got.status_code == 200
    assert got.json() == policy


@pytest.mark.parametrize(
    ("given", "shown"),
    [("P1M", "P1M"), ("P2W", "P14D"), ("P1DT12H", "P1DT12H"), ("PT36H", "PT36H"), ("P1Y6M", "P1Y6M")],
)
async def test_durations_are_iso_8601_both_ways(client, account, given, shown):
    policy = await create_policy(client, account.headers, duration=given)
    assert policy["duration"] == shown


async def test_duplicate_code_is_a_conflict(client, account):
    await create_policy(client, account.headers, "pro")
    response = await client.post(
        "/v1/license_policies", headers=account.headers, json={"code": "pro", "name": "X"}
    )
    assert_error(response, 409, "already_exists", "code")
    assert await list_codes(client, account.headers) == ["pro"]


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"code": "Pro"}, "code"),
        ({"code": "has space"}, "code"),
        ({"code": "x" * 65}, "code"),
        ({"name": ""}, "name"),
        ({"duration": "P0D"}, "duration"),
        ({"max_machines": 0}, "max_machines"),
        ({"max_users": -1}, "max_users"),
        ({"heartbeat_interval": "PT30S"}, "heartbeat_interval"),
        ({"metadata": {"nested": {"ok": True}}, "max_users": 0}, "max_users"),
    ],
)
async def test_invalid_values_are_refused_with_the_parameter_named(client, account, fields, param):
    body = {"code": "ok", "name": "Ok", **fields}
    response = await client.post("/v1/license_policies", headers=account.headers, json=body)
    assert_error(response, 422, "invalid_parameter", param)
    assert await list_codes(client, account.headers) == []


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"duration": "1 month"}, "duration"),
        ({"duration": "P1X"}, "duration"),
        ({"duration": "P"}, "duration"),
        ({"duration": "-P1D"}, "duration"),
        ({"grace_period": "PT"}, "grace_period"),
        ({"refund_action": "refund"}, "refund_action"),
        ({"dispute_action": None}, "dispute_action"),
        ({"max_machines": "three"}, "max_machines"),
        ({"max_machines": 2**31}, "max_machines"),
        ({"max_users": -(2**63)}, "max_users"),
        ({"metadata": ["not", "an", "object"]}, "metadata"),
        ({"unknown": 1}, "unknown"),
    ],
)
async def test_malformed_bodies_are_refused_before_the_database(client, account, fields, param):
    body = {"code": "ok", "name": "Ok", **fields}
    response = await client.post("/v1/license_policies", headers=account.headers, json=body)
    assert_error(response, 422, "invalid_parameter", param)


async def test_missing_code_is_a_422(client, account):
    response = await client.post("/v1/license_policies", headers=account.headers, json={"name": "No code"})
    assert_error(response, 422, "invalid_parameter", "code")


async def test_unknown_policy_is_a_404(client, account):
    missing = uuid.uuid4()
    for method, path in (
        ("GET", f"/v1/license_policies/{missing}"),
        ("POST", f"/v1/license_policies/{missing}/archive"),
        ("PUT", f"/v1/license_policies/{missing}/entitlements/sso"),
        ("DELETE", f"/v1/license_policies/{missing}/entitlements/sso"),
    ):
        assert_error(
            await client.request(method, path, headers=account.headers), 404, "resource_missing", "id"
        )
    response = await client.post(
        f"/v1/license_policies/{missing}", headers=account.headers, json={"name": "x"}
    )
    assert_error(response, 404, "resource_missing", "id")


async def test_update_changes_what_is_given_and_null_clears(client, account):
    policy = await create_policy(client, account.headers, duration="P1M", max_machines=2, max_users=3)
    response = await client.post(
        f"/v1/license_policies/{policy['id']}",
        headers=account.headers,
        json={"name": "Pro 2", "duration": "P1Y", "max_machines": None, "metadata": {"v": 2}},
    )
    assert response.status_code == 200, response.text
    updated = response.json()
    assert (updated["name"], updated["duration"], updated["max_machines"]) == ("Pro 2", "P1Y", None)
    assert (updated["max_users"], updated["metadata"], updated["code"]) == (3, {"v": 2}, "pro")
    assert updated["updated_at"] >= policy["updated_at"]
    got = await client.get(f"/v1/license_policies/{policy['id']}", headers=account.headers)
    assert got.json() == updated


async def test_empty_update_changes_nothing(client, account):
    policy = await create_policy(client, account.headers, max_machines=2)
    response = await client.post(f"/v1/license_policies/{policy['id']}", headers=account.headers, json={})
    assert response.status_code == 200
    assert response.json() == policy


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"name": None}, "name"),
        ({"grace_period": None}, "grace_period"),
        ({"max_users": 0}, "max_users"),
        ({"duration": "P1Q"}, "duration"),
        ({"code": "other"}, "code"),
    ],
)
async def test_invalid_updates_are_refused_and_change_nothing(client, account, fields, param):
    policy = await create_policy(client, account.headers)
    response = await client.post(f"/v1/license_policies/{policy['id']}", headers=account.headers, json=fields)
    assert_error(response, 422, "invalid_parameter", param)
    assert (
        await client.get(f"/v1/license_policies/{policy['id']}", headers=account.headers)
    ).json() == policy


async def test_archived_policy_leaves_the_default_list_and_archiving_twice_is_a_no_op(client, account):
    basic = await create_policy(client, account.headers, "basic")
    await create_policy(client, account.headers, "pro")
    response = await client.post(f"/v1/license_policies/{basic['id']}/archive", headers=account.headers)
    assert response.status_code == 200
    archived = response.json()
    assert archived["archived_at"] is not None
    again = await client.post(f"/v1/license_policies/{basic['id']}/archive", headers=account.headers)
    assert again.status_code == 200
    assert again.json() == archived
    assert await list_codes(client, account.headers) == ["pro"]
    assert await list_codes(client, account.headers, include_archived="true") == ["pro", "basic"]
    got = await client.get(f"/v1/license_policies/{basic['id']}", headers=account.headers)
    assert got.json() == archived


async def test_attach_and_detach_entitlements(client, account):
    policy = await create_policy(client, account.headers)
    for code in ("sso", "api:write", "export"):
        await create_entitlement(client, account.headers, code)
    base = f"/v1/license_policies/{policy['id']}/entitlements"
    for code in ("sso", "export", "api:write", "sso"):
        response = await client.put(f"{base}/{code}", headers=account.headers)
        assert response.status_code == 200, response.text
    assert response.json()["entitlements"] == ["api:write", "export", "sso"]
    response = await client.delete(f"{base}/export", headers=account.headers)
    assert response.status_code == 200
    assert response.json()["entitlements"] == ["api:write", "sso"]
    again = await client.delete(f"{base}/export", headers=account.headers)
    assert again.status_code == 200
    assert again.json() == response.json()
    got = await client.get(f"/v1/license_policies/{policy['id']}", headers=account.headers)
    assert got.json()["entitlements"] == ["api:write", "sso"]


async def test_attaching_an_unknown_entitlement_is_a_404(client, account):
    policy = await create_policy(client, account.headers)
    for method in ("PUT", "DELETE"):
        response = await client.request(
            method, f"/v1/license_policies/{policy['id']}/entitlements/nope", headers=account.headers
        )
        assert_error(response, 404, "resource_missing", "code")


async def test_list_pages_newest_first(client, account):
    codes = [f"tier-{i}" for i in range(5)]
    for code in codes:
        await create_policy(client, account.headers, code)
    first = (await client.get("/v1/license_policies", headers=account.headers, params={"limit": 2})).json()
    assert first["object"] == "list"
    assert [p["code"] for p in first["data"]] == ["tier-4", "tier-3"]
    assert first["has_more"] is True
    rest = (
        await client.get(
            "/v1/license_policies",
            headers=account.headers,
            params={"limit": 10, "starting_after": first["data"][-1]["id"]},
        )
    ).json()
    assert [p["code"] for p in rest["data"]] == ["tier-2", "tier-1", "tier-0"]
    assert rest["has_more"] is False
    back = (
        await client.get(
            "/v1/license_policies",
            headers=account.headers,
            params={"limit": 1, "ending_before": rest["data"][0]["id"]},
        )
    ).json()
    assert [p["code"] for p in back["data"]] == ["tier-3"]
    assert back["has_more"] is True


async def test_publishable_key_may_not_manage_policies(client, account):
    created = await client.post("/v1/api_keys", headers=account.headers, json={"kind": "publishable"})
    headers = {"Authorization": f"Bearer {created.json()['secret']}"}
    response = await client.post("/v1/license_policies", headers=headers, json={"code": "x", "name": "X"})
    assert_error(response, 403, "forbidden")
    assert_error(await client.get("/v1/license_policies", headers=headers), 403, "forbidden")


async def test_create_is_idempotent_with_an_idempotency_key(client, account):
    headers = {**account.headers, "Idempotency-Key": "policy-1"}
    body = {"code": "pro", "name": "Pro"}
    first = await client.post("/v1/license_policies", headers=headers, json=body)
    again = await client.post("/v1/license_policies", headers=headers, json=body)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json() == first.json()
    assert await list_codes(client, account.headers) == ["pro"]


async def test_another_accounts_policies_are_not_found_and_left_unchanged(client, make_account):
    a, b = make_account("A"), make_account("B")
    theirs = await create_policy(client, b.headers, "pro", max_machines=1)
    await create_entitlement(client, b.headers, "sso")
    await create_entitlement(client, a.headers, "sso")
    path = f"/v1/license_policies/{theirs['id']}"
    for method, route, body in (
        ("GET", path, None),
        ("POST", path, {"name": "Mine"}),
        ("POST", f"{path}/archive", None),
        ("PUT", f"{path}/entitlements/sso", None),
        ("DELETE", f"{path}/entitlements/sso", None),
    ):
        response = await client.request(method, route, headers=a.headers, json=body)
        assert_error(response, 404, "resource_missing", "id")
    assert (await client.get(path, headers=b.headers)).json() == theirs
    # Codes are per account: A may use B's code, and lists never cross.
    mine = await create_policy(client, a.headers, "pro")
    assert [
        p["id"] for p in (await client.get("/v1/license_policies", headers=a.headers)).json()["data"]
    ] == [mine["id"]]
    listed_for_b = await client.get(
        "/v1/license_policies",
        headers=b.headers,
        params={"include_archived": "true", "ending_before": mine["id"]},
    )
    assert listed_for_b.json()["data"] == []


async def test_a_duration_out_of_range_is_a_422_not_a_500(client, account):
    response = await client.post(
        "/v1/license_policies",
        headers=account.headers,
        json={"code": "x", "name": "X", "duration": "P1000000000Y"},
    )
    assert_error(response, 422, "invalid_parameter")
