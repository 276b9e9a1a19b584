"""Usage ingest over HTTP (POST /v1/usage/events) and budget checks: per-event
answers, re-sends counted once (sequentially and from 20 concurrent senders),
rollups equal to the events after a random concurrent workload, hard budgets
exact under 100 parallel spenders, thresholds and soft budgets emitting once,
agents recording only for themselves, and the append-only table."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from license_helpers import create_license, make_policy, superuser
from support import assert_error, bearer


def make_meter(database_url: str, account_id: str, code: str, aggregation: str = "sum", **fields: Any) -> str:
    rows = superuser(
        database_url,
        "insert into lic.meters (account_id, code, name, aggregation, unique_property)"
        " values (%s, %s, %s, %s, %s) returning id::text",
        (account_id, code, code, aggregation, fields.get("unique_property")),
    )
    return rows[0]["id"]


def make_budget(database_url: str, account_id: str, meter_id: str, **fields: Any) -> str:
    rows = superuser(
        database_url,
        "insert into lic.budgets"
        ' (account_id, meter_id, agent_id, license_id, period, "limit", hard, thresholds) values'
        " (%s, %s, %s, %s, %s, %s, %s, %s) returning id::text",
        (
            account_id,
            meter_id,
            fields.get("agent_id"),
            fields.get("license_id"),
            fields.get("period", "month"),
            fields["limit"],
            fields.get("hard", True),
            fields.get("thresholds", []),
        ),
    )
    return rows[0]["id"]


def scalar(database_url: str, statement: str, params: Any = None) -> Any:
    with psycopg.connect(database_url) as conn:
        return conn.execute(statement, params).fetchone()[0]


def at(delta: timedelta = timedelta()) -> str:
    return (datetime.now(UTC) + delta).isoformat().replace("+00:00", "Z")


async def ingest(client, headers, events: list[dict[str, Any]] | str):
    body = events if isinstance(events, str) else json.dumps(events)
    return await client.post(
        "/v1/usage/events", headers={**headers, "Content-Type": "application/json"}, content=body
    )


@pytest.fixture
def tenant(account, database_url):
    """An account with a sum meter 'tokens' and a license."""
    make_meter(database_url, account.id, "tokens")
    make_policy(database_url, account.id, "pro")
    return account


async def a_license(client, tenant) -> str:
    return (await create_license(client, tenant.headers, policy_code="pro"))["id"]


async def test_each_event_is_answered_with_its_own_status_and_code(client, tenant, database_url):
    license_id = await a_license(client, tenant)
    events = [
        {"id": "ok", "meter": "tokens", "quantity": 5, "license_id": license_id},
        {"id": "ok", "meter": "tokens", "quantity": 5, "license_id": license_id, "occurred_at": None},
        {"id": "unknown", "meter": "nope", "subject_key": "u"},
        {"id": "negative", "meter": "tokens", "quantity": -1, "subject_key": "u"},
        {"id": "text", "meter": "tokens", "quantity": "5", "subject_key": "u"},
        {"id": "old", "meter": "tokens", "subject_key": "u", "occurred_at": at(-timedelta(days=36))},
        {"id": "ahead", "meter": "tokens", "subject_key": "u", "occurred_at": at(timedelta(minutes=6))},
        {"id": "feb30", "meter": "tokens", "subject_key": "u", "occurred_at": "2026-02-30T00:00:00Z"},
        {"id": "no-zone", "meter": "tokens", "subject_key": "u", "occurred_at": "2026-11-25T00:00:00"},
        {"id": "big", "meter": "tokens", "subject_key": "u", "properties": {"x": "y" * 9000}},
        {"id": "nobody", "meter": "tokens"},
        {"id": "ghost", "meter": "tokens", "license_id": str(uuid.uuid4())},
        {"meter": "tokens", "subject_key": "u"},
        "not an object",
    ]
    response = await ingest(client, tenant.headers, events)
    assert response.status_code == 200, response.text
    body = response.json()
    answers = [(d["status"], d["code"]) for d in body["data"]]
    assert answers == [
        ("accepted", None),
        ("rejected", "invalid_timestamp"),  # occurred_at given as null is not an instant
        ("rejected", "unknown_meter"),
        ("rejected", "invalid_quantity"),
        ("rejected", "invalid_quantity"),
        ("rejected", "too_old"),
        ("rejected", "in_future"),
        ("rejected", "invalid_timestamp"),
        ("rejected", "invalid_timestamp"),
        ("rejected", "properties_too_large"),
        ("rejected", "missing_subject"),
        ("rejected", "unknown_license"),
        ("rejected", "invalid_id"),
        ("rejected", "invalid_event"),
    ]
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (1, 0, 13)
    assert [d["index"] for d in body["data"]] == list(range(len(events)))
    assert (
        scalar(
            database_url, "select sum(quantity) from lic.metering_events where account_id = %s", (tenant.id,)
        )
        == 5
    )


async def test_a_suspended_account_is_refused_with_403_and_sees_why(client, tenant, database_url):
    superuser(
        database_url,
        "select private.set_account_status(account_id => %s, status => 'suspended', reason => 'abuse')",
        (tenant.id,),
    )
    response = await ingest(client, tenant.headers, [{"id": "e", "meter": "tokens", "subject_key": "u"}])
    assert_error(response, 403, "account_inactive")
    account = (await client.get("/v1/account", headers=tenant.headers)).json()
    assert (account["status"], account["status_reason"]) == ("suspended", "abuse")
    assert (
        scalar(database_url, "select count(*) from lic.metering_events where account_id = %s", (tenant.id,))
        == 0
    )


async def test_a_batch_must_be_a_json_array_of_at_most_10000(client, tenant):
    assert_error(await ingest(client, tenant.headers, '{"id": 1}'), 422, "invalid_parameter", "events")
    assert_error(await ingest(client, tenant.headers, "[{"), 422, "invalid_parameter")
    many = [{"id": str(n), "meter": "tokens", "subject_key": "u"} for n in range(10_001)]
    assert_error(await ingest(client, tenant.headers, many), 422, "invalid_parameter", "events")


async def test_resending_a_batch_counts_it_once(client, tenant, database_url):
    when = at(-timedelta(minutes=1))
    batch = [
        {"id": f"e{n}", "meter": "tokens", "quantity": n, "subject_key": "u", "occurred_at": when}
        for n in range(50)
    ]
    first = (await ingest(client, tenant.headers, batch)).json()
    again = (await ingest(client, tenant.headers, batch + batch[:5])).json()
    assert first["accepted"] == 50
    assert (again["accepted"], again["duplicates"]) == (0, 55)
    assert {d["status"] for d in again["data"]} == {"duplicate"}
    total = sum(range(50))
    assert (
        scalar(
            database_url, "select sum(quantity) from lic.metering_events where account_id = %s", (tenant.id,)
        )
        == total
    )
    assert (
        scalar(
            database_url,
            "select sum(quantity_sum) from lic.metering_rollups where account_id = %s",
            (tenant.id,),
        )
        == total
    )
    # The same id at another instant is another event (docs of api.ingest_events).
    moved = [{**batch[0], "occurred_at": at(-timedelta(minutes=2))}]
    assert (await ingest(client, tenant.headers, moved)).json()["accepted"] == 1


async def test_twenty_concurrent_senders_of_one_batch_count_it_once(client, tenant, database_url):
    when = at(-timedelta(seconds=30))
    batch = [
        {"id": f"c{n}", "meter": "tokens", "quantity": 2, "subject_key": f"s{n % 7}", "occurred_at": when}
        for n in range(200)
    ]
    responses = await asyncio.gather(*(ingest(client, tenant.headers, batch) for _ in range(20)))
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses if r.status_code != 200]
    assert sum(r.json()["accepted"] for r in responses) == 200
    assert sum(r.json()["duplicates"] for r in responses) == 19 * 200
    assert (
        scalar(database_url, "select count(*) from lic.metering_events where account_id = %s", (tenant.id,))
        == 200
    )
    assert (
        scalar(
            database_url,
            "select sum(event_count) from lic.metering_rollups where account_id = %s",
            (tenant.id,),
        )
        == 200
    )


async def test_rollups_equal_the_events_after_a_random_concurrent_workload(client, tenant, database_url):
    make_meter(database_url, tenant.id, "seats", "unique_count", unique_property="user")
    license_id = await a_license(client, tenant)
    rng = random.Random(20261125)
    pool = [
        {
            "id": f"r{n}",
            "meter": rng.choice(["tokens", "seats"]),
            "quantity": rng.choice([0, 1, 2.5, 10, 1000]),
            "occurred_at": at(-timedelta(minutes=rng.randrange(0, 600))),
            "properties": {"user": f"u{rng.randrange(5)}"},
            **rng.choice([{"license_id": license_id}, {"subject_key": f"k{rng.randrange(3)}"}]),
        }
        for n in range(600)
    ]
    batches = [rng.sample(pool, rng.randrange(1, 80)) for _ in range(40)]
    for start in range(0, len(batches), 8):
        await asyncio.gather(*(ingest(client, tenant.headers, b) for b in batches[start : start + 8]))
    mismatches = superuser(
        database_url,
        """
        with events as (
          select meter_id, date_trunc('hour', occurred_at, 'UTC') as hour,
            coalesce(license_id, '00000000-0000-0000-0000-000000000000') as license_id,
            coalesce(subject_key, '') as subject_key, count(*) as n, sum(quantity) as total,
            max(quantity) as top
          from lic.metering_events where account_id = %(a)s group by 1, 2, 3, 4
        )
        select * from events as e
        full join (select * from lic.metering_rollups where account_id = %(a)s) as r
          using (meter_id, hour, license_id, subject_key)
        where e.n is distinct from r.event_count or e.total is distinct from r.quantity_sum
          or e.top is distinct from r.quantity_max
        """,
        {"a": tenant.id},
    )
    assert mismatches == []
    distinct = superuser(
        database_url,
        """
        select (select count(*) from (select distinct meter_id, date_trunc('hour', occurred_at, 'UTC'),
                  license_id, subject_key, properties ->> 'user'
                from lic.metering_events e
                join lic.meters m on m.account_id = e.account_id and m.id = e.meter_id
                where e.account_id = %(a)s and m.code = 'seats') as d) as from_events,
               (select count(*) from lic.metering_rollup_values where account_id = %(a)s) as from_rollups
        """,
        {"a": tenant.id},
    )[0]
    assert distinct["from_events"] == distinct["from_rollups"] > 0


async def test_hard_budget_of_500_takes_exactly_50_of_100_parallel_spends_of_10(client, tenant, database_url):
    license_id = await a_license(client, tenant)
    meter_id = scalar(
        database_url,
        "select id::text from lic.meters where account_id = %s and code = 'tokens'",
        (tenant.id,),
    )
    make_budget(database_url, tenant.id, meter_id, license_id=license_id, limit=500)
    spends = [
        [{"id": f"b{n}", "meter": "tokens", "quantity": 10, "license_id": license_id}] for n in range(100)
    ]
    responses = await asyncio.gather(*(ingest(client, tenant.headers, s) for s in spends))
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 50 and statuses.count(402) == 50, statuses
    assert all(r.json()["accepted"] == 1 for r in responses if r.status_code == 200)
    for refused in (r for r in responses if r.status_code == 402):
        assert_error(refused, 402, "budget_exhausted")
    assert (
        scalar(database_url, "select used from lic.budget_usage where account_id = %s", (tenant.id,)) == 500
    )
    assert (
        scalar(
            database_url, "select sum(quantity) from lic.metering_events where account_id = %s", (tenant.id,)
        )
        == 500
    )
    # What is spent shows in validation and in a check.
    key = scalar(database_url, "select key from lic.licenses where id = %s", (license_id,))
    validation = await client.post("/v1/licenses/validate", headers=tenant.headers, json={"key": key})
    assert (validation.json()["valid"], validation.json()["code"]) == (False, "BUDGET_EXHAUSTED")
    check = await client.post(
        "/v1/budgets/check", headers=tenant.headers, json={"meter_code": "tokens", "license_id": license_id}
    )
    assert check.status_code == 200, check.text
    assert (check.json()["allowed"], Decimal(str(check.json()["remaining"]))) == (False, 0)


async def test_a_hard_budget_takes_a_batchs_events_in_order_each_if_it_fits(client, tenant, database_url):
    license_id = await a_license(client, tenant)
    meter_id = scalar(
        database_url,
        "select id::text from lic.meters where account_id = %s and code = 'tokens'",
        (tenant.id,),
    )
    make_budget(database_url, tenant.id, meter_id, license_id=license_id, limit=25)
    batch = [
        {"id": f"p{n}", "meter": "tokens", "quantity": quantity, "license_id": license_id}
        for n, quantity in enumerate([10, 10, 10, 10, 5])
    ]
    body = (await ingest(client, tenant.headers, batch)).json()
    # Each in order, if it fits: the last 5 fits in what the refused ones left.
    assert [(d["status"], d["code"]) for d in body["data"]] == [
        ("accepted", None),
        ("accepted", None),
        ("rejected", "budget_exhausted"),
        ("rejected", "budget_exhausted"),
        ("accepted", None),
    ]
    # An event of another subject is not held by this license's budget.
    other = [{"id": "free", "meter": "tokens", "quantity": 100, "subject_key": "someone"}]
    assert (await ingest(client, tenant.headers, other)).json()["accepted"] == 1


async def test_thresholds_are_emitted_once_per_period_and_soft_budgets_exceed_once(
    client, tenant, database_url
):
    license_id = await a_license(client, tenant)
    meter_id = scalar(
        database_url,
        "select id::text from lic.meters where account_id = %s and code = 'tokens'",
        (tenant.id,),
    )
    make_budget(
        database_url,
        tenant.id,
        meter_id,
        license_id=license_id,
        limit=100,
        hard=False,
        thresholds=[50, 80, 100],
    )
    for n in range(15):
        response = await ingest(
            client,
            tenant.headers,
            [{"id": f"t{n}", "meter": "tokens", "quantity": 10, "license_id": license_id}],
        )
        assert response.json()["accepted"] == 1
    events = superuser(
        database_url,
        "select type, object ->> 'threshold' as threshold from lic.events"
        " where account_id = %s and type like 'budget.%%' order by id",
        (tenant.id,),
    )
    assert [(e["type"], e["threshold"]) for e in events] == [
        ("budget.threshold_reached", "50"),
        ("budget.threshold_reached", "80"),
        ("budget.threshold_reached", "100"),
        ("budget.exceeded", None),
    ]
    assert (
        scalar(database_url, "select used from lic.budget_usage where account_id = %s", (tenant.id,)) == 150
    )


async def test_an_agent_records_and_checks_only_for_itself(client, tenant, database_url):
    license_id = await a_license(client, tenant)
    mine = (
        await client.post("/v1/agents", headers=tenant.headers, json={"name": "a", "license_id": license_id})
    ).json()
    other = (await client.post("/v1/agents", headers=tenant.headers, json={"name": "b"})).json()
    agent = bearer(mine["token"])
    body = (
        await ingest(
            client,
            agent,
            [
                {"id": "own", "meter": "tokens", "quantity": 3},
                {"id": "theirs", "meter": "tokens", "agent_id": other["id"]},
            ],
        )
    ).json()
    assert [(d["status"], d["code"]) for d in body["data"]] == [
        ("accepted", None),
        ("rejected", "forbidden_subject"),
    ]
    row = superuser(
        database_url, "select agent_id::text, license_id::text from lic.metering_events where id = 'own'"
    )[0]
    assert row == {"agent_id": mine["id"], "license_id": license_id}
    check = await client.post(
        "/v1/budgets/check", headers=agent, json={"meter_code": "tokens", "agent_id": other["id"]}
    )
    assert_error(check, 403, "forbidden")
    own = await client.post("/v1/budgets/check", headers=agent, json={"meter_code": "tokens"})
    assert own.status_code == 200 and own.json()["allowed"] is True and own.json()["remaining"] is None


async def test_usage_events_are_append_only(client, tenant, database_url):
    await ingest(client, tenant.headers, [{"id": "x", "meter": "tokens", "subject_key": "u"}])
    with psycopg.connect(database_url) as conn, pytest.raises(psycopg.Error, match="append-only"):
        conn.execute("update lic.metering_events set quantity = 0 where account_id = %s", (tenant.id,))
    with psycopg.connect(database_url) as conn, pytest.raises(psycopg.Error, match="append-only"):
        conn.execute("delete from lic.metering_events where account_id = %s", (tenant.id,))
    with psycopg.connect(database_url) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("set role lic_definer")
        conn.execute("update lic.metering_events set quantity = 0")
