"""Licenses over HTTP: create, list, get, update, the state machine, entitlement
overrides, tenancy, key kinds, and the tenant plan's limit under a race."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import uvicorn

from licentric.app import create_app

from license_helpers import (
    create_license,
    make_customer,
    make_entitlement,
    make_policy,
    publishable_key,
    set_license,
    superuser,
)
from support import assert_error

LICENSE_FIELDS = {
    "object",
    "id",
    "key",
    "policy_id",
    "policy_code",
    "customer_id",
    "status",
    "effective_status",
    "expires_at",
    "grace_ends_at",
    "suspended_reason",
    "metadata",
    "created_at",
    "updated_at",
    "canceled_at",
    "seats",
    "paid_through",
    "disputed_at",
    "stripe_subscription_id",
}


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture
def tenant(database_url, account) -> Any:
    """An account with policies monthly (30 days), yearly, forever (perpetual), old (archived)."""
    make_policy(database_url, account.id, "monthly")
    make_policy(database_url, account.id, "yearly", duration="365 days")
    make_policy(database_url, account.id, "forever", duration=None)
    make_policy(database_url, account.id, "old", archived_at=datetime.now(UTC))
    return account


# Create


async def test_create_by_policy_code_answers_the_license_with_its_key(client, tenant):
    response = await client.post(
        "/v1/licenses", headers=tenant.headers, json={"policy_code": "monthly", "metadata": {"order": "42"}}
    )
    assert response.status_code == 201, response.text
    license_ = response.json()
    assert set(license_) == LICENSE_FIELDS
    assert license_["object"] == "license"
    assert license_["status"] == license_["effective_status"] == "active"
    assert license_["policy_code"] == "monthly"
    assert license_["metadata"] == {"order": "42"}
    assert len(license_["key"]) == 35 and license_["key"].count("-") == 5
    expected = datetime.now(UTC) + timedelta(days=30)
    assert abs(at(license_["expires_at"]) - expected) < timedelta(minutes=1)


async def test_create_by_policy_id_for_a_customer(client, tenant, database_url):
    policy_id = superuser(
        database_url,
        "select id::text from lic.license_policies where account_id = %s and code = 'forever'",
        (tenant.id,),
    )[0]["id"]
    customer = make_customer(database_url, tenant.id, "user-1")
    license_ = await create_license(client, tenant.headers, policy_id=policy_id, customer_id=customer)
    assert license_["policy_id"] == policy_id
    assert license_["customer_id"] == customer
    assert license_["expires_at"] is None


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"policy_code": "nope"}, 404, "resource_missing"),
        ({}, 422, "invalid_parameter"),
        ({"policy_code": "monthly", "policy_id": str(uuid.uuid4())}, 422, "invalid_parameter"),
        ({"policy_code": "old"}, 409, "invalid_state"),
        ({"policy_code": "monthly", "customer_id": str(uuid.uuid4())}, 404, "resource_missing"),
        ({"policy_code": "monthly", "expires_at": "2000-01-01T00:00:00Z"}, 422, "invalid_parameter"),
        ({"policy_code": "monthly", "color": "red"}, 422, "invalid_parameter"),
    ],
)
async def test_create_refuses_bad_input(client, tenant, body, status, code):
    assert_error(await client.post("/v1/licenses", headers=tenant.headers, json=body), status, code)


async def test_create_is_idempotent(client, tenant):
    headers = {**tenant.headers, "Idempotency-Key": f"lic-{uuid.uuid4()}"}
    first = await client.post("/v1/licenses", headers=headers, json={"policy_code": "monthly"})
    again = await client.post("/v1/licenses", headers=headers, json={"policy_code": "monthly"})
    assert first.status_code == again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    listed = (await client.get("/v1/licenses", headers=tenant.headers)).json()
    assert [item["id"] for item in listed["data"]] == [first.json()["id"]]


# List and get


async def test_list_filters_and_pages(client, tenant, database_url):
    customer = make_customer(database_url, tenant.id, "user-1")
    made = [
        await create_license(client, tenant.headers, policy_code="monthly"),
        await create_license(client, tenant.headers, policy_code="yearly", customer_id=customer),
        await create_license(client, tenant.headers, policy_code="forever"),
    ]
    set_license(database_url, made[0]["id"], status="suspended")

    async def ids(**params: Any) -> list[str]:
        response = await client.get("/v1/licenses", headers=tenant.headers, params=params)
        assert response.status_code == 200, response.text
        assert response.json()["object"] == "list"
        return [item["id"] for item in response.json()["data"]]

    assert await ids() == [made[2]["id"], made[1]["id"], made[0]["id"]]
    assert await ids(status="suspended") == [made[0]["id"]]
    assert await ids(status="active") == [made[2]["id"], made[1]["id"]]
    assert await ids(license_policy_id=made[1]["policy_id"]) == [made[1]["id"]]
    assert await ids(customer_id=customer) == [made[1]["id"]]
    soon = (datetime.now(UTC) + timedelta(days=40)).isoformat()
    assert await ids(expiring_before=soon) == []  # the monthly one is suspended, the others are later
    assert await ids(expiring_before=(datetime.now(UTC) + timedelta(days=400)).isoformat()) == [made[1]["id"]]
    page = (await client.get("/v1/licenses", headers=tenant.headers, params={"limit": 2})).json()
    assert page["has_more"] is True and len(page["data"]) == 2
    rest = await ids(limit=2, starting_after=page["data"][-1]["id"])
    assert rest == [made[0]["id"]]


async def test_list_refuses_an_unknown_status(client, tenant):
    response = await client.get("/v1/licenses", headers=tenant.headers, params={"status": "overdue"})
    assert_error(response, 422, "invalid_parameter", "status")


async def test_get_answers_the_license_as_created(client, tenant):
    made = await create_license(client, tenant.headers, policy_code="monthly")
    response = await client.get(f"/v1/licenses/{made['id']}", headers=tenant.headers)
    assert response.status_code == 200
    assert response.json() == made


async def test_get_unknown_is_404(client, tenant):
    assert_error(
        await client.get(f"/v1/licenses/{uuid.uuid4()}", headers=tenant.headers), 404, "resource_missing"
    )


# Update


async def test_update_merges_metadata_and_moves_expiry(client, tenant):
    made = await create_license(client, tenant.headers, policy_code="monthly", metadata={"a": 1, "b": 2})
    url = f"/v1/licenses/{made['id']}"
    response = await client.post(url, headers=tenant.headers, json={"metadata": {"b": None, "c": 3}})
    assert response.status_code == 200, response.text
    assert response.json()["metadata"] == {"a": 1, "c": 3}
    response = await client.post(url, headers=tenant.headers, json={"expires_at": "2100-01-01T00:00:00Z"})
    assert at(response.json()["expires_at"]) == datetime(2100, 1, 1, tzinfo=UTC)
    response = await client.post(url, headers=tenant.headers, json={"clear_expiry": True})
    assert response.json()["expires_at"] is None


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"expires_at": "2000-01-01T00:00:00Z"}, 422, "invalid_parameter"),
        ({"expires_at": "2100-01-01T00:00:00Z", "clear_expiry": True}, 422, "invalid_parameter"),
        ({"metadata": [1]}, 422, "invalid_parameter"),
        ({"unknown": 1}, 422, "invalid_parameter"),
    ],
)
async def test_update_refuses_bad_input(client, tenant, body, status, code):
    made = await create_license(client, tenant.headers, policy_code="monthly")
    assert_error(
        await client.post(f"/v1/licenses/{made['id']}", headers=tenant.headers, json=body), status, code
    )


async def test_update_expiry_of_a_canceled_license_is_409(client, tenant):
    made = await create_license(client, tenant.headers, policy_code="monthly")
    await client.post(f"/v1/licenses/{made['id']}/cancel", headers=tenant.headers)
    response = await client.post(
        f"/v1/licenses/{made['id']}", headers=tenant.headers, json={"expires_at": "2100-01-01T00:00:00Z"}
    )
    assert_error(response, 409, "invalid_state")


# The state machine: each action from each status.

PAST = datetime.now(UTC) - timedelta(days=1)
STATES: dict[str, dict[str, Any]] = {
    "active": {},
    "past_due": {"status": "past_due", "grace_ends_at": datetime.now(UTC) + timedelta(days=3)},
    "overdue": {"status": "past_due", "grace_ends_at": PAST},
    "suspended": {"status": "suspended"},
    "expired": {"status": "expired", "expires_at": PAST},
    "lapsed": {"expires_at": PAST},  # active, but its expiry passed before any sweep
    "canceled": {"status": "canceled", "canceled_at": PAST},
}
TRANSITIONS: dict[str, dict[str, str | int]] = {
    # action: {from state: resulting status, or the HTTP error status}
    "suspend": {
        "active": "suspended",
        "past_due": "suspended",
        "overdue": "suspended",
        "suspended": 409,
        "expired": 409,
        "lapsed": 409,
        "canceled": 409,
    },
    "reinstate": {
        "active": 409,
        "past_due": 409,
        "overdue": 409,
        "suspended": "active",
        "expired": 409,
        "lapsed": 409,
        "canceled": 409,
    },
    "renew": {
        "active": "active",
        "past_due": "past_due",
        "overdue": "past_due",
        "suspended": "suspended",
        "expired": "active",
        "lapsed": "active",
        "canceled": 409,
    },
    "change_policy": {
        "active": "active",
        "past_due": "past_due",
        "overdue": "past_due",
        "suspended": "suspended",
        "expired": "expired",
        "lapsed": "active",
        "canceled": 409,
    },
    "cancel": {
        "active": "canceled",
        "past_due": "canceled",
        "overdue": "canceled",
        "suspended": "canceled",
        "expired": "canceled",
        "lapsed": "canceled",
        "canceled": 409,
    },
}
BODIES = {
    "change_policy": {"policy_code": "yearly"},
    "suspend": {"reason": "why"},
    "cancel": {"reason": "why"},
}


@pytest.mark.parametrize(
    ("action", "state", "expected"),
    [(action, state, expected) for action, row in TRANSITIONS.items() for state, expected in row.items()],
)
async def test_state_machine(client, tenant, database_url, action, state, expected):
    made = await create_license(client, tenant.headers, policy_code="monthly")
    if STATES[state]:
        set_license(database_url, made["id"], **STATES[state])
    response = await client.post(
        f"/v1/licenses/{made['id']}/{action}", headers=tenant.headers, json=BODIES.get(action)
    )
    if isinstance(expected, int):
        assert_error(response, expected, "invalid_state")
        after = (await client.get(f"/v1/licenses/{made['id']}", headers=tenant.headers)).json()
        assert after["status"] == STATES[state].get("status", "active"), "a refused change changes nothing"
    else:
        assert response.status_code == 200, response.text
        assert response.json()["status"] == expected


async def test_suspend_keeps_the_reason_and_reinstate_clears_it(client, tenant):
    made = await create_license(client, tenant.headers, policy_code="monthly")
    suspended = await client.post(
        f"/v1/licenses/{made['id']}/suspend", headers=tenant.headers, json={"reason": "chargeback"}
    )
    assert suspended.json()["suspended_reason"] == "chargeback"
    reinstated = await client.post(f"/v1/licenses/{made['id']}/reinstate", headers=tenant.headers)
    assert reinstated.json()["suspended_reason"] is None
    assert reinstated.json()["status"] == "active"


async def test_suspend_without_a_body_and_a_too_long_reason(client, tenant):
    made = await create_license(client, tenant.headers, policy_code="monthly")
    too_long = await client.post(
        f"/v1/licenses/{made['id']}/suspend", headers=tenant.headers, json={"reason": "x" * 501}
    )
    assert_error(too_long, 422, "invalid_parameter")
    plain = await client.post(f"/v1/licenses/{made['id']}/suspend", headers=tenant.headers)
    assert plain.status_code == 200 and plain.json()["suspended_reason"] is None


async def test_renew_extends_from_the_current_expiry(client, tenant):
    made = await create_license(client, tenant.headers, policy_code="monthly")
    renewed = await client.post(f"/v1/licenses/{made['id']}/renew", headers=tenant.headers)
    assert at(renewed.json()["expires_at"]) - at(made["expires_at"]) == timedelta(days=30)


async def test_renew_on_a_perpetual_policy_is_409(client, tenant):
    made = await create_license(client, tenant.headers, policy_code="forever")
    assert_error(
        await client.post(f"/v1/licenses/{made['id']}/renew", headers=tenant.headers), 409, "invalid_state"
    )


async def test_change_policy(client, tenant):
    made = await create_license(client, tenant.headers, policy_code="monthly")
    url = f"/v1/licenses/{made['id']}/change_policy"
    moved = await client.post(url, headers=tenant.headers, json={"policy_code": "yearly"})
    assert moved.json()["policy_code"] == "yearly"
    assert moved.json()["expires_at"] == made["expires_at"]
    reset = await client.post(
        url, headers=tenant.headers, json={"policy_code": "forever", "reset_expiry": True}
    )
    assert reset.json()["policy_code"] == "forever" and reset.json()["expires_at"] is None
    assert_error(
        await client.post(url, headers=tenant.headers, json={"policy_code": "old"}), 409, "invalid_state"
    )
    assert_error(
        await client.post(url, headers=tenant.headers, json={"policy_code": "nope"}), 404, "resource_missing"
    )
    assert_error(await client.post(url, headers=tenant.headers, json={}), 422, "invalid_parameter")


async def test_state_changes_emit_events_with_previous_attributes(client, tenant, database_url):
    made = await create_license(client, tenant.headers, policy_code="monthly")
    base = f"/v1/licenses/{made['id']}"
    await client.post(f"{base}/suspend", headers=tenant.headers, json={"reason": "r"})
    await client.post(f"{base}/reinstate", headers=tenant.headers)
    await client.post(f"{base}/renew", headers=tenant.headers)
    await client.post(f"{base}/change_policy", headers=tenant.headers, json={"policy_code": "yearly"})
    await client.post(base, headers=tenant.headers, json={"metadata": {"k": "v"}})
    await client.post(f"{base}/cancel", headers=tenant.headers)
    events = superuser(
        database_url,
        "select type, object, previous_attributes from lic.events"
        " where account_id = %s and object ->> 'id' = %s order by id",
        (tenant.id, made["id"]),
    )
    assert [e["type"] for e in events] == [
        "license.created",
        "license.suspended",
        "license.reinstated",
        "license.renewed",
        "license.policy_changed",
        "license.updated",
        "license.canceled",
    ]
    by_type = {e["type"]: e for e in events}
    assert by_type["license.suspended"]["previous_attributes"]["status"] == "active"
    assert by_type["license.reinstated"]["previous_attributes"]["status"] == "suspended"
    assert "expires_at" in by_type["license.renewed"]["previous_attributes"]
    assert by_type["license.policy_changed"]["previous_attributes"]["policy_code"] == "monthly"
    assert by_type["license.updated"]["previous_attributes"] == {"metadata": {}}
    assert by_type["license.canceled"]["object"]["status"] == "canceled"


# Entitlement overrides


async def test_entitlement_overrides(client, tenant, database_url):
    make_entitlement(database_url, tenant.id, "sso", ["monthly"])
    make_entitlement(database_url, tenant.id, "api", ["monthly"])
    make_entitlement(database_url, tenant.id, "audit")
    made = await create_license(client, tenant.headers, policy_code="monthly")
    url = f"/v1/licenses/{made['id']}/entitlements"

    listed = await client.get(url, headers=tenant.headers)
    assert listed.status_code == 200
    assert listed.json() == {
        "object": "list",
        "data": [
            {"object": "license_entitlement", "code": "api", "name": "API", "source": "policy"},
            {"object": "license_entitlement", "code": "sso", "name": "SSO", "source": "policy"},
        ],
        "has_more": False,
    }
    granted = await client.put(f"{url}/audit", headers=tenant.headers, json={"effect": "grant"})
    assert granted.status_code == 200, granted.text
    assert [(e["code"], e["source"]) for e in granted.json()["data"]] == [
        ("api", "policy"),
        ("audit", "grant"),
        ("sso", "policy"),
    ]
    revoked = await client.put(f"{url}/sso", headers=tenant.headers, json={"effect": "revoke"})
    assert [e["code"] for e in revoked.json()["data"]] == ["api", "audit"]
    removed = await client.delete(f"{url}/sso", headers=tenant.headers)
    assert removed.status_code == 200
    assert [e["code"] for e in removed.json()["data"]] == ["api", "audit", "sso"]
    assert [e["code"] for e in (await client.get(url, headers=tenant.headers)).json()["data"]] == [
        "api",
        "audit",
        "sso",
    ]


async def test_entitlement_override_errors(client, tenant, database_url):
    make_entitlement(database_url, tenant.id, "sso", ["monthly"])
    made = await create_license(client, tenant.headers, policy_code="monthly")
    url = f"/v1/licenses/{made['id']}/entitlements"
    assert_error(
        await client.put(f"{url}/nope", headers=tenant.headers, json={"effect": "grant"}),
        404,
        "resource_missing",
    )
    assert_error(
        await client.put(f"{url}/sso", headers=tenant.headers, json={"effect": "allow"}),
        422,
        "invalid_parameter",
    )
    assert_error(await client.put(f"{url}/sso", headers=tenant.headers, json={}), 422, "invalid_parameter")
    assert_error(await client.delete(f"{url}/nope", headers=tenant.headers), 404, "resource_missing")
    missing = f"/v1/licenses/{uuid.uuid4()}/entitlements"
    assert_error(await client.get(missing, headers=tenant.headers), 404, "resource_missing")
    assert_error(
        await client.put(f"{missing}/sso", headers=tenant.headers, json={"effect": "grant"}),
        404,
        "resource_missing",
    )


# Tenancy and key kinds


def license_routes(license_id: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    base = f"/v1/licenses/{license_id}"
    return [
        ("GET", base, None),
        ("POST", base, {"metadata": {"x": 1}}),
        ("POST", f"{base}/suspend", None),
        ("POST", f"{base}/reinstate", None),
        ("POST", f"{base}/renew", None),
        ("POST", f"{base}/change_policy", {"policy_code": "monthly"}),
        ("POST", f"{base}/cancel", None),
        ("GET", f"{base}/entitlements", None),
        ("PUT", f"{base}/entitlements/sso", {"effect": "grant"}),
        ("DELETE", f"{base}/entitlements/sso", None),
    ]


async def test_another_tenants_license_is_404_on_every_route(client, make_account, database_url):
    a, b = make_account("A"), make_account("B")
    for account in (a, b):
        make_policy(database_url, account.id, "monthly")
        make_entitlement(database_url, account.id, "sso", ["monthly"])
    owned_by_b = await create_license(client, b.headers, policy_code="monthly")
    for method, url, body in license_routes(owned_by_b["id"]):
        response = await client.request(method, url, headers=a.headers, json=body)
        assert_error(response, 404, "resource_missing")
    # and B's license is untouched
    after = (await client.get(f"/v1/licenses/{owned_by_b['id']}", headers=b.headers)).json()
    assert after == owned_by_b
    listed = (await client.get("/v1/licenses", headers=a.headers)).json()
    assert listed["data"] == []
    filtered = await client.get(
        "/v1/licenses", headers=a.headers, params={"license_policy_id": owned_by_b["policy_id"]}
    )
    assert filtered.json()["data"] == []


async def test_publishable_key_may_not_manage_licenses(client, tenant):
    made = await create_license(client, tenant.headers, policy_code="monthly")
    pk = await publishable_key(client, tenant.headers)
    assert_error(await client.get("/v1/licenses", headers=pk), 403, "forbidden")
    assert_error(
        await client.post("/v1/licenses", headers=pk, json={"policy_code": "monthly"}), 403, "forbidden"
    )
    for method, url, body in license_routes(made["id"]):
        assert_error(await client.request(method, url, headers=pk, json=body), 403, "forbidden")
    validated = await client.post("/v1/licenses/validate", headers=pk, json={"key": made["key"]})
    assert validated.status_code == 200 and validated.json()["code"] == "VALID"


async def test_license_routes_need_a_key(client):
    assert_error(await client.get("/v1/licenses"), 401, "unauthenticated")
    assert_error(await client.post("/v1/licenses/validate", json={"key": "x"}), 401, "unauthenticated")


# The tenant plan's limit under a race: a free account (100 active licenses)
# holding 95, then 20 creates at once over real connections.


@pytest.fixture(scope="module")
def live_server(settings) -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
    sock.close()


async def test_plan_limit_race_lets_exactly_the_remaining_licenses_through(live_server, tenant, database_url):
    superuser(
        database_url,
        "insert into lic.licenses (account_id, key, policy_id, expires_at)"
        " select p.account_id, private.new_license_key(), p.id, now() + interval '30 days'"
        " from lic.license_policies as p, generate_series(1, 95)"
        " where p.account_id = %s and p.code = 'monthly'",
        (tenant.id,),
    )
    async with httpx.AsyncClient(base_url=live_server, timeout=30) as http:
        before = (await http.get("/v1/account", headers=tenant.headers)).json()
        assert before["usage"]["active_licenses"] == 95
        responses = await asyncio.gather(
            *(
                http.post("/v1/licenses", headers=tenant.headers, json={"policy_code": "monthly"})
                for _ in range(20)
            )
        )
        account = (await http.get("/v1/account", headers=tenant.headers)).json()
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] * 5 + [402] * 15, [r.text for r in responses]
    for response in responses:
        if response.status_code == 402:
            assert_error(response, 402, "plan_limit_reached")
    assert account["usage"]["active_licenses"] == 100
    counted = superuser(
        database_url,
        "select count(*)::int as n from lic.licenses"
        " where account_id = %s and status in ('active', 'past_due')",
        (tenant.id,),
    )
    assert counted[0]["n"] == 100
