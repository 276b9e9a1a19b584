"""Outbound webhooks over HTTP: endpoints (the secret shown once, revealed, rotated with an overlap),
the SSRF guard at registration with private targets allowed or not, updates, deletion, test pings,
and the delivery log with its filters, attempts, retry and replay; another tenant's, an agent token's
and an unconfigured server's view of them.

The module has a database of its own: its tests claim deliveries as the worker does, across tenants,
and no other module's worker may try to send to the addresses registered here."""

from __future__ import annotations

import base64
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from litestar.testing import AsyncTestClient
from psycopg.rows import dict_row

from licentric.app import create_app
from licentric.crypto import SecretBox
from licentric.db import WEB_ROLE, login_url
from licentric.migrate import migrate
from licentric.settings import Settings

from support import assert_error, bearer, create_key

# The tests' LICENTRIC_SECRET_KEY (conftest.TEST_SECRET_KEY).
SECRET_KEY = bytes(range(32))
# A public address as an IP literal: allowed without a DNS lookup, and never sent to (no worker runs).
PUBLIC = "https://93.184.215.14"
SECRET = re.compile(r"^whsec_([A-Za-z0-9+/]{43}=)$")
ENDPOINT_FIELDS = {
    "object",
    "id",
    "url",
    "description",
    "event_types",
    "enabled",
    "disabled_reason",
    "disabled_at",
    "secret_rotated_at",
    "created_at",
    "updated_at",
    "secret",
}
DELIVERY_FIELDS = {
    "object",
    "id",
    "endpoint_id",
    "event_id",
    "event_type",
    "status",
    "attempts",
    "next_attempt_at",
    "last_attempt_at",
    "last_status_code",
    "succeeded_at",
    "created_at",
}


@pytest.fixture(scope="module")
def database_url(empty_database: Callable[[], str]) -> str:
    url = empty_database()
    migrate(url)
    return url


@pytest.fixture(scope="module")
def settings(database_url: str) -> Settings:
    return replace(
        Settings.from_env(),
        database_url=login_url(database_url, WEB_ROLE),
        rate_limit_per_minute=100_000,
        secret_key=SECRET_KEY,
        public_url="https://licentric.test",
        webhook_allow_private_targets=False,
    )


@pytest.fixture
async def private_client(settings: Settings) -> AsyncIterator[AsyncTestClient]:
    """A client of a server that allows private targets (LICENTRIC_WEBHOOK_ALLOW_PRIVATE_TARGETS)."""
    app = create_app(replace(settings, webhook_allow_private_targets=True))
    async with AsyncTestClient(app=app) as test_client:
        yield test_client


async def create_endpoint(
    client: Any, headers: dict[str, str], url: str = f"{PUBLIC}/hooks", **fields: Any
) -> dict[str, Any]:
    response = await client.post("/v1/webhook_endpoints", headers=headers, json={"url": url, **fields})
    assert response.status_code == 201, response.text
    return response.json()


async def endpoint_ids(client: Any, headers: dict[str, str], **params: Any) -> list[str]:
    response = await client.get("/v1/webhook_endpoints", headers=headers, params=params)
    assert response.status_code == 200, response.text
    return [endpoint["id"] for endpoint in response.json()["data"]]


async def deliveries(client: Any, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    response = await client.get("/v1/webhook_deliveries", headers=headers, params={"limit": 100, **params})
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def ping(client: Any, headers: dict[str, str], endpoint_id: str) -> dict[str, Any]:
    response = await client.post(f"/v1/webhook_endpoints/{endpoint_id}/test", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def run_sql(database_url: str, statement: str, params: Any = None, role: str | None = None) -> list[dict]:
    """One statement in its own committed transaction, as the superuser or as role."""
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        if role:
            conn.execute(f"set role {role}")
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else []


def stored_secrets(database_url: str, secret_key: str, endpoint_id: str) -> list[tuple[str, datetime | None]]:
    """api.webhook_endpoint_secrets as the tenant sees it over SQL, decrypted: (secret, expires_at)."""
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        conn.execute("set role lic_app")
        conn.execute("select from api.authenticate(secret => %s)", (secret_key,))
        rows = conn.execute(
            "select * from api.webhook_endpoint_secrets(endpoint_id => %s)", (endpoint_id,)
        ).fetchall()
        account = conn.execute("select id from api.get_account()").fetchone()["id"]
    box = SecretBox(SECRET_KEY)
    return [
        (box.decrypt(row["secret_ciphertext"], account, "webhook_endpoint_secret"), row["expires_at"])
        for row in rows
    ]


def claim(database_url: str, delivery_id: str) -> dict[str, Any]:
    """Claim one delivery as the worker does (lic_worker); any other claimed delivery is released."""
    rows = run_sql(
        database_url, "select * from worker.claim_webhook_deliveries(batch_size => 1000)", role="lic_worker"
    )
    others = [row["lease_id"] for row in rows if str(row["delivery_id"]) != delivery_id]
    if others:
        run_sql(
            database_url,
            "select worker.release_webhook_deliveries(lease_ids => %s)",
            (others,),
            role="lic_worker",
        )
    mine = [row for row in rows if str(row["delivery_id"]) == delivery_id]
    assert len(mine) == 1, f"delivery {delivery_id} was not claimed"
    return mine[0]


def record(database_url: str, claimed: dict[str, Any], status_code: int | None, **fields: Any) -> str:
    """Record an attempt of a claimed delivery as the worker does; the outcome."""
    args = {
        "started_at": datetime.now(UTC),
        "latency_ms": 12,
        "error_class": None if status_code is None or status_code < 300 else "http_status",
        "response_body": f"answered {status_code}",
        **fields,
    }
    rows = run_sql(
        database_url,
        "select worker.record_webhook_attempt(delivery_id => %(delivery_id)s, account_id => %(account_id)s,"
        " lease_id => %(lease_id)s, started_at => %(started_at)s, latency_ms => %(latency_ms)s,"
        " status_code => %(status_code)s, error_class => %(error_class)s,"
        " response_body => %(response_body)s) as outcome",
        {**claimed, "status_code": status_code, **args},
        role="lic_worker",
    )
    return rows[0]["outcome"]


def make_due(database_url: str, delivery_id: str) -> None:
    """Bring a scheduled retry forward to now (the superuser stands in for time passing)."""
    run_sql(
        database_url,
        "update lic.webhook_deliveries set next_attempt_at = now() where id = %s",
        (delivery_id,),
    )


def fail_for_good(database_url: str, delivery_id: str) -> None:
    """Answer 500 to every attempt until the retry schedule is spent."""
    for _ in range(20):
        make_due(database_url, delivery_id)
        if record(database_url, claim(database_url, delivery_id), 500) == "failed":
            return
    raise AssertionError("the delivery never failed for good")


# Endpoints and their secrets


async def test_created_endpoint_shows_its_secret_once(client, account):
    endpoint = await create_endpoint(
        client, account.headers, event_types=["license.suspended"], description="CRM sync"
    )
    assert set(endpoint) == ENDPOINT_FIELDS
    assert (endpoint["object"], endpoint["url"], endpoint["event_types"], endpoint["description"]) == (
        "webhook_endpoint",
        f"{PUBLIC}/hooks",
        ["license.suspended"],
        "CRM sync",
    )
    assert (endpoint["enabled"], endpoint["disabled_reason"], endpoint["disabled_at"]) == (True, None, None)
    found = SECRET.match(endpoint["secret"])
    assert found and len(base64.b64decode(found.group(1))) == 32
    got = await client.get(f"/v1/webhook_endpoints/{endpoint['id']}", headers=account.headers)
    assert got.status_code == 200
    assert got.json() == {**endpoint, "secret": None}
    listed = (await client.get("/v1/webhook_endpoints", headers=account.headers)).json()["data"]
    assert listed == [{**endpoint, "secret": None}]
    assert endpoint["secret"] not in got.text + str(listed)


async def test_the_answer_carrying_a_secret_is_not_cached(client, account):
    response = await client.post(
        "/v1/webhook_endpoints", headers=account.headers, json={"url": f"{PUBLIC}/hooks"}
    )
    assert response.headers["cache-control"] == "no-store"
    revealed = await client.get(
        f"/v1/webhook_endpoints/{response.json()['id']}/secret", headers=account.headers
    )
    assert revealed.headers["cache-control"] == "no-store"


async def test_each_endpoint_gets_its_own_secret(client, account):
    first = await create_endpoint(client, account.headers)
    second = await create_endpoint(client, account.headers)
    assert first["secret"] != second["secret"]


async def test_every_event_type_by_default(client, account):
    endpoint = await create_endpoint(client, account.headers)
    assert endpoint["event_types"] == []


async def test_reveal_returns_the_secret_made_at_creation(client, account):
    endpoint = await create_endpoint(client, account.headers)
    response = await client.get(f"/v1/webhook_endpoints/{endpoint['id']}/secret", headers=account.headers)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "object": "webhook_endpoint_secret",
        "webhook_endpoint_id": endpoint["id"],
        "secret": endpoint["secret"],
        "previous_secret_expires_at": None,
    }


async def test_the_secret_is_stored_encrypted(client, account, database_url):
    endpoint = await create_endpoint(client, account.headers)
    rows = run_sql(
        database_url,
        "select secret_ciphertext from lic.webhook_endpoints where id = %s",
        (endpoint["id"],),
    )
    assert endpoint["secret"].encode() not in bytes(rows[0]["secret_ciphertext"])
    assert stored_secrets(database_url, account.secret_key, endpoint["id"]) == [(endpoint["secret"], None)]


async def test_rotation_returns_a_new_secret_and_the_old_one_signs_during_the_overlap(
    client, account, database_url
):
    endpoint = await create_endpoint(client, account.headers)
    before = datetime.now(UTC)
    response = await client.post(
        f"/v1/webhook_endpoints/{endpoint['id']}/rotate_secret",
        headers=account.headers,
        json={"overlap_seconds": 3600},
    )
    assert response.status_code == 200, response.text
    rotated = response.json()
    assert response.headers["cache-control"] == "no-store"
    assert SECRET.match(rotated["secret"]) and rotated["secret"] != endpoint["secret"]
    assert rotated["id"] == endpoint["id"]
    (new, current_expiry), (old, old_expiry) = stored_secrets(
        database_url, account.secret_key, endpoint["id"]
    )
    assert (new, current_expiry, old) == (rotated["secret"], None, endpoint["secret"])
    assert before + timedelta(seconds=3590) < old_expiry < datetime.now(UTC) + timedelta(seconds=3610)
    revealed = await client.get(f"/v1/webhook_endpoints/{endpoint['id']}/secret", headers=account.headers)
    assert (revealed.json()["secret"], revealed.json()["previous_secret_expires_at"]) == (
        rotated["secret"],
        old_expiry.isoformat().replace("+00:00", "Z"),
    )


async def test_rotation_keeps_the_old_secret_for_24_hours_by_default(client, account, database_url):
    endpoint = await create_endpoint(client, account.headers)
    response = await client.post(
        f"/v1/webhook_endpoints/{endpoint['id']}/rotate_secret", headers=account.headers
    )
    assert response.status_code == 200, response.text
    secrets = stored_secrets(database_url, account.secret_key, endpoint["id"])
    assert [secret for secret, _ in secrets] == [response.json()["secret"], endpoint["secret"]]
    left = secrets[1][1] - datetime.now(UTC)
    assert timedelta(hours=23, minutes=59) < left <= timedelta(hours=24)


async def test_rotation_without_overlap_retires_the_old_secret_at_once(client, account, database_url):
    endpoint = await create_endpoint(client, account.headers)
    response = await client.post(
        f"/v1/webhook_endpoints/{endpoint['id']}/rotate_secret",
        headers=account.headers,
        json={"overlap_seconds": 0},
    )
    assert response.status_code == 200, response.text
    assert stored_secrets(database_url, account.secret_key, endpoint["id"]) == [
        (response.json()["secret"], None)
    ]


@pytest.mark.parametrize("overlap", [-1, 7 * 86400 + 1])
async def test_an_overlap_beyond_seven_days_or_negative_is_refused(client, account, database_url, overlap):
    endpoint = await create_endpoint(client, account.headers)
    response = await client.post(
        f"/v1/webhook_endpoints/{endpoint['id']}/rotate_secret",
        headers=account.headers,
        json={"overlap_seconds": overlap},
    )
    assert_error(response, 422, "invalid_parameter", "overlap_seconds")
    assert stored_secrets(database_url, account.secret_key, endpoint["id"]) == [(endpoint["secret"], None)]


async def test_idempotent_creation_replays_the_endpoint_with_the_same_secret(client, account):
    headers = {**account.headers, "Idempotency-Key": "endpoint-1"}
    body = {"url": f"{PUBLIC}/hooks", "event_types": ["license.created"]}
    first = await client.post("/v1/webhook_endpoints", headers=headers, json=body)
    again = await client.post("/v1/webhook_endpoints", headers=headers, json=body)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert await endpoint_ids(client, account.headers) == [first.json()["id"]]


async def test_the_stored_idempotent_answer_holds_no_secret(client, account, database_url):
    headers = {**account.headers, "Idempotency-Key": "endpoint-2"}
    endpoint = (
        await client.post("/v1/webhook_endpoints", headers=headers, json={"url": f"{PUBLIC}/hooks"})
    ).json()
    stored = run_sql(
        database_url,
        "select response_body::text as body from lic.idempotency_keys where account_id = %s",
        (account.id,),
    )
    assert stored and all(endpoint["secret"] not in row["body"] for row in stored)


async def test_idempotent_rotation_replays_the_rotated_secret(client, account):
    endpoint = await create_endpoint(client, account.headers)
    headers = {**account.headers, "Idempotency-Key": "rotate-1"}
    path = f"/v1/webhook_endpoints/{endpoint['id']}/rotate_secret"
    first = await client.post(path, headers=headers)
    again = await client.post(path, headers=headers)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["secret"] == first.json()["secret"] != endpoint["secret"]


# The SSRF guard at registration


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("ftp://93.184.215.14/hooks", "unsafe_url"),
        ("file:///etc/passwd", "unsafe_url"),
        ("93.184.215.14/hooks", "unsafe_url"),
        ("https://user:password@93.184.215.14/hooks", "unsafe_url"),
        ("https://token@93.184.215.14/hooks", "unsafe_url"),
        ("https:///hooks", "unsafe_url"),
        (f"{PUBLIC}/{'x' * 2048}", "unsafe_url"),
        ("http://127.0.0.1:8000/hooks", "unsafe_target"),
        ("http://localhost:8000/hooks", "unsafe_target"),
        ("http://[::1]/hooks", "unsafe_target"),
        ("http://10.1.2.3/hooks", "unsafe_target"),
        ("http://192.168.0.10/hooks", "unsafe_target"),
        ("http://169.254.169.254/latest/meta-data/", "unsafe_target"),
        ("http://100.64.0.1/hooks", "unsafe_target"),
        ("http://0.0.0.0/hooks", "unsafe_target"),
        ("http://[::ffff:127.0.0.1]/hooks", "unsafe_target"),
        ("http://2130706433/hooks", "unsafe_target"),
        ("http://0x7f.1/hooks", "unsafe_target"),
    ],
)
async def test_an_unsafe_url_is_refused_and_nothing_is_written(client, account, url, code):
    response = await client.post("/v1/webhook_endpoints", headers=account.headers, json={"url": url})
    error = assert_error(response, 422, code, "url")
    assert error["type"] == "invalid_request_error"
    assert await endpoint_ids(client, account.headers) == []
    events = (await client.get("/v1/events", headers=account.headers)).json()["data"]
    assert events == []


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8000/hooks", "http://localhost:8000/hooks", "http://10.1.2.3/hooks", "http://[::1]/"],
)
async def test_private_targets_are_allowed_when_the_server_allows_them(private_client, account, url):
    endpoint = await create_endpoint(private_client, account.headers, url)
    assert endpoint["url"] == url


@pytest.mark.parametrize(
    "url", ["ftp://127.0.0.1/hooks", "http://user:pw@127.0.0.1/hooks", "http://localhost:0/hooks"]
)
async def test_allowing_private_targets_still_requires_http_without_credentials(private_client, account, url):
    response = await private_client.post("/v1/webhook_endpoints", headers=account.headers, json={"url": url})
    assert_error(response, 422, "unsafe_url", "url")
    assert await endpoint_ids(private_client, account.headers) == []


async def test_a_host_that_does_not_resolve_is_refused(client, account):
    url = f"https://{uuid.uuid4().hex}.invalid/hooks"
    response = await client.post("/v1/webhook_endpoints", headers=account.headers, json={"url": url})
    assert_error(response, 422, "unsafe_url", "url")


@pytest.mark.parametrize(
    "event_types", [["license.exploded"], ["Not A Type"], ["license.suspended", "nope.nope"], [""]]
)
async def test_unknown_event_types_are_refused(client, account, event_types):
    response = await client.post(
        "/v1/webhook_endpoints",
        headers=account.headers,
        json={"url": f"{PUBLIC}/hooks", "event_types": event_types},
    )
    assert_error(response, 422, "invalid_parameter")
    assert await endpoint_ids(client, account.headers) == []


async def test_ping_cannot_be_subscribed_to(client, account):
    response = await client.post(
        "/v1/webhook_endpoints", headers=account.headers, json={"url": f"{PUBLIC}/h", "event_types": ["ping"]}
    )
    assert_error(response, 422, "invalid_parameter")


@pytest.mark.parametrize("body", [{}, {"url": 42}, {"url": f"{PUBLIC}/h", "secret": "whsec_mine"}])
async def test_a_malformed_body_is_refused(client, account, body):
    response = await client.post("/v1/webhook_endpoints", headers=account.headers, json=body)
    assert response.status_code in (400, 422)
    assert await endpoint_ids(client, account.headers) == []


# Listing, updating, deleting


async def test_endpoints_page_newest_first(client, account):
    made = [(await create_endpoint(client, account.headers, f"{PUBLIC}/h{i}"))["id"] for i in range(5)]
    first = (await client.get("/v1/webhook_endpoints", headers=account.headers, params={"limit": 2})).json()
    assert ([e["id"] for e in first["data"]], first["has_more"]) == (made[:2:-1][:2], True)
    rest = (
        await client.get(
            "/v1/webhook_endpoints",
            headers=account.headers,
            params={"starting_after": first["data"][-1]["id"]},
        )
    ).json()
    assert ([e["id"] for e in rest["data"]], rest["has_more"]) == (made[2::-1], False)
    back = (
        await client.get(
            "/v1/webhook_endpoints",
            headers=account.headers,
            params={"limit": 2, "ending_before": rest["data"][0]["id"]},
        )
    ).json()
    assert ([e["id"] for e in back["data"]], back["has_more"]) == (made[:2:-1][:2], False)


async def test_update_changes_the_url_types_and_description(client, account):
    endpoint = await create_endpoint(client, account.headers, event_types=["license.created"])
    response = await client.post(
        f"/v1/webhook_endpoints/{endpoint['id']}",
        headers=account.headers,
        json={
            "url": f"{PUBLIC}/v2/hooks",
            "event_types": ["license.suspended", "license.canceled"],
            "description": "ops",
        },
    )
    assert response.status_code == 200, response.text
    updated = response.json()
    assert (updated["url"], sorted(updated["event_types"]), updated["description"], updated["secret"]) == (
        f"{PUBLIC}/v2/hooks",
        ["license.canceled", "license.suspended"],
        "ops",
        None,
    )
    assert updated["created_at"] == endpoint["created_at"]
    got = (await client.get(f"/v1/webhook_endpoints/{endpoint['id']}", headers=account.headers)).json()
    assert got == updated
    events = (await client.get("/v1/events?type=webhook_endpoint.updated", headers=account.headers)).json()[
        "data"
    ]
    assert [e["data"]["object"]["id"] for e in events] == [endpoint["id"]]


async def test_update_leaves_out_fields_unchanged(client, account):
    endpoint = await create_endpoint(
        client, account.headers, event_types=["license.created"], description="a"
    )
    response = await client.post(
        f"/v1/webhook_endpoints/{endpoint['id']}", headers=account.headers, json={"description": "b"}
    )
    assert response.status_code == 200, response.text
    assert (response.json()["url"], response.json()["event_types"], response.json()["description"]) == (
        endpoint["url"],
        ["license.created"],
        "b",
    )


async def test_a_null_description_removes_it(client, account):
    endpoint = await create_endpoint(client, account.headers, description="CRM sync")
    response = await client.post(
        f"/v1/webhook_endpoints/{endpoint['id']}", headers=account.headers, json={"description": None}
    )
    assert response.status_code == 200, response.text
    assert response.json()["description"] is None


async def test_rotation_is_dated_and_emits_webhook_endpoint_updated(client, account):
    endpoint = await create_endpoint(client, account.headers)
    assert endpoint["secret_rotated_at"] is None
    rotated = (
        await client.post(f"/v1/webhook_endpoints/{endpoint['id']}/rotate_secret", headers=account.headers)
    ).json()
    assert rotated["secret_rotated_at"] is not None
    got = (await client.get(f"/v1/webhook_endpoints/{endpoint['id']}", headers=account.headers)).json()
    assert got == {**rotated, "secret": None}
    events = (await client.get("/v1/events?type=webhook_endpoint.updated", headers=account.headers)).json()[
        "data"
    ]
    assert [list(e["data"]["previous_attributes"]) for e in events] == [["secret_rotated_at"]]
    assert rotated["secret"] not in str(events) and endpoint["secret"] not in str(events)


async def test_an_update_to_every_type_subscribes_to_all(client, account):
    endpoint = await create_endpoint(client, account.headers, event_types=["license.created"])
    response = await client.post(
        f"/v1/webhook_endpoints/{endpoint['id']}", headers=account.headers, json={"event_types": []}
    )
    assert response.status_code == 200, response.text
    assert response.json()["event_types"] == []


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://169.254.169.254/latest/meta-data/", "unsafe_target"),
        ("gopher://93.184.215.14/", "unsafe_url"),
    ],
)
async def test_a_changed_url_is_checked_again(client, account, url, code):
    endpoint = await create_endpoint(client, account.headers)
    response = await client.post(
        f"/v1/webhook_endpoints/{endpoint['id']}", headers=account.headers, json={"url": url}
    )
    assert_error(response, 422, code, "url")
    got = (await client.get(f"/v1/webhook_endpoints/{endpoint['id']}", headers=account.headers)).json()
    assert got["url"] == endpoint["url"]


async def test_an_update_with_unknown_event_types_is_refused(client, account):
    endpoint = await create_endpoint(client, account.headers)
    response = await client.post(
        f"/v1/webhook_endpoints/{endpoint['id']}",
        headers=account.headers,
        json={"event_types": ["license.exploded"]},
    )
    assert_error(response, 422, "invalid_parameter")


@pytest.mark.parametrize("field", ["url", "event_types", "enabled"])
async def test_an_update_cannot_null_a_required_field(client, account, field):
    endpoint = await create_endpoint(client, account.headers)
    response = await client.post(
        f"/v1/webhook_endpoints/{endpoint['id']}", headers=account.headers, json={field: None}
    )
    assert_error(response, 422, "invalid_parameter")


async def test_disabling_and_enabling_an_endpoint(client, account):
    endpoint = await create_endpoint(client, account.headers)
    path = f"/v1/webhook_endpoints/{endpoint['id']}"
    disabled = (await client.post(path, headers=account.headers, json={"enabled": False})).json()
    assert (disabled["enabled"], disabled["disabled_reason"]) == (False, "disabled by the account")
    assert disabled["disabled_at"] is not None
    assert_error(await client.post(f"{path}/test", headers=account.headers), 409, "invalid_state")
    enabled = (await client.post(path, headers=account.headers, json={"enabled": True})).json()
    assert (enabled["enabled"], enabled["disabled_reason"], enabled["disabled_at"]) == (True, None, None)
    await ping(client, account.headers, endpoint["id"])


async def test_disabling_fails_pending_deliveries_and_a_replay_after_enabling_sends_them(client, account):
    endpoint = await create_endpoint(client, account.headers, event_types=["customer.created"])
    since = datetime.now(UTC) - timedelta(minutes=1)
    delivery = await ping(client, account.headers, endpoint["id"])
    path = f"/v1/webhook_endpoints/{endpoint['id']}"
    await client.post(path, headers=account.headers, json={"enabled": False})
    assert [d["status"] for d in await deliveries(client, account.headers)] == ["failed"]
    await client.post(path, headers=account.headers, json={"enabled": True})
    replayed = await client.post(f"{path}/replay", headers=account.headers, json={"since": since.isoformat()})
    assert replayed.json()["replayed"] == 1
    assert [(d["id"], d["status"]) for d in await deliveries(client, account.headers)] == [
        (delivery["id"], "pending")
    ]


async def test_a_disabled_endpoint_gets_no_new_deliveries(client, account):
    endpoint = await create_endpoint(client, account.headers)
    await client.post(
        f"/v1/webhook_endpoints/{endpoint['id']}", headers=account.headers, json={"enabled": False}
    )
    await client.post("/v1/customers", headers=account.headers, json={"email": "ada@example.com"})
    assert await deliveries(client, account.headers, event_type="customer.created") == []


async def test_delete_removes_the_endpoint_and_its_deliveries(client, account, database_url):
    endpoint = await create_endpoint(client, account.headers)
    delivery = await ping(client, account.headers, endpoint["id"])
    response = await client.delete(f"/v1/webhook_endpoints/{endpoint['id']}", headers=account.headers)
    assert response.status_code == 200, response.text
    assert {**response.json(), "updated_at": None} == {**endpoint, "secret": None, "updated_at": None}
    missing = await client.get(f"/v1/webhook_endpoints/{endpoint['id']}", headers=account.headers)
    assert_error(missing, 404, "resource_missing")
    assert_error(
        await client.get(f"/v1/webhook_deliveries/{delivery['id']}", headers=account.headers),
        404,
        "resource_missing",
    )
    assert await endpoint_ids(client, account.headers) == []
    events = (await client.get("/v1/events?type=webhook_endpoint.deleted", headers=account.headers)).json()[
        "data"
    ]
    assert [e["data"]["object"]["id"] for e in events] == [endpoint["id"]]
    assert_error(
        await client.delete(f"/v1/webhook_endpoints/{endpoint['id']}", headers=account.headers),
        404,
        "resource_missing",
    )


async def test_creating_an_endpoint_emits_webhook_endpoint_created_without_the_secret(client, account):
    endpoint = await create_endpoint(client, account.headers)
    events = (await client.get("/v1/events?type=webhook_endpoint.created", headers=account.headers)).json()[
        "data"
    ]
    assert [e["data"]["object"]["id"] for e in events] == [endpoint["id"]]
    assert endpoint["secret"] not in str(events)
    assert "secret_ciphertext" not in str(events)


# The endpoint cap per tenant plan


def tenant_connection(database_url: str, account: Any) -> psycopg.Connection:
    """A transaction of the tenant's trusted backend (lic_app, authenticated with its key)."""
    conn = psycopg.connect(database_url)
    conn.execute("set role lic_app")
    conn.execute("select from api.authenticate(secret => %s)", (account.secret_key,))
    return conn


def create_over_sql(database_url: str, account: Any, url: str) -> str:
    """api.create_webhook_endpoint in a transaction of its own: 'created', or the SQLSTATE it raised."""
    try:
        with tenant_connection(database_url, account) as conn:
            conn.execute(
                "select api.create_webhook_endpoint(url => %s, secret_ciphertext => '\\x01')", (url,)
            )
        return "created"
    except psycopg.Error as exc:
        return exc.sqlstate or "?"


def waiting_for_locks(database_url: str, count: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rows = run_sql(
            database_url,
            "select count(*)::int as n from pg_stat_activity"
            " where datname = current_database() and wait_event_type = 'Lock'",
        )
        if rows[0]["n"] >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"{count} transactions never waited for a lock")


def test_parallel_creates_at_the_endpoint_cap_let_exactly_the_allowed_number_through(
    make_account, database_url
):
    account = make_account("Capped", "free")  # 16 endpoints
    run_sql(
        database_url,
        "insert into lic.webhook_endpoints (account_id, url, secret_ciphertext)"
        " select %s, 'https://hooks.example.com/' || n, '\\x01' from generate_series(1, 14) as n",
        (account.id,),
    )
    # The account row held, ten creators queue on it and go all at once when it is let go.
    with psycopg.connect(database_url) as holder, ThreadPoolExecutor(10) as pool:
        holder.execute("select from lic.accounts where account_id = %s for no key update", (account.id,))
        outcomes = [
            pool.submit(create_over_sql, database_url, account, f"https://hooks.example.com/race/{n}")
            for n in range(10)
        ]
        waiting_for_locks(database_url, 10)
        holder.commit()
        results = sorted(outcome.result() for outcome in outcomes)
    assert results == ["LPLAN"] * 8 + ["created"] * 2
    [row] = run_sql(
        database_url,
        "select a.webhook_endpoints, (select count(*) from lic.webhook_endpoints as e"
        " where e.account_id = a.account_id)::int as counted from lic.accounts as a where a.account_id = %s",
        (account.id,),
    )
    assert row == {"webhook_endpoints": 16, "counted": 16}


async def test_the_account_shows_its_endpoint_limit_and_usage(client, make_account):
    account = make_account("Shown", "starter")
    await create_endpoint(client, account.headers)
    body = (await client.get("/v1/account", headers=account.headers)).json()
    assert (body["limits"]["webhook_endpoints"], body["usage"]["webhook_endpoints"]) == (64, 1)


async def test_an_endpoint_over_the_plan_limit_is_refused_with_402(client, make_account, database_url):
    account = make_account("Full", "free")
    run_sql(
        database_url,
        "insert into lic.webhook_endpoints (account_id, url, secret_ciphertext)"
        " select %s, 'https://hooks.example.com/' || n, '\\x01' from generate_series(1, 16) as n",
        (account.id,),
    )
    response = await client.post(
        "/v1/webhook_endpoints", headers=account.headers, json={"url": f"{PUBLIC}/x"}
    )
    assert_error(response, 402, "plan_limit_reached")


def test_deleting_an_endpoint_while_a_request_holds_the_account_row_does_not_deadlock(
    make_account, database_url
):
    account = make_account("Busy", "free")
    with tenant_connection(database_url, account) as conn:
        endpoint = conn.execute(
            "select id from api.create_webhook_endpoint(url => 'https://hooks.example.com/busy',"
            " secret_ciphertext => '\\x01', event_types => '{customer.created}')"
        ).fetchone()[0]
    # A request creates an agent (the plan count locks the account row) ...
    with tenant_connection(database_url, account) as request, ThreadPoolExecutor(1) as pool:
        request.execute("select api.create_agent(name => 'bot')")
        # ... while the endpoint is being deleted ...
        deleting = pool.submit(delete_over_sql, database_url, account, endpoint)
        waiting_for_locks(database_url, 1)
        # ... then makes a delivery to that endpoint.
        request.execute("select api.create_customer(email => 'busy@example.com')")
        request.commit()
        assert deleting.result() == "deleted"


def delete_over_sql(database_url: str, account: Any, endpoint_id: Any) -> str:
    try:
        with tenant_connection(database_url, account) as conn:
            conn.execute("select api.delete_webhook_endpoint(endpoint_id => %s)", (endpoint_id,))
        return "deleted"
    except psycopg.Error as exc:
        return exc.sqlstate or "?"


# Test pings and the delivery log


async def test_a_test_ping_makes_one_pending_delivery_to_that_endpoint(client, account):
    endpoint = await create_endpoint(client, account.headers)
    other = await create_endpoint(client, account.headers)
    delivery = await ping(client, account.headers, endpoint["id"])
    assert set(delivery) == DELIVERY_FIELDS
    assert (delivery["object"], delivery["endpoint_id"], delivery["event_type"], delivery["status"]) == (
        "webhook_delivery",
        endpoint["id"],
        "ping",
        "pending",
    )
    assert (delivery["attempts"], delivery["last_attempt_at"], delivery["succeeded_at"]) == (0, None, None)
    assert await deliveries(client, account.headers, event_type="ping") == [delivery]
    assert await deliveries(client, account.headers, endpoint_id=other["id"], event_type="ping") == []
    event = (await client.get(f"/v1/events/{delivery['event_id']}", headers=account.headers)).json()
    assert (event["type"], event["data"]["object"]) == (
        "ping",
        {"object": "webhook_endpoint", "id": endpoint["id"]},
    )


async def test_an_event_is_delivered_to_each_subscribed_endpoint(client, account):
    everything = await create_endpoint(client, account.headers)
    customers = await create_endpoint(client, account.headers, event_types=["customer.created"])
    licenses = await create_endpoint(client, account.headers, event_types=["license.created"])
    customer = (
        await client.post("/v1/customers", headers=account.headers, json={"email": "ada@example.com"})
    ).json()
    made = await deliveries(client, account.headers, event_type="customer.created")
    assert sorted(d["endpoint_id"] for d in made) == sorted([everything["id"], customers["id"]])
    assert len({d["event_id"] for d in made}) == 1
    event = (await client.get(f"/v1/events/{made[0]['event_id']}", headers=account.headers)).json()
    assert event["data"]["object"]["id"] == customer["id"]
    assert await deliveries(client, account.headers, endpoint_id=licenses["id"]) == []


async def test_deliveries_filter_by_endpoint_status_and_event_type(client, account, database_url):
    first = await create_endpoint(client, account.headers, event_types=["customer.created"])
    second = await create_endpoint(client, account.headers, event_types=["customer.created"])
    ping_first = await ping(client, account.headers, first["id"])
    await client.post("/v1/customers", headers=account.headers, json={"email": "ada@example.com"})
    every = await deliveries(client, account.headers)
    assert len(every) == 3
    assert [d["id"] for d in every][-1] == ping_first["id"]  # newest first
    by_first = await deliveries(client, account.headers, endpoint_id=first["id"])
    assert {d["event_type"] for d in by_first} == {"ping", "customer.created"}
    assert all(d["endpoint_id"] == first["id"] for d in by_first)
    assert [d["endpoint_id"] for d in await deliveries(client, account.headers, event_type="ping")] == [
        first["id"]
    ]
    record(database_url, claim(database_url, ping_first["id"]), 200)
    succeeded = await deliveries(client, account.headers, status="succeeded")
    assert [d["id"] for d in succeeded] == [ping_first["id"]]
    assert len(await deliveries(client, account.headers, status="pending")) == 2
    assert await deliveries(client, account.headers, status="failed") == []
    combined = await deliveries(client, account.headers, endpoint_id=second["id"], status="pending")
    assert [(d["endpoint_id"], d["event_type"]) for d in combined] == [(second["id"], "customer.created")]


async def test_an_unknown_delivery_status_filter_is_refused(client, account):
    response = await client.get("/v1/webhook_deliveries", headers=account.headers, params={"status": "lost"})
    assert_error(response, 422, "invalid_parameter", "status")


async def test_deliveries_page_newest_first(client, account):
    endpoint = await create_endpoint(client, account.headers)
    made = [(await ping(client, account.headers, endpoint["id"]))["id"] for _ in range(5)]
    first = (
        await client.get(
            "/v1/webhook_deliveries", headers=account.headers, params={"limit": 3, "event_type": "ping"}
        )
    ).json()
    assert ([d["id"] for d in first["data"]], first["has_more"]) == (made[:1:-1], True)
    rest = (
        await client.get(
            "/v1/webhook_deliveries",
            headers=account.headers,
            params={"limit": 3, "event_type": "ping", "starting_after": first["data"][-1]["id"]},
        )
    ).json()
    assert ([d["id"] for d in rest["data"]], rest["has_more"]) == (made[1::-1], False)


async def test_a_delivery_shows_each_attempt(client, account, database_url):
    endpoint = await create_endpoint(client, account.headers)
    delivery = await ping(client, account.headers, endpoint["id"])
    path = f"/v1/webhook_deliveries/{delivery['id']}"
    fresh = (await client.get(path, headers=account.headers)).json()
    assert (fresh["attempts"], fresh["status"]) == ([], "pending")
    assert record(database_url, claim(database_url, delivery["id"]), 503, latency_ms=40) == "retrying"
    make_due(database_url, delivery["id"])
    assert record(
        database_url,
        claim(database_url, delivery["id"]),
        None,
        error_class="timeout",
        response_body=None,
        latency_ms=15000,
    ) == ("retrying")
    make_due(database_url, delivery["id"])
    assert record(database_url, claim(database_url, delivery["id"]), 204, response_body="") == "succeeded"
    response = await client.get(path, headers=account.headers)
    assert response.status_code == 200, response.text
    got = response.json()
    assert (got["object"], got["id"], got["status"], got["last_status_code"]) == (
        "webhook_delivery",
        delivery["id"],
        "succeeded",
        204,
    )
    assert got["succeeded_at"] is not None
    assert [
        (a["attempt"], a["status_code"], a["error_class"], a["latency_ms"], a["response_body"])
        for a in got["attempts"]
    ] == [
        (1, 503, "http_status", 40, "answered 503"),
        (2, None, "timeout", 15000, None),
        (3, 204, None, 12, ""),
    ]
    assert all(a["started_at"] for a in got["attempts"])
    listed = await deliveries(client, account.headers, endpoint_id=endpoint["id"], event_type="ping")
    assert (listed[0]["attempts"], listed[0]["status"]) == (3, "succeeded")


async def test_a_failed_attempt_schedules_the_next_one_later(client, account, database_url):
    endpoint = await create_endpoint(client, account.headers)
    delivery = await ping(client, account.headers, endpoint["id"])
    record(database_url, claim(database_url, delivery["id"]), 500)
    got = (await client.get(f"/v1/webhook_deliveries/{delivery['id']}", headers=account.headers)).json()
    assert (got["status"], got["last_status_code"]) == ("pending", 500)
    assert datetime.fromisoformat(got["next_attempt_at"]) > datetime.now(UTC)


async def test_retry_makes_a_delivery_due_now(client, account, database_url):
    endpoint = await create_endpoint(client, account.headers)
    delivery = await ping(client, account.headers, endpoint["id"])
    fail_for_good(database_url, delivery["id"])
    failed = (await client.get(f"/v1/webhook_deliveries/{delivery['id']}", headers=account.headers)).json()
    assert failed["status"] == "failed"
    response = await client.post(f"/v1/webhook_deliveries/{delivery['id']}/retry", headers=account.headers)
    assert response.status_code == 200, response.text
    retried = response.json()
    assert (retried["id"], retried["status"], retried["event_id"]) == (
        delivery["id"],
        "pending",
        delivery["event_id"],
    )
    assert datetime.fromisoformat(retried["next_attempt_at"]) <= datetime.now(UTC)
    again = claim(database_url, delivery["id"])  # due at once: the worker takes it
    assert str(again["event_id"]) == delivery["event_id"]


async def test_a_delivery_in_flight_cannot_be_retried(client, account, database_url):
    endpoint = await create_endpoint(client, account.headers)
    delivery = await ping(client, account.headers, endpoint["id"])
    claimed = claim(database_url, delivery["id"])
    response = await client.post(f"/v1/webhook_deliveries/{delivery['id']}/retry", headers=account.headers)
    assert_error(response, 409, "invalid_state")
    record(database_url, claimed, 200)


async def test_a_delivery_of_a_disabled_endpoint_cannot_be_retried(client, account):
    endpoint = await create_endpoint(client, account.headers)
    delivery = await ping(client, account.headers, endpoint["id"])
    await client.post(
        f"/v1/webhook_endpoints/{endpoint['id']}", headers=account.headers, json={"enabled": False}
    )
    response = await client.post(f"/v1/webhook_deliveries/{delivery['id']}/retry", headers=account.headers)
    assert_error(response, 409, "invalid_state")


async def test_replay_sends_again_the_failed_deliveries_since_then(client, account, database_url):
    # Subscribed to customers only: the endpoints' own webhook_endpoint.* events go nowhere.
    endpoint = await create_endpoint(client, account.headers, event_types=["customer.created"])
    other = await create_endpoint(client, account.headers, event_types=["customer.created"])
    old = await ping(client, account.headers, endpoint["id"])
    fail_for_good(database_url, old["id"])
    since = datetime.now(UTC)
    failed = await ping(client, account.headers, endpoint["id"])
    fail_for_good(database_url, failed["id"])
    succeeded = await ping(client, account.headers, endpoint["id"])
    record(database_url, claim(database_url, succeeded["id"]), 200)
    elsewhere = await ping(client, account.headers, other["id"])
    fail_for_good(database_url, elsewhere["id"])
    path = f"/v1/webhook_endpoints/{endpoint['id']}/replay"

    response = await client.post(path, headers=account.headers, json={"since": since.isoformat()})
    assert response.status_code == 200, response.text
    assert response.json() == {"object": "webhook_replay", "replayed": 1}
    statuses = {d["id"]: d["status"] for d in await deliveries(client, account.headers)}
    assert (statuses[failed["id"]], statuses[old["id"]], statuses[succeeded["id"]]) == (
        "pending",
        "failed",
        "succeeded",
    )
    assert statuses[elsewhere["id"]] == "failed"

    # Pending ones (the one just replayed) are left as they are.
    everything = await client.post(
        path,
        headers=account.headers,
        json={"since": (since - timedelta(hours=1)).isoformat(), "status": "all"},
    )
    assert everything.json()["replayed"] == 2
    statuses = {d["id"]: d["status"] for d in await deliveries(client, account.headers)}
    assert [statuses[d["id"]] for d in (old, failed, succeeded)] == ["pending"] * 3
    assert statuses[elsewhere["id"]] == "failed"


async def test_replay_of_succeeded_deliveries_only(client, account, database_url):
    endpoint = await create_endpoint(client, account.headers, event_types=["customer.created"])
    since = datetime.now(UTC) - timedelta(minutes=1)
    done = await ping(client, account.headers, endpoint["id"])
    record(database_url, claim(database_url, done["id"]), 200)
    waiting = await ping(client, account.headers, endpoint["id"])
    response = await client.post(
        f"/v1/webhook_endpoints/{endpoint['id']}/replay",
        headers=account.headers,
        json={"since": since.isoformat(), "status": "succeeded"},
    )
    assert response.json()["replayed"] == 1
    statuses = {d["id"]: d["status"] for d in await deliveries(client, account.headers)}
    assert (statuses[done["id"]], statuses[waiting["id"]]) == ("pending", "pending")


@pytest.mark.parametrize(
    "body", [{}, {"since": "yesterday"}, {"since": "2026-01-01T00:00:00Z", "status": "pending"}]
)
async def test_a_malformed_replay_is_refused(client, account, body):
    endpoint = await create_endpoint(client, account.headers)
    response = await client.post(
        f"/v1/webhook_endpoints/{endpoint['id']}/replay", headers=account.headers, json=body
    )
    assert response.status_code in (400, 422), response.text


async def test_a_disabled_endpoint_cannot_be_replayed(client, account):
    endpoint = await create_endpoint(client, account.headers)
    await client.post(
        f"/v1/webhook_endpoints/{endpoint['id']}", headers=account.headers, json={"enabled": False}
    )
    response = await client.post(
        f"/v1/webhook_endpoints/{endpoint['id']}/replay",
        headers=account.headers,
        json={"since": "2020-01-01T00:00:00Z"},
    )
    assert_error(response, 409, "invalid_state")


# Who may do what


async def test_another_tenant_sees_none_of_the_endpoints_or_deliveries(client, make_account):
    a, b = make_account("A"), make_account("B")
    endpoint = await create_endpoint(client, a.headers)
    delivery = await ping(client, a.headers, endpoint["id"])
    assert await endpoint_ids(client, b.headers) == []
    assert await deliveries(client, b.headers) == []
    assert await deliveries(client, b.headers, endpoint_id=endpoint["id"]) == []
    base = f"/v1/webhook_endpoints/{endpoint['id']}"
    for method, path, body in [
        ("GET", base, None),
        ("POST", base, {"description": "mine"}),
        ("POST", base, {"url": f"{PUBLIC}/theirs"}),
        ("DELETE", base, None),
        ("GET", f"{base}/secret", None),
        ("POST", f"{base}/rotate_secret", None),
        ("POST", f"{base}/test", None),
        ("POST", f"{base}/replay", {"since": "2020-01-01T00:00:00Z"}),
        ("GET", f"/v1/webhook_deliveries/{delivery['id']}", None),
        ("POST", f"/v1/webhook_deliveries/{delivery['id']}/retry", None),
    ]:
        response = await client.request(method, path, headers=b.headers, json=body)
        assert_error(response, 404, "resource_missing")
    # Untouched for its owner.
    got = (await client.get(base, headers=a.headers)).json()
    assert got == {**endpoint, "secret": None}
    revealed = (await client.get(f"{base}/secret", headers=a.headers)).json()
    assert revealed["secret"] == endpoint["secret"]


async def test_unknown_endpoint_and_delivery_are_not_found(client, account):
    for path in (f"/v1/webhook_endpoints/{uuid.uuid4()}", f"/v1/webhook_deliveries/{uuid.uuid4()}"):
        assert_error(await client.get(path, headers=account.headers), 404, "resource_missing")


async def test_agent_tokens_and_publishable_keys_are_refused(client, account):
    endpoint = await create_endpoint(client, account.headers)
    delivery = await ping(client, account.headers, endpoint["id"])
    agent = (await client.post("/v1/agents", headers=account.headers, json={"name": "bot"})).json()
    publishable = await create_key(client, account.headers, "publishable")
    base = f"/v1/webhook_endpoints/{endpoint['id']}"
    for headers in (bearer(agent["token"]), bearer(publishable["secret"])):
        for method, path, body in [
            ("GET", "/v1/webhook_endpoints", None),
            ("POST", "/v1/webhook_endpoints", {"url": f"{PUBLIC}/agent"}),
            ("POST", "/v1/webhook_endpoints", {"url": "http://169.254.169.254/"}),
            ("GET", base, None),
            ("POST", base, {"url": f"{PUBLIC}/agent"}),
            ("POST", base, {"url": "http://169.254.169.254/"}),
            ("DELETE", base, None),
            ("GET", f"{base}/secret", None),
            ("POST", f"{base}/rotate_secret", None),
            ("POST", f"{base}/test", None),
            ("POST", f"{base}/replay", {"since": "2020-01-01T00:00:00Z"}),
            ("GET", "/v1/webhook_deliveries", None),
            ("GET", f"/v1/webhook_deliveries/{delivery['id']}", None),
            ("POST", f"/v1/webhook_deliveries/{delivery['id']}/retry", None),
        ]:
            response = await client.request(method, path, headers=headers, json=body)
            assert_error(response, 403, "forbidden")
    assert await endpoint_ids(client, account.headers) == [endpoint["id"]]


async def test_without_a_key_every_route_is_unauthenticated(client):
    for method, path in [
        ("GET", "/v1/webhook_endpoints"),
        ("POST", "/v1/webhook_endpoints"),
        ("GET", "/v1/webhook_deliveries"),
    ]:
        assert_error(await client.request(method, path, json={"url": f"{PUBLIC}/h"}), 401, "unauthenticated")


async def test_without_a_secret_key_secrets_cannot_be_made_or_shown(make_client, client, account):
    endpoint = await create_endpoint(client, account.headers)
    async with make_client(secret_key=None) as unconfigured:
        for method, path, body in [
            ("POST", "/v1/webhook_endpoints", {"url": f"{PUBLIC}/h"}),
            ("GET", f"/v1/webhook_endpoints/{endpoint['id']}/secret", None),
            ("POST", f"/v1/webhook_endpoints/{endpoint['id']}/rotate_secret", {"overlap_seconds": 60}),
        ]:
            response = await unconfigured.request(method, path, headers=account.headers, json=body)
            assert_error(response, 503, "not_configured")
        # What needs no secret still works.
        assert (await unconfigured.get("/v1/webhook_endpoints", headers=account.headers)).status_code == 200
    assert await endpoint_ids(client, account.headers) == [endpoint["id"]]


async def test_a_secret_from_another_server_key_is_not_revealed(make_client, client, account):
    endpoint = await create_endpoint(client, account.headers)
    async with make_client(secret_key=bytes(32)) as other_server:
        response = await other_server.get(
            f"/v1/webhook_endpoints/{endpoint['id']}/secret", headers=account.headers
        )
    error = assert_error(response, 503, "not_configured")
    assert endpoint["secret"] not in error["message"]
