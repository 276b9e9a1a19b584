"""Stripe price/product → license policy mappings (/v1/stripe/mappings): create, list, delete, the
exactly-one rule, unknown and archived policies, duplicates, pages, two tenants, and the events a new
mapping re-applies."""

from __future__ import annotations

import secrets
import uuid

import pytest

from stripe_support import connect, deliver, new_id, stripe_event, stripe_subscription
from support import assert_error


async def make_policy(client, account, code: str | None = None) -> dict:
    body = {"code": code or f"plan-{secrets.token_hex(4)}", "name": "Plan"}
    response = await client.post("/v1/license_policies", headers=account.headers, json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def create(client, account, **body) -> dict:
    response = await client.post("/v1/stripe/mappings", headers=account.headers, json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def test_a_price_maps_to_a_policy_by_code(client, account):
    policy = await make_policy(client, account)
    mapping = await create(client, account, stripe_price_id="price_Pro1", policy_code=policy["code"])
    assert mapping["object"] == "stripe_mapping"
    assert (mapping["stripe_price_id"], mapping["stripe_product_id"]) == ("price_Pro1", None)
    assert (mapping["policy_id"], mapping["policy_code"]) == (policy["id"], policy["code"])
    assert mapping["reapplied"] == 0
    uuid.UUID(mapping["id"])


async def test_a_product_maps_to_a_policy_by_id(client, account):
    policy = await make_policy(client, account)
    mapping = await create(client, account, stripe_product_id="prod_Team-2", policy_id=policy["id"])
    assert (mapping["stripe_price_id"], mapping["stripe_product_id"]) == (None, "prod_Team-2")
    assert mapping["policy_code"] == policy["code"]


@pytest.mark.parametrize(
    ("body", "status", "code", "param"),
    [
        ({"policy_code": "P"}, 422, "invalid_parameter", "stripe_price_id"),
        (
            {"stripe_price_id": "price_A", "stripe_product_id": "prod_A", "policy_code": "P"},
            422,
            "invalid_parameter",
            "stripe_price_id",
        ),
        ({"stripe_price_id": "prod_A", "policy_code": "P"}, 422, "invalid_parameter", "stripe_price_id"),
        ({"stripe_price_id": "price_a b", "policy_code": "P"}, 422, "invalid_parameter", "stripe_price_id"),
        (
            {"stripe_product_id": "has space", "policy_code": "P"},
            422,
            "invalid_parameter",
            "stripe_product_id",
        ),
        ({"stripe_price_id": "price_A"}, 422, "invalid_parameter", "policy_id"),
        (
            {"stripe_price_id": "price_A", "policy_code": "P", "policy_id": str(uuid.uuid4())},
            422,
            "invalid_parameter",
            "policy_id",
        ),
        ({"stripe_price_id": "price_A", "policy_code": "nope"}, 404, "resource_missing", "policy"),
        ({"stripe_price_id": "price_A", "policy_id": str(uuid.uuid4())}, 404, "resource_missing", "policy"),
    ],
)
async def test_invalid_mappings_are_refused(client, account, body, status, code, param):
    policy = await make_policy(client, account)
    body = {k: (policy["code"] if v == "P" else v) for k, v in body.items()}
    response = await client.post("/v1/stripe/mappings", headers=account.headers, json=body)
    assert_error(response, status, code, param)


async def test_an_archived_policy_takes_no_mapping(client, account):
    policy = await make_policy(client, account)
    archived = await client.post(f"/v1/license_policies/{policy['id']}/archive", headers=account.headers)
    assert archived.status_code == 200, archived.text
    response = await client.post(
        "/v1/stripe/mappings",
        headers=account.headers,
        json={"stripe_price_id": "price_A", "policy_id": policy["id"]},
    )
    assert_error(response, 409, "invalid_state", "policy_id")


@pytest.mark.parametrize("field", ["stripe_price_id", "stripe_product_id"])
async def test_a_price_or_product_maps_once(client, account, field):
    one, two = await make_policy(client, account), await make_policy(client, account)
    await create(client, account, **{field: "price_Same"}, policy_code=one["code"])
    response = await client.post(
        "/v1/stripe/mappings", headers=account.headers, json={field: "price_Same", "policy_code": two["code"]}
    )
    assert_error(response, 409, "already_exists", field)


async def test_mappings_list_newest_first_in_pages_and_delete(client, account):
    policy = await make_policy(client, account)
    made = [
        await create(client, account, stripe_price_id=f"price_N{i}", policy_code=policy["code"])
        for i in range(3)
    ]
    first = (await client.get("/v1/stripe/mappings", headers=account.headers, params={"limit": 2})).json()
    assert first["object"] == "list" and first["has_more"] is True
    assert [m["id"] for m in first["data"]] == [made[2]["id"], made[1]["id"]]
    assert all(m["reapplied"] is None for m in first["data"])
    second = (
        await client.get(
            "/v1/stripe/mappings",
            headers=account.headers,
            params={"limit": 2, "starting_after": made[1]["id"]},
        )
    ).json()
    assert ([m["id"] for m in second["data"]], second["has_more"]) == ([made[0]["id"]], False)
    back = (
        await client.get(
            "/v1/stripe/mappings",
            headers=account.headers,
            params={"limit": 1, "ending_before": made[0]["id"]},
        )
    ).json()
    assert ([m["id"] for m in back["data"]], back["has_more"]) == ([made[1]["id"]], True)

    deleted = await client.delete(f"/v1/stripe/mappings/{made[1]['id']}", headers=account.headers)
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["stripe_price_id"] == "price_N1"
    listed = (await client.get("/v1/stripe/mappings", headers=account.headers)).json()
    assert [m["id"] for m in listed["data"]] == [made[2]["id"], made[0]["id"]]
    again = await client.delete(f"/v1/stripe/mappings/{made[1]['id']}", headers=account.headers)
    assert_error(again, 404, "resource_missing", "mapping_id")
    # Deleted, the price may be mapped again.
    await create(client, account, stripe_price_id="price_N1", policy_code=policy["code"])


async def test_list_limit_is_checked(client, account):
    response = await client.get("/v1/stripe/mappings", headers=account.headers, params={"limit": 0})
    assert response.status_code in (400, 422)


async def test_tenants_see_only_their_own_mappings(client, make_account):
    a, b = make_account("A"), make_account("B")
    policy_a, policy_b = await make_policy(client, a), await make_policy(client, b)
    mapping = await create(client, a, stripe_price_id="price_Shared", policy_code=policy_a["code"])
    # B may map the same price: the unique rule is per account.
    await create(client, b, stripe_price_id="price_Shared", policy_code=policy_b["code"])
    listed = (await client.get("/v1/stripe/mappings", headers=b.headers)).json()["data"]
    assert mapping["id"] not in [m["id"] for m in listed]
    assert_error(
        await client.delete(f"/v1/stripe/mappings/{mapping['id']}", headers=b.headers),
        404,
        "resource_missing",
    )
    # B cannot map to A's policy.
    response = await client.post(
        "/v1/stripe/mappings",
        headers=b.headers,
        json={"stripe_price_id": "price_X", "policy_id": policy_a["id"]},
    )
    assert_error(response, 404, "resource_missing")
    assert len((await client.get("/v1/stripe/mappings", headers=a.headers)).json()["data"]) == 1


async def test_mappings_need_a_secret_key(client, account):
    assert_error(await client.get("/v1/stripe/mappings"), 401, "unauthenticated")


async def test_a_new_mapping_applies_the_events_parked_for_it(client, account):
    secret = await connect(client, account, webhook_secret=f"whsec_{secrets.token_hex(16)}")
    price = new_id("price")
    subscription = stripe_subscription(price)
    delivered = await deliver(
        client, account, stripe_event("customer.subscription.created", subscription), secret
    )
    assert delivered.status_code == 200, delivered.text
    assert delivered.json()["outcome"] == "parked"
    licenses = (await client.get("/v1/licenses", headers=account.headers)).json()["data"]
    assert licenses == []

    policy = await make_policy(client, account)
    mapping = await create(client, account, stripe_price_id=price, policy_code=policy["code"])
    assert mapping["reapplied"] == 1
    licenses = (await client.get("/v1/licenses", headers=account.headers)).json()["data"]
    assert [(lic["policy_code"], lic["stripe_subscription_id"]) for lic in licenses] == [
        (policy["code"], subscription["id"])
    ]
    parked = (
        await client.get("/v1/stripe/events", headers=account.headers, params={"outcome": "parked"})
    ).json()
    assert parked["data"] == []
