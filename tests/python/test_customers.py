"""Customers over HTTP: create, list with filters, get, update (null clears),
and another tenant's view of them."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from support import assert_error

CUSTOMER_FIELDS = {
    "object",
    "id",
    "email",
    "name",
    "external_id",
    "stripe_customer_id",
    "metadata",
    "created_at",
    "updated_at",
}


async def create_customer(client: Any, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    response = await client.post("/v1/customers", headers=headers, json=fields)
    assert response.status_code == 201, response.text
    return response.json()


async def list_ids(client: Any, headers: dict[str, str], **params: Any) -> list[str]:
    response = await client.get("/v1/customers", headers=headers, params=params)
    assert response.status_code == 200, response.text
    return [customer["id"] for customer in response.json()["data"]]


async def test_created_customer_keeps_every_field(client, account):
    fields = {
        "email": "Ada@Example.com",
        "name": "Ada",
        "external_id": "user-1",
        "stripe_customer_id": "cus_Ada1",
        "metadata": {"vip": True},
    }
    created = await create_customer(client, account.headers, **fields)
    assert set(created) == CUSTOMER_FIELDS
    assert created["object"] == "customer"
    assert {key: created[key] for key in fields} == fields
    got = await client.get(f"/v1/customers/{created['id']}", headers=account.headers)
    assert got.status_code == 200
    assert got.json() == created


async def test_every_field_is_optional(client, account):
    created = await create_customer(client, account.headers)
    assert [created[k] for k in ("email", "name", "external_id", "stripe_customer_id")] == [None] * 4
    assert created["metadata"] == {}


@pytest.mark.parametrize("field", ["external_id", "stripe_customer_id"])
async def test_duplicate_external_or_stripe_id_is_a_conflict(client, account, field):
    value = "cus_Dup" if field == "stripe_customer_id" else "user-dup"
    await create_customer(client, account.headers, **{field: value})
    response = await client.post("/v1/customers", headers=account.headers, json={field: value})
    assert_error(response, 409, "already_exists", field)
    assert len(await list_ids(client, account.headers)) == 1


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"email": "not-an-email"}, "email"),
        ({"email": "a b@example.com"}, "email"),
        ({"name": ""}, "name"),
        ({"external_id": ""}, "external_id"),
        ({"external_id": "x" * 201}, "external_id"),
        ({"stripe_customer_id": "sub_123"}, "stripe_customer_id"),
        ({"metadata": [1]}, "metadata"),
        ({"email": 5}, "email"),
        ({"phone": "123"}, "phone"),
    ],
)
async def test_invalid_customers_are_refused_with_the_parameter_named(client, account, body, param):
    response = await client.post("/v1/customers", headers=account.headers, json=body)
    assert_error(response, 422, "invalid_parameter", param)
    assert await list_ids(client, account.headers) == []


async def test_email_filter_ignores_case_and_external_id_filter_is_exact(client, account):
    ada = await create_customer(client, account.headers, email="Ada@Example.com", external_id="user-1")
    ada2 = await create_customer(client, account.headers, email="ada@example.COM")
    await create_customer(client, account.headers, email="bob@example.com", external_id="user-2")
    assert await list_ids(client, account.headers, email="ADA@EXAMPLE.COM") == [ada2["id"], ada["id"]]
    assert await list_ids(client, account.headers, external_id="user-1") == [ada["id"]]
    assert await list_ids(client, account.headers, external_id="USER-1") == []
    assert await list_ids(client, account.headers, email="ada@example.com", external_id="user-1") == [
        ada["id"]
    ]
    assert await list_ids(client, account.headers, email="nobody@example.com") == []


async def test_filters_page_with_cursors(client, account):
    made = [
        (await create_customer(client, account.headers, email="same@example.com"))["id"] for _ in range(4)
    ]
    await create_customer(client, account.headers, email="other@example.com")
    newest_first = list(reversed(made))
    first = (
        await client.get(
            "/v1/customers", headers=account.headers, params={"email": "same@example.com", "limit": 3}
        )
    ).json()
    assert [c["id"] for c in first["data"]] == newest_first[:3]
    assert first["has_more"] is True
    rest = (
        await client.get(
            "/v1/customers",
            headers=account.headers,
            params={"email": "same@example.com", "limit": 3, "starting_after": newest_first[2]},
        )
    ).json()
    assert ([c["id"] for c in rest["data"]], rest["has_more"]) == (newest_first[3:], False)
    assert_error(
        await client.get("/v1/customers", headers=account.headers, params={"limit": 0}),
        422,
        "invalid_parameter",
    )


async def test_update_changes_what_is_given_and_null_clears(client, account):
    created = await create_customer(client, account.headers, email="bob@example.com", external_id="user-2")
    response = await client.post(
        f"/v1/customers/{created['id']}",
        headers=account.headers,
        json={"name": "Bob", "external_id": None, "stripe_customer_id": "cus_Bob", "metadata": {"a": 1}},
    )
    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["email"] == "bob@example.com"
    assert (updated["name"], updated["external_id"], updated["stripe_customer_id"]) == (
        "Bob",
        None,
        "cus_Bob",
    )
    assert updated["metadata"] == {"a": 1}
    assert (await client.get(f"/v1/customers/{created['id']}", headers=account.headers)).json() == updated
    same = await client.post(f"/v1/customers/{created['id']}", headers=account.headers, json={})
    assert same.json() == updated


async def test_update_to_a_taken_external_id_is_a_conflict(client, account):
    await create_customer(client, account.headers, external_id="user-1")
    other = await create_customer(client, account.headers, external_id="user-2")
    response = await client.post(
        f"/v1/customers/{other['id']}", headers=account.headers, json={"external_id": "user-1"}
    )
    assert_error(response, 409, "already_exists", "external_id")
    assert (await client.get(f"/v1/customers/{other['id']}", headers=account.headers)).json() == other


@pytest.mark.parametrize(
    ("body", "param"), [({"email": "nope"}, "email"), ({"metadata": None}, "metadata"), ({"id": "x"}, "id")]
)
async def test_invalid_updates_are_refused(client, account, body, param):
    created = await create_customer(client, account.headers, email="a@example.com")
    response = await client.post(f"/v1/customers/{created['id']}", headers=account.headers, json=body)
    assert_error(response, 422, "invalid_parameter", param)
    assert (await client.get(f"/v1/customers/{created['id']}", headers=account.headers)).json() == created


async def test_unknown_customer_is_a_404(client, account):
    missing = uuid.uuid4()
    assert_error(
        await client.get(f"/v1/customers/{missing}", headers=account.headers), 404, "resource_missing", "id"
    )
    response = await client.post(f"/v1/customers/{missing}", headers=account.headers, json={"name": "x"})
    assert_error(response, 404, "resource_missing", "id")


async def test_another_accounts_customers_are_not_found_and_never_listed(client, make_account):
    a, b = make_account("A"), make_account("B")
    theirs = await create_customer(client, b.headers, email="ada@example.com", external_id="user-1")
    assert_error(
        await client.get(f"/v1/customers/{theirs['id']}", headers=a.headers), 404, "resource_missing", "id"
    )
    response = await client.post(f"/v1/customers/{theirs['id']}", headers=a.headers, json={"name": "Mine"})
    assert_error(response, 404, "resource_missing", "id")
    assert (await client.get(f"/v1/customers/{theirs['id']}", headers=b.headers)).json() == theirs
    assert await list_ids(client, a.headers) == []
    assert await list_ids(client, a.headers, email="ada@example.com") == []
    assert await list_ids(client, a.headers, external_id="user-1") == []
    assert await list_ids(client, a.headers, ending_before=theirs["id"]) == []
    # external_id is unique per account only.
    mine = await create_customer(client, a.headers, external_id="user-1")
    assert await list_ids(client, a.headers, external_id="user-1") == [mine["id"]]
