"""Usage queries over HTTP (GET /v1/usage), read from the hourly rollups:
every aggregation at every granularity over rollup rows written by hand,
buckets in UTC, grouping by subject with "none" shown as null, filters, the
range rules, agent tokens, another tenant, and one pass end to end through
POST /v1/usage/events."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from licensing_support import make_license, make_policy, superuser
from support import assert_error, bearer

NONE = "00000000-0000-0000-0000-000000000000"

# (hour, agent, license, subject_key, event_count, sum, max, latest, latest_at, unique values)
ROLLUPS = [
    ("2024-03-09 23:00Z", "bot", "L", "", 2, 10, 7, 3, "2024-03-09 23:40Z", ["u1", "u2"]),
    ("2024-03-10 01:00Z", None, None, "cust-1", 1, 5, 5, 5, "2024-03-10 01:10Z", ["u1"]),
    ("2024-03-10 01:00Z", "bot", "L", "", 3, 20, 9, 8, "2024-03-10 01:50Z", ["u2", "u3"]),
    ("2024-03-10 05:00Z", None, "L", "", 4, 1, 1, 1, "2024-03-10 05:20Z", ["u1"]),
    ("2024-04-02 00:00Z", "other", None, "", 1, 100, 100, 100, "2024-04-02 00:05Z", ["u9"]),
]
METERS = {"tokens": "sum", "calls": "count", "peak": "max", "seats": "latest", "users": "unique_count"}
DAYS = {"from": "2024-03-09T00:00:00Z", "to": "2024-03-11T00:00:00Z"}


def write_rollups(database_url: str, account_id: str, meters: dict[str, str], ids: dict[str, str]) -> None:
    """The rows above under every meter (the unique values under the unique_count one), as the superuser."""
    for code, meter_id in meters.items():
        for hour, agent, license_, key, count, total, peak, latest, latest_at, values in ROLLUPS:
            subject = (ids.get(agent, NONE), ids.get(license_, NONE), key)
            superuser(
                database_url,
                "insert into lic.metering_rollups (account_id, meter_id, hour, agent_id, license_id,"
                " subject_key, event_count, quantity_sum, quantity_max, latest_quantity, latest_at)"
                " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (account_id, meter_id, hour, *subject, count, total, peak, latest, latest_at),
            )
            if METERS[code] == "unique_count":
                for value in values:
                    superuser(
                        database_url,
                        "insert into lic.metering_rollup_values (account_id, meter_id, hour, agent_id,"
                        " license_id, subject_key, value) values (%s, %s, %s, %s, %s, %s, %s)",
                        (account_id, meter_id, hour, *subject, value),
                    )


@pytest.fixture
async def tenant(client, account, database_url) -> dict[str, Any]:
    """An account with a meter per aggregation, a license L, agents bot (on L) and other, and the rollups."""
    meters = {}
    for code, aggregation in METERS.items():
        body = {"code": code, "name": code, "aggregation": aggregation}
        if aggregation == "unique_count":
            body["unique_property"] = "user"
        response = await client.post("/v1/meters", headers=account.headers, json=body)
        assert response.status_code == 201, response.text
        meters[code] = response.json()["id"]
    license_id = make_license(database_url, account.secret_key, make_policy(database_url, account.id))
    agents = {}
    for name, fields in [("bot", {"license_id": license_id}), ("other", {})]:
        response = await client.post("/v1/agents", headers=account.headers, json={"name": name, **fields})
        agents[name] = response.json()
    ids = {"L": license_id, "bot": agents["bot"]["id"], "other": agents["other"]["id"]}
    write_rollups(database_url, account.id, meters, ids)
    return {"account": account, "meters": meters, "ids": ids, "agents": agents}


async def usage(client, headers, **params: Any) -> list[dict[str, Any]]:
    response = await client.get("/v1/usage", headers=headers, params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["object"], body["has_more"]) == ("list", False)
    return body["data"]


def series(rows: list[dict[str, Any]]) -> list[tuple[str, str, int]]:
    return [(row["period_start"], row["value"], row["event_count"]) for row in rows]


async def test_a_day_of_usage_is_one_row_per_utc_day(client, tenant):
    rows = await usage(client, tenant["account"].headers, meter_code="tokens", **DAYS)
    assert rows == [
        {
            "period_start": "2024-03-09T00:00:00Z",
            "agent_id": None,
            "license_id": None,
            "subject_key": None,
            "value": "10",
            "event_count": 2,
        },
        {
            "period_start": "2024-03-10T00:00:00Z",
            "agent_id": None,
            "license_id": None,
            "subject_key": None,
            "value": "26",
            "event_count": 8,
        },
    ]


@pytest.mark.parametrize(
    ("meter", "granularity", "expected"),
    [
        ("tokens", "hour", [("03-09T23", "10", 2), ("03-10T01", "25", 4), ("03-10T05", "1", 4)]),
        ("tokens", "day", [("03-09T00", "10", 2), ("03-10T00", "26", 8)]),
        ("tokens", "month", [("03-01T00", "36", 10), ("04-01T00", "100", 1)]),
        ("calls", "hour", [("03-09T23", "2", 2), ("03-10T01", "4", 4), ("03-10T05", "4", 4)]),
        ("calls", "day", [("03-09T00", "2", 2), ("03-10T00", "8", 8)]),
        ("calls", "month", [("03-01T00", "10", 10), ("04-01T00", "1", 1)]),
        ("peak", "hour", [("03-09T23", "7", 2), ("03-10T01", "9", 4), ("03-10T05", "1", 4)]),
        ("peak", "day", [("03-09T00", "7", 2), ("03-10T00", "9", 8)]),
        ("peak", "month", [("03-01T00", "9", 10), ("04-01T00", "100", 1)]),
        ("seats", "hour", [("03-09T23", "3", 2), ("03-10T01", "8", 4), ("03-10T05", "1", 4)]),
        ("seats", "day", [("03-09T00", "3", 2), ("03-10T00", "1", 8)]),
        ("seats", "month", [("03-01T00", "1", 10), ("04-01T00", "100", 1)]),
        ("users", "hour", [("03-09T23", "2", 2), ("03-10T01", "3", 4), ("03-10T05", "1", 4)]),
        ("users", "day", [("03-09T00", "2", 2), ("03-10T00", "3", 8)]),
        ("users", "month", [("03-01T00", "3", 10), ("04-01T00", "1", 1)]),
    ],
)
async def test_each_aggregation_at_each_granularity(client, tenant, meter, granularity, expected):
    months = {"from": "2024-03-01T00:00:00Z", "to": "2024-05-01T00:00:00Z"}
    rows = await usage(
        client,
        tenant["account"].headers,
        meter_code=meter,
        granularity=granularity,
        **(months if granularity == "month" else DAYS),
    )
    assert series(rows) == [(f"2024-{start}:00:00Z", value, count) for start, value, count in expected]


async def test_group_by_subject_shows_the_rollups_none_keys_as_null(client, tenant):
    ids = tenant["ids"]
    rows = await usage(client, tenant["account"].headers, meter_code="tokens", group_by="subject", **DAYS)
    assert [
        (r["period_start"][:10], r["agent_id"], r["license_id"], r["subject_key"], r["value"]) for r in rows
    ] == [
        ("2024-03-09", ids["bot"], ids["L"], None, "10"),
        ("2024-03-10", None, None, "cust-1", "5"),
        ("2024-03-10", None, ids["L"], None, "1"),
        ("2024-03-10", ids["bot"], ids["L"], None, "20"),
    ]
    distinct = await usage(client, tenant["account"].headers, meter_code="users", group_by="subject", **DAYS)
    assert [r["value"] for r in distinct] == ["2", "1", "1", "2"]


async def test_filters_by_meter_id_license_agent_and_subject_key(client, tenant):
    headers, ids = tenant["account"].headers, tenant["ids"]
    by_license = await usage(client, headers, meter=tenant["meters"]["tokens"], license_id=ids["L"], **DAYS)
    assert [r["value"] for r in by_license] == ["10", "21"]
    by_agent = await usage(client, headers, meter_code="tokens", agent_id=ids["bot"], **DAYS)
    assert [r["value"] for r in by_agent] == ["10", "20"]
    by_key = await usage(client, headers, meter_code="users", subject_key="cust-1", **DAYS)
    assert [(r["period_start"], r["value"]) for r in by_key] == [("2024-03-10T00:00:00Z", "1")]
    nothing = await usage(client, headers, meter_code="tokens", agent_id=str(uuid.uuid4()), **DAYS)
    assert nothing == []


@pytest.mark.parametrize(
    ("start", "end", "days"),
    [
        ("2024-03-10T12:00:00Z", "2024-03-10T12:00:01Z", ["2024-03-10"]),
        ("2024-03-09T23:30:00Z", "2024-03-10T00:00:01Z", ["2024-03-09", "2024-03-10"]),
        ("2024-03-10T00:00:00", "2024-03-11T00:00:00", ["2024-03-10"]),  # no offset: UTC
        ("2024-03-09T21:00:00-05:00", "2024-03-10T03:00:00+00:00", ["2024-03-10"]),
        ("2024-03-11T00:00:00Z", "2024-03-20T00:00:00Z", []),
    ],
)
async def test_the_range_covers_every_bucket_it_touches_whole(client, tenant, start, end, days):
    rows = await usage(client, tenant["account"].headers, meter_code="tokens", **{"from": start, "to": end})
    assert [r["period_start"][:10] for r in rows] == days


@pytest.mark.parametrize(
    ("params", "status", "param"),
    [
        ({"meter_code": "tokens", "from": "2024-03-11T00:00:00Z", "to": "2024-03-11T00:00:00Z"}, 422, "to"),
        ({"meter_code": "tokens", "from": "2024-03-11T00:00:00Z", "to": "2024-03-10T00:00:00Z"}, 422, "to"),
        (
            {
                "meter_code": "tokens",
                "granularity": "hour",
                "from": "2023-01-01T00:00:00Z",
                **{"to": DAYS["to"]},
            },
            422,
            "to",
        ),
        ({"meter_code": "tokens", "granularity": "week", **DAYS}, 422, "granularity"),
        ({"meter_code": "tokens", "group_by": "agent", **DAYS}, 422, "group_by"),
        # Litestar names a malformed aliased parameter by its handler argument (as /v1/events does).
        ({"meter_code": "tokens", "from": "yesterday", "to": DAYS["to"]}, 422, "starting_at"),
        ({"meter_code": "tokens", "to": DAYS["to"]}, 400, None),
        ({"meter_code": "tokens", "subject_key": "", **DAYS}, 422, "subject_key"),
        ({"meter_code": "tokens", "agent_id": NONE, **DAYS}, 422, "agent_id"),
        (DAYS, 422, "meter"),
        ({"meter_code": "tokens", "meter": str(uuid.uuid4()), **DAYS}, 422, "meter"),
        ({"meter_code": "nope", **DAYS}, 404, "meter_code"),
        ({"meter": str(uuid.uuid4()), **DAYS}, 404, "meter"),
    ],
)
async def test_bad_queries_are_refused_with_the_parameter_named(client, tenant, params, status, param):
    response = await client.get("/v1/usage", headers=tenant["account"].headers, params=params)
    code = {400: "invalid_request", 404: "resource_missing"}.get(status, "invalid_parameter")
    assert_error(response, status, code, param)


async def test_an_agent_token_reads_its_own_usage_only(client, tenant):
    agent = bearer(tenant["agents"]["bot"]["token"])
    assert [r["value"] for r in await usage(client, agent, meter_code="tokens", **DAYS)] == ["10", "20"]
    grouped = await usage(client, agent, meter_code="tokens", group_by="subject", **DAYS)
    assert {r["agent_id"] for r in grouped} == {tenant["ids"]["bot"]}
    response = await client.get(
        "/v1/usage",
        headers=agent,
        params={"meter_code": "tokens", "agent_id": tenant["ids"]["other"], **DAYS},
    )
    assert_error(response, 403, "forbidden", "agent_id")


async def test_another_tenant_sees_only_its_own_usage(client, tenant, make_account):
    b = make_account("B")
    response = await client.get(
        "/v1/usage", headers=b.headers, params={"meter": tenant["meters"]["tokens"], **DAYS}
    )
    assert_error(response, 404, "resource_missing", "meter")
    await client.post(
        "/v1/meters", headers=b.headers, json={"code": "tokens", "name": "t", "aggregation": "sum"}
    )
    assert await usage(client, b.headers, meter_code="tokens", **DAYS) == []


async def test_ingested_events_show_in_usage_and_in_the_budget(client, account):
    """End to end: POST /v1/usage/events keeps the rollups and the budget, which GET /v1/usage and the
    budget read."""
    meter = await client.post(
        "/v1/meters", headers=account.headers, json={"code": "tokens", "name": "Tokens", "aggregation": "sum"}
    )
    assert meter.status_code == 201, meter.text
    agent = (await client.post("/v1/agents", headers=account.headers, json={"name": "bot"})).json()
    budget = await client.post(
        "/v1/budgets",
        headers=account.headers,
        json={"meter_code": "tokens", "agent_id": agent["id"], "period": "day", "limit": 100},
    )
    assert budget.status_code == 201, budget.text
    now = datetime.now(UTC).replace(microsecond=0)
    events = [
        {
            "id": f"e{i}",
            "meter": "tokens",
            "quantity": q,
            "agent_id": agent["id"],
            "occurred_at": now.isoformat(),
        }
        for i, q in enumerate([5, 7.5, 2])
    ]
    ingested = await client.post(
        "/v1/usage/events",
        headers={**account.headers, "Content-Type": "application/json"},
        content=json.dumps(events),
    )
    assert ingested.status_code == 200, ingested.text
    hour = now.replace(minute=0, second=0)
    rows = await usage(
        client,
        account.headers,
        meter_code="tokens",
        granularity="hour",
        group_by="subject",
        **{"from": hour.isoformat(), "to": (hour + timedelta(hours=1)).isoformat()},
    )
    assert [(r["agent_id"], r["value"], r["event_count"]) for r in rows] == [(agent["id"], "14.5", 3)]
    got = (await client.get(f"/v1/budgets/{budget.json()['id']}", headers=account.headers)).json()
    assert (got["used"], got["remaining"]) == ("14.5", "85.5")
