"""Budgets over HTTP: create (for an agent or a license, meter by id or
code), the current period's use, validation, update, delete, list filters,
events, what an agent token may read, and another tenant's view."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from licensing_support import make_license, make_policy, superuser
from support import assert_error, bearer

BUDGET_FIELDS = {
    "object",
    "scope",
    "id",
    "meter_id",
    "meter_code",
    "agent_id",
    "license_id",
    "period",
    "limit",
    "hard",
    "thresholds",
    "used",
    "remaining",
    "period_start",
    "period_end",
    "metadata",
    "created_at",
    "updated_at",
}


def utc_day_start(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def create_meter(client: Any, headers: dict[str, str], code: str = "tokens") -> dict[str, Any]:
    response = await client.post(
        "/v1/meters", headers=headers, json={"code": code, "name": code, "aggregation": "sum"}
    )
    assert response.status_code == 201, response.text
    return response.json()


async def create_agent(client: Any, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    response = await client.post("/v1/agents", headers=headers, json={"name": "bot", **fields})
    assert response.status_code == 201, response.text
    return response.json()


async def create_budget(client: Any, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = await client.post("/v1/budgets", headers=headers, json={"period": "day", "limit": 100, **body})
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture
async def setup(client, account, database_url) -> dict[str, Any]:
    """A meter 'tokens', a license, an agent on that license and one without."""
    license_id = make_license(database_url, account.secret_key, make_policy(database_url, account.id))
    return {
        "meter": await create_meter(client, account.headers),
        "license_id": license_id,
        "agent": await create_agent(client, account.headers, license_id=license_id),
        "other": await create_agent(client, account.headers, name="other"),
    }


async def test_created_budget_shows_the_current_period_with_nothing_used(client, account, setup):
    before = datetime.now(UTC)
    budget = await create_budget(
        client,
        account.headers,
        meter_code="tokens",
        agent_id=setup["agent"]["id"],
        limit=12.5,
        thresholds=[100, 50, 80],
        metadata={"team": "ml"},
    )
    assert set(budget) == BUDGET_FIELDS
    assert (budget["object"], budget["meter_id"], budget["meter_code"]) == (
        "budget",
        setup["meter"]["id"],
        "tokens",
    )
    assert (budget["agent_id"], budget["license_id"], budget["period"]) == (setup["agent"]["id"], None, "day")
    assert budget["scope"] == "subject"
    # Quantities are exact decimals, answered as JSON strings.
    assert (budget["limit"], budget["hard"], budget["thresholds"]) == ("12.5", True, [50, 80, 100])
    assert (budget["used"], budget["remaining"], budget["metadata"]) == ("0", "12.5", {"team": "ml"})
    start = parse(budget["period_start"])
    assert start == utc_day_start(before) or start == utc_day_start(datetime.now(UTC))
    assert parse(budget["period_end"]) == start + timedelta(days=1)
    got = await client.get(f"/v1/budgets/{budget['id']}", headers=account.headers)
    assert got.status_code == 200
    assert got.json() == budget
    events = (await client.get("/v1/events?type=budget.created", headers=account.headers)).json()["data"]
    assert [e["data"]["object"]["id"] for e in events] == [budget["id"]]


async def test_a_license_budget_names_its_meter_by_id(client, account, setup):
    budget = await create_budget(
        client,
        account.headers,
        meter_id=setup["meter"]["id"],
        license_id=setup["license_id"],
        period="month",
        hard=False,
    )
    assert (budget["license_id"], budget["agent_id"], budget["period"], budget["hard"]) == (
        setup["license_id"],
        None,
        "month",
        False,
    )
    start = parse(budget["period_start"])
    assert (start.day, start.hour, start.utcoffset()) == (1, 0, timedelta())


async def test_used_and_remaining_come_from_the_current_period(client, account, setup, database_url):
    budget = await create_budget(client, account.headers, meter_code="tokens", agent_id=setup["agent"]["id"])
    superuser(
        database_url,
        "insert into lic.budget_usage (account_id, budget_id, period_start, used) values"
        " (%(a)s, %(b)s, %(start)s, 30), (%(a)s, %(b)s, %(start)s::timestamptz - interval '1 day', 99)",
        {"a": account.id, "b": budget["id"], "start": budget["period_start"]},
    )
    got = (await client.get(f"/v1/budgets/{budget['id']}", headers=account.headers)).json()
    assert (got["used"], got["remaining"]) == ("30", "70")


async def test_a_soft_budget_past_its_limit_has_nothing_remaining(client, account, setup, database_url):
    budget = await create_budget(
        client, account.headers, meter_code="tokens", license_id=setup["license_id"], hard=False, limit=10
    )
    superuser(
        database_url,
        "insert into lic.budget_usage (account_id, budget_id, period_start, used) values (%s, %s, %s, 15)",
        (account.id, budget["id"], budget["period_start"]),
    )
    got = (await client.get(f"/v1/budgets/{budget['id']}", headers=account.headers)).json()
    assert (got["used"], got["remaining"]) == ("15", "0")


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"period": "week"}, "period"),
        ({"limit": -1}, "limit"),
        ({"limit": "NaN"}, "limit"),
        ({"limit": "lots"}, "limit"),
        ({"thresholds": [0]}, "thresholds"),
        ({"thresholds": [1001]}, "thresholds"),
        ({"thresholds": [50, 50]}, "thresholds"),
        ({"thresholds": list(range(1, 12))}, "thresholds"),
        ({"thresholds": [2**31]}, "thresholds[0]"),
        ({"metadata": [1]}, "metadata"),
        ({"agent_id": None, "license_id": None}, "agent_id"),
        ({"license_id": "L"}, "agent_id"),  # both subjects
        ({"meter_code": None}, "meter_id"),  # no meter
        ({"meter_id": "M"}, "meter_id"),  # both meters
        ({"unknown": 1}, "unknown"),
    ],
)
async def test_invalid_budgets_are_refused_with_the_parameter_named(client, account, setup, fields, param):
    body = {"meter_code": "tokens", "agent_id": setup["agent"]["id"], "period": "day", "limit": 10}
    named = {"L": setup["license_id"], "M": setup["meter"]["id"]}
    body.update({k: named.get(v, v) if isinstance(v, str) else v for k, v in fields.items()})
    response = await client.post("/v1/budgets", headers=account.headers, json=body)
    assert_error(response, 422, "invalid_parameter", param)
    assert (await client.get("/v1/budgets", headers=account.headers)).json()["data"] == []


async def test_unknown_subjects_and_meters_are_not_found(client, make_account, database_url):
    a, b = make_account("A"), make_account("B")
    await create_meter(client, a.headers)
    b_meter = await create_meter(client, b.headers, "b-meter")
    b_license = make_license(database_url, b.secret_key, make_policy(database_url, b.id))
    b_agent = await create_agent(client, b.headers)
    for body, param in [
        ({"meter_code": "nope", "license_id": b_license}, "meter_code"),
        ({"meter_id": b_meter["id"], "agent_id": str(uuid.uuid4())}, "meter_id"),
        ({"meter_code": "tokens", "agent_id": str(uuid.uuid4())}, "agent_id"),
        ({"meter_code": "tokens", "agent_id": b_agent["id"]}, "agent_id"),
        ({"meter_code": "tokens", "license_id": b_license}, "license_id"),
    ]:
        response = await client.post(
            "/v1/budgets", headers=a.headers, json={"period": "day", "limit": 1, **body}
        )
        assert_error(response, 404, "resource_missing", param)


async def test_an_archived_meter_takes_no_new_budget(client, account, setup):
    await client.post(f"/v1/meters/{setup['meter']['id']}/archive", headers=account.headers)
    response = await client.post(
        "/v1/budgets",
        headers=account.headers,
        json={"period": "day", "limit": 1, "meter_code": "tokens", "agent_id": setup["agent"]["id"]},
    )
    assert_error(response, 409, "invalid_state", "meter_code")


async def test_update_changes_limit_thresholds_and_merges_metadata(client, account, setup):
    budget = await create_budget(
        client, account.headers, meter_code="tokens", agent_id=setup["agent"]["id"], metadata={"a": 1, "b": 2}
    )
    response = await client.post(
        f"/v1/budgets/{budget['id']}",
        headers=account.headers,
        json={"limit": 250, "hard": False, "thresholds": [90, 10], "metadata": {"a": None, "c": 3}},
    )
    assert response.status_code == 200, response.text
    updated = response.json()
    assert (updated["limit"], updated["hard"], updated["thresholds"], updated["metadata"]) == (
        "250",
        False,
        [10, 90],
        {"b": 2, "c": 3},
    )
    assert (updated["remaining"], updated["period"], updated["agent_id"]) == (
        "250",
        "day",
        setup["agent"]["id"],
    )
    events = (await client.get("/v1/events?type=budget.updated", headers=account.headers)).json()["data"]
    assert len(events) == 1
    previous = events[0]["data"]["previous_attributes"]
    assert (previous["limit"], previous["hard"], previous["thresholds"], previous["metadata"]) == (
        100,
        True,
        [],
        {"a": 1, "b": 2},
    )
    same = await client.post(f"/v1/budgets/{budget['id']}", headers=account.headers, json={"limit": 250})
    assert same.json() == updated
    assert (
        len((await client.get("/v1/events?type=budget.updated", headers=account.headers)).json()["data"]) == 1
    )


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"limit": -1}, "limit"),
        ({"limit": None}, "limit"),
        ({"thresholds": [5000]}, "thresholds"),
        ({"period": "hour"}, "period"),
        ({"agent_id": str(uuid.uuid4())}, "agent_id"),
    ],
)
async def test_invalid_updates_are_refused(client, account, setup, body, param):
    budget = await create_budget(client, account.headers, meter_code="tokens", agent_id=setup["agent"]["id"])
    response = await client.post(f"/v1/budgets/{budget['id']}", headers=account.headers, json=body)
    assert_error(response, 422, "invalid_parameter", param)


async def test_delete_answers_the_budget_as_it_was_and_it_is_gone(client, account, setup, database_url):
    budget = await create_budget(client, account.headers, meter_code="tokens", agent_id=setup["agent"]["id"])
    superuser(
        database_url,
        "insert into lic.budget_usage (account_id, budget_id, period_start, used) values (%s, %s, %s, 7)",
        (account.id, budget["id"], budget["period_start"]),
    )
    response = await client.delete(f"/v1/budgets/{budget['id']}", headers=account.headers)
    assert response.status_code == 200, response.text
    assert (response.json()["id"], response.json()["used"]) == (budget["id"], "7")
    assert_error(
        await client.get(f"/v1/budgets/{budget['id']}", headers=account.headers), 404, "resource_missing"
    )
    assert_error(
        await client.delete(f"/v1/budgets/{budget['id']}", headers=account.headers), 404, "resource_missing"
    )
    left = superuser(
        database_url, "select count(*) as n from lic.budget_usage where budget_id = %s", (budget["id"],)
    )
    assert left[0]["n"] == 0
    events = (await client.get("/v1/events?type=budget.deleted", headers=account.headers)).json()["data"]
    assert [e["data"]["object"]["id"] for e in events] == [budget["id"]]


async def test_list_filters_by_agent_license_and_meter(client, account, setup):
    calls = await create_meter(client, account.headers, "calls")
    by_agent = await create_budget(
        client, account.headers, meter_code="tokens", agent_id=setup["agent"]["id"]
    )
    by_license = await create_budget(
        client, account.headers, meter_code="tokens", license_id=setup["license_id"]
    )
    on_calls = await create_budget(client, account.headers, meter_code="calls", agent_id=setup["other"]["id"])

    async def ids(**params: Any) -> list[str]:
        response = await client.get("/v1/budgets", headers=account.headers, params=params)
        assert response.status_code == 200, response.text
        return [b["id"] for b in response.json()["data"]]

    assert await ids() == [on_calls["id"], by_license["id"], by_agent["id"]]
    assert await ids(agent_id=setup["agent"]["id"]) == [by_agent["id"]]
    assert await ids(license_id=setup["license_id"]) == [by_license["id"]]
    assert await ids(meter_id=calls["id"]) == [on_calls["id"]]
    assert await ids(meter_id=setup["meter"]["id"], agent_id=setup["other"]["id"]) == []
    page = (await client.get("/v1/budgets", headers=account.headers, params={"limit": 2})).json()
    assert ([b["id"] for b in page["data"]], page["has_more"]) == ([on_calls["id"], by_license["id"]], True)


async def test_an_agent_token_reads_its_own_budgets_and_its_licenses(client, account, setup):
    own = await create_budget(client, account.headers, meter_code="tokens", agent_id=setup["agent"]["id"])
    licensed = await create_budget(
        client, account.headers, meter_code="tokens", license_id=setup["license_id"]
    )
    other = await create_budget(client, account.headers, meter_code="tokens", agent_id=setup["other"]["id"])
    agent = bearer(setup["agent"]["token"])
    listed = (await client.get("/v1/budgets", headers=agent)).json()["data"]
    assert [b["id"] for b in listed] == [licensed["id"], own["id"]]
    assert (await client.get(f"/v1/budgets/{own['id']}", headers=agent)).json()["used"] == "0"
    assert_error(await client.get(f"/v1/budgets/{other['id']}", headers=agent), 404, "resource_missing")
    response = await client.get("/v1/budgets", headers=agent, params={"agent_id": setup["other"]["id"]})
    assert_error(response, 403, "forbidden", "agent_id")
    for method, path, body in [
        (
            "POST",
            "/v1/budgets",
            {"period": "day", "limit": 1, "meter_code": "tokens", "agent_id": setup["agent"]["id"]},
        ),
        ("POST", f"/v1/budgets/{own['id']}", {"limit": 10**9}),
        ("DELETE", f"/v1/budgets/{own['id']}", None),
    ]:
        assert_error(await client.request(method, path, headers=agent, json=body), 403, "forbidden")


async def test_an_agent_without_a_license_sees_only_its_own(client, account, setup):
    await create_budget(client, account.headers, meter_code="tokens", license_id=setup["license_id"])
    mine = await create_budget(client, account.headers, meter_code="tokens", agent_id=setup["other"]["id"])
    theirs = await create_budget(client, account.headers, meter_code="tokens", agent_id=setup["agent"]["id"])
    headers = bearer(setup["other"]["token"])
    listed = (await client.get("/v1/budgets", headers=headers)).json()["data"]
    assert [b["id"] for b in listed] == [mine["id"]]
    assert (await client.get(f"/v1/budgets/{mine['id']}", headers=headers)).status_code == 200
    response = await client.get(f"/v1/budgets/{theirs['id']}", headers=headers)
    assert_error(response, 404, "resource_missing", "budget_id")


async def test_another_tenant_sees_none_of_the_budgets(client, make_account, database_url):
    a, b = make_account("A"), make_account("B")
    await create_meter(client, a.headers)
    agent = await create_agent(client, a.headers)
    budget = await create_budget(client, a.headers, meter_code="tokens", agent_id=agent["id"])
    assert (await client.get("/v1/budgets", headers=b.headers)).json()["data"] == []
    for method, path, body in [
        ("GET", f"/v1/budgets/{budget['id']}", None),
        ("POST", f"/v1/budgets/{budget['id']}", {"limit": 1}),
        ("DELETE", f"/v1/budgets/{budget['id']}", None),
    ]:
        response = await client.request(method, path, headers=b.headers, json=body)
        assert_error(response, 404, "resource_missing", "budget_id")
    assert (await client.get(f"/v1/budgets/{budget['id']}", headers=a.headers)).json()["limit"] == "100"


async def test_a_license_budget_counts_all_its_subjects_unless_its_scope_is_subject(client, account, setup):
    everyone = await create_budget(
        client, account.headers, meter_code="tokens", license_id=setup["license_id"]
    )
    own = await create_budget(
        client, account.headers, meter_code="tokens", license_id=setup["license_id"], scope="subject"
    )
    assert (everyone["scope"], own["scope"]) == ("all_subjects", "subject")

    events = [
        {"id": "mine", "meter": "tokens", "quantity": 2, "license_id": setup["license_id"]},
        {
            "id": "alice",
            "meter": "tokens",
            "quantity": 3,
            "license_id": setup["license_id"],
            "subject_key": "a",
        },
        {"id": "agent", "meter": "tokens", "quantity": 4, "agent_id": setup["agent"]["id"]},
    ]
    response = await client.post("/v1/usage/events", headers=account.headers, json=events)
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 3

    used = {}
    for budget in (everyone, own):
        response = await client.get(f"/v1/budgets/{budget['id']}", headers=account.headers)
        used[budget["scope"]] = response.json()["used"]
    assert used == {"all_subjects": "9", "subject": "2"}


async def test_an_agent_budget_cannot_cover_all_subjects(client, account, setup):
    response = await client.post(
        "/v1/budgets",
        headers=account.headers,
        json={
            "period": "day",
            "limit": 1,
            "meter_code": "tokens",
            "agent_id": setup["agent"]["id"],
            "scope": "all_subjects",
        },
    )
    assert response.status_code == 422
    assert response.json()["error"]["param"] == "scope"
