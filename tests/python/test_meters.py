"""Meters over HTTP: create, list, get, update (metadata merged, unit
cleared, aggregation fixed), archive, events, idempotent creation, and
another tenant's and an agent token's view of them."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from support import assert_error

METER_FIELDS = {
    "object",
    "id",
    "code",
    "name",
    "unit",
    "aggregation",
    "unique_property",
    "metadata",
    "archived_at",
    "created_at",
    "updated_at",
}


async def create_meter(
    client: Any, headers: dict[str, str], code: str = "tokens", aggregation: str = "sum", **fields: Any
) -> dict[str, Any]:
    body = {"code": code, "name": code.title(), "aggregation": aggregation, **fields}
    response = await client.post("/v1/meters", headers=headers, json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def list_codes(client: Any, headers: dict[str, str], **params: Any) -> list[str]:
    response = await client.get("/v1/meters", headers=headers, params=params)
    assert response.status_code == 200, response.text
    return [meter["code"] for meter in response.json()["data"]]


async def test_created_meter_shows_every_field(client, account):
    meter = await create_meter(client, account.headers, "tokens", unit="token", metadata={"team": "ml"})
    assert set(meter) == METER_FIELDS
    assert (meter["object"], meter["code"], meter["name"], meter["unit"], meter["aggregation"]) == (
        "meter",
        "tokens",
        "Tokens",
        "token",
        "sum",
    )
    assert (meter["unique_property"], meter["metadata"], meter["archived_at"]) == (None, {"team": "ml"}, None)
    got = await client.get(f"/v1/meters/{meter['id']}", headers=account.headers)
    assert got.status_code == 200
    assert got.json() == meter


@pytest.mark.parametrize("aggregation", ["sum", "count", "max", "latest"])
async def test_every_aggregation_can_be_created(client, account, aggregation):
    meter = await create_meter(client, account.headers, f"m-{aggregation}", aggregation)
    assert meter["aggregation"] == aggregation


async def test_unique_count_meter_names_the_property_it_counts(client, account):
    meter = await create_meter(client, account.headers, "users", "unique_count", unique_property="user_id")
    assert (meter["aggregation"], meter["unique_property"]) == ("unique_count", "user_id")


async def test_duplicate_code_is_a_conflict(client, account):
    await create_meter(client, account.headers, "tokens")
    response = await client.post(
        "/v1/meters", headers=account.headers, json={"code": "tokens", "name": "X", "aggregation": "count"}
    )
    assert_error(response, 409, "already_exists", "code")


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"code": "Tokens"}, "code"),
        ({"code": "has space"}, "code"),
        ({"code": "x" * 65}, "code"),
        ({"name": ""}, "name"),
        ({"unit": ""}, "unit"),
        ({"aggregation": "unique_count"}, "unique_property"),
        ({"unique_property": "user"}, "unique_property"),
        ({"aggregation": "unique_count", "unique_property": "not ok"}, "unique_property"),
        ({"aggregation": "avg"}, "aggregation"),
        ({"metadata": [1]}, "metadata"),
        ({"unknown": 1}, "unknown"),
    ],
)
async def test_invalid_meters_are_refused_with_the_parameter_named(client, account, fields, param):
    body = {"code": "ok", "name": "Ok", "aggregation": "sum", **fields}
    response = await client.post("/v1/meters", headers=account.headers, json=body)
    assert_error(response, 422, "invalid_parameter", param)
    assert await list_codes(client, account.headers) == []


async def test_update_changes_name_merges_metadata_and_clears_the_unit(client, account):
    meter = await create_meter(client, account.headers, "tokens", unit="token", metadata={"a": 1, "b": 2})
    response = await client.post(
        f"/v1/meters/{meter['id']}",
        headers=account.headers,
        json={"name": "LLM tokens", "unit": None, "metadata": {"a": None, "c": 3}},
    )
    assert response.status_code == 200, response.text
    updated = response.json()
    assert (updated["name"], updated["unit"], updated["metadata"]) == ("LLM tokens", None, {"b": 2, "c": 3})
    assert (updated["code"], updated["aggregation"], updated["created_at"]) == (
        "tokens",
        "sum",
        meter["created_at"],
    )
    events = (await client.get("/v1/events?type=meter.updated", headers=account.headers)).json()["data"]
    assert len(events) == 1
    assert events[0]["data"]["previous_attributes"] == {
        "name": "Tokens",
        "unit": "token",
        "metadata": {"a": 1, "b": 2},
    }


async def test_an_update_that_changes_nothing_emits_nothing(client, account):
    meter = await create_meter(client, account.headers, "tokens")
    response = await client.post(
        f"/v1/meters/{meter['id']}", headers=account.headers, json={"name": "Tokens"}
    )
    assert response.status_code == 200
    assert response.json() == meter
    events = (await client.get("/v1/events?type=meter.updated", headers=account.headers)).json()["data"]
    assert events == []


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"aggregation": "count"}, "aggregation"),
        ({"code": "other"}, "code"),
        ({"unique_property": "x"}, "unique_property"),
        ({"unit": ""}, "unit"),
    ],
)
async def test_code_and_aggregation_are_fixed(client, account, body, param):
    meter = await create_meter(client, account.headers, "tokens")
    response = await client.post(f"/v1/meters/{meter['id']}", headers=account.headers, json=body)
    assert_error(response, 422, "invalid_parameter", param)


async def test_archived_meters_leave_the_list_and_archiving_twice_changes_nothing(client, account):
    kept = await create_meter(client, account.headers, "kept")
    old = await create_meter(client, account.headers, "old")
    first = await client.post(f"/v1/meters/{old['id']}/archive", headers=account.headers)
    assert first.status_code == 200, first.text
    assert first.json()["archived_at"] is not None
    again = await client.post(f"/v1/meters/{old['id']}/archive", headers=account.headers)
    assert again.json() == first.json()
    assert await list_codes(client, account.headers) == [kept["code"]]
    assert await list_codes(client, account.headers, include_archived="true") == ["old", "kept"]
    got = await client.get(f"/v1/meters/{old['id']}", headers=account.headers)
    assert got.json()["archived_at"] == first.json()["archived_at"]
    events = (await client.get("/v1/events?type=meter.archived", headers=account.headers)).json()["data"]
    assert [e["data"]["object"]["id"] for e in events] == [old["id"]]


async def test_meters_page_newest_first(client, account):
    codes = [f"m{i}" for i in range(5)]
    for code in codes:
        await create_meter(client, account.headers, code)
    first = (await client.get("/v1/meters", headers=account.headers, params={"limit": 2})).json()
    assert ([m["code"] for m in first["data"]], first["has_more"]) == (["m4", "m3"], True)
    rest = (
        await client.get(
            "/v1/meters",
            headers=account.headers,
            params={"limit": 10, "starting_after": first["data"][-1]["id"]},
        )
    ).json()
    assert ([m["code"] for m in rest["data"]], rest["has_more"]) == (["m2", "m1", "m0"], False)


async def test_creating_a_meter_emits_meter_created(client, account):
    meter = await create_meter(client, account.headers, "tokens")
    events = (await client.get("/v1/events?type=meter.created", headers=account.headers)).json()["data"]
    assert [(e["data"]["object"]["id"], e["data"]["object"]["code"]) for e in events] == [
        (meter["id"], "tokens")
    ]


async def test_idempotency_key_replays_the_creation(client, account):
    headers = {**account.headers, "Idempotency-Key": "meter-1"}
    body = {"code": "tokens", "name": "Tokens", "aggregation": "sum"}
    first = await client.post("/v1/meters", headers=headers, json=body)
    again = await client.post("/v1/meters", headers=headers, json=body)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert await list_codes(client, account.headers) == ["tokens"]


async def test_another_tenant_sees_none_of_the_meters(client, make_account):
    a, b = make_account("A"), make_account("B")
    meter = await create_meter(client, a.headers, "tokens")
    assert await list_codes(client, b.headers) == []
    for method, path, body in [
        ("GET", f"/v1/meters/{meter['id']}", None),
        ("POST", f"/v1/meters/{meter['id']}", {"name": "Mine"}),
        ("POST", f"/v1/meters/{meter['id']}/archive", None),
    ]:
        response = await client.request(method, path, headers=b.headers, json=body)
        assert_error(response, 404, "resource_missing", "meter_id")
    # B may use the same code for its own meter.
    await create_meter(client, b.headers, "tokens")


async def test_unknown_meter_is_not_found(client, account):
    response = await client.get(f"/v1/meters/{uuid.uuid4()}", headers=account.headers)
    assert_error(response, 404, "resource_missing", "meter_id")


async def test_an_agent_token_cannot_manage_meters(client, account):
    agent = (await client.post("/v1/agents", headers=account.headers, json={"name": "bot"})).json()
    headers = {"Authorization": f"Bearer {agent['token']}"}
    assert_error(await client.get("/v1/meters", headers=headers), 403, "forbidden")
    response = await client.post(
        "/v1/meters", headers=headers, json={"code": "x", "name": "X", "aggregation": "sum"}
    )
    assert_error(response, 403, "forbidden")
