"""Entitlements over HTTP: create, list, get, update, and another tenant's view of them."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from support import assert_error

ENTITLEMENT_FIELDS = {"object", "id", "code", "name", "metadata", "created_at", "updated_at"}


async def create_entitlement(
    client: Any, headers: dict[str, str], code: str, **fields: Any
) -> dict[str, Any]:
    response = await client.post(
        "/v1/entitlements", headers=headers, json={"code": code, "name": code, **fields}
    )
    assert response.status_code == 201, response.text
    return response.json()


async def test_created_entitlement_is_returned_and_found(client, account):
    created = await create_entitlement(client, account.headers, "api:write", metadata={"beta": True})
    assert set(created) == ENTITLEMENT_FIELDS
    assert (created["object"], created["code"], created["name"]) == ("entitlement", "api:write", "api:write")
    assert created["metadata"] == {"beta": True}
    got = await client.get(f"/v1/entitlements/{created['id']}", headers=account.headers)
    assert got.status_code == 200
    assert got.json() == created


async def test_metadata_defaults_to_an_empty_object(client, account):
    assert (await create_entitlement(client, account.headers, "sso"))["metadata"] == {}


async def test_duplicate_code_is_a_conflict(client, account):
    await create_entitlement(client, account.headers, "sso")
    response = await client.post(
        "/v1/entitlements", headers=account.headers, json={"code": "sso", "name": "Again"}
    )
    assert_error(response, 409, "already_exists", "code")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"code": "SSO", "name": "x"}, "code"),
        ({"code": "a b", "name": "x"}, "code"),
        ({"code": "", "name": "x"}, "code"),
        ({"code": "sso", "name": ""}, "name"),
        ({"code": "sso", "name": "n" * 201}, "name"),
        ({"code": "sso"}, "name"),
        ({"name": "x"}, "code"),
        ({"code": "sso", "name": "x", "metadata": "text"}, "metadata"),
        ({"code": "sso", "name": "x", "extra": 1}, "extra"),
    ],
)
async def test_invalid_entitlements_are_refused_with_the_parameter_named(client, account, body, param):
    response = await client.post("/v1/entitlements", headers=account.headers, json=body)
    assert_error(response, 422, "invalid_parameter", param)
    assert (await client.get("/v1/entitlements", headers=account.headers)).json()["data"] == []


async def test_update_changes_name_and_replaces_metadata(client, account):
    created = await create_entitlement(client, account.headers, "sso", metadata={"a": 1})
    response = await client.post(
        f"/v1/entitlements/{created['id']}", headers=account.headers, json={"name": "Single sign-on"}
    )
    assert response.status_code == 200, response.text
    assert (response.json()["name"], response.json()["metadata"]) == ("Single sign-on", {"a": 1})
    response = await client.post(
        f"/v1/entitlements/{created['id']}", headers=account.headers, json={"metadata": {"b": 2}}
    )
    assert response.json()["metadata"] == {"b": 2}
    assert response.json()["code"] == "sso"
    got = await client.get(f"/v1/entitlements/{created['id']}", headers=account.headers)
    assert got.json() == response.json()


@pytest.mark.parametrize(
    ("body", "param"), [({"name": ""}, "name"), ({"name": None}, "name"), ({"code": "x"}, "code")]
)
async def test_invalid_updates_are_refused(client, account, body, param):
    created = await create_entitlement(client, account.headers, "sso")
    response = await client.post(f"/v1/entitlements/{created['id']}", headers=account.headers, json=body)
    assert_error(response, 422, "invalid_parameter", param)
    assert (await client.get(f"/v1/entitlements/{created['id']}", headers=account.headers)).json() == created


async def test_unknown_entitlement_is_a_404(client, account):
    missing = uuid.uuid4()
    assert_error(
        await client.get(f"/v1/entitlements/{missing}", headers=account.headers),
        404,
        "resource_missing",
        "id",
    )
    response = await client.post(f"/v1/entitlements/{missing}", headers=account.headers, json={"name": "x"})
    assert_error(response, 404, "resource_missing", "id")


async def test_list_pages_newest_first(client, account):
    made = [(await create_entitlement(client, account.headers, f"feature-{i}"))["id"] for i in range(5)]
    newest_first = list(reversed(made))
    first = (await client.get("/v1/entitlements", headers=account.headers, params={"limit": 3})).json()
    assert first["object"] == "list"
    assert [e["id"] for e in first["data"]] == newest_first[:3]
    assert first["has_more"] is True
    rest = (
        await client.get(
            "/v1/entitlements",
            headers=account.headers,
            params={"limit": 3, "starting_after": newest_first[2]},
        )
    ).json()
    assert [e["id"] for e in rest["data"]] == newest_first[3:]
    assert rest["has_more"] is False
    back = (
        await client.get(
            "/v1/entitlements", headers=account.headers, params={"limit": 2, "ending_before": newest_first[3]}
        )
    ).json()
    assert [e["id"] for e in back["data"]] == newest_first[1:3]
    assert back["has_more"] is True


async def test_another_accounts_entitlements_are_not_found_and_left_unchanged(client, make_account):
    a, b = make_account("A"), make_account("B")
    theirs = await create_entitlement(client, b.headers, "sso")
    assert_error(
        await client.get(f"/v1/entitlements/{theirs['id']}", headers=a.headers), 404, "resource_missing", "id"
    )
    response = await client.post(f"/v1/entitlements/{theirs['id']}", headers=a.headers, json={"name": "Mine"})
    assert_error(response, 404, "resource_missing", "id")
    assert (await client.get(f"/v1/entitlements/{theirs['id']}", headers=b.headers)).json() == theirs
    mine = await create_entitlement(client, a.headers, "sso")  # codes are per account
    assert [e["id"] for e in (await client.get("/v1/entitlements", headers=a.headers)).json()["data"]] == [
        mine["id"]
    ]
    back = await client.get("/v1/entitlements", headers=b.headers, params={"ending_before": theirs["id"]})
    assert back.json()["data"] == []
