"""Outbound webhook delivery end to end (licentric/webhook_delivery.py): events made through the HTTP API
reach a real local receiver (webhook_receiver.py) from the dispatcher `licentric worker` runs, here run
in the test's event loop against a database of this module's own (the dispatcher claims across tenants).
Endpoints are made with api.create_webhook_endpoint as lic_app, their secrets encrypted as the web layer
does."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import psycopg
import pytest
import standardwebhooks
import stripe
from litestar.testing import AsyncTestClient

from licentric import webhook_delivery
from licentric.app import create_app
from licentric.cli import create_account
from licentric.crypto import SecretBox
from licentric.db import WEB_ROLE, WORKER_ROLE, login_url, open_pool
from licentric.migrate import migrate
from licentric.settings import Settings
from licentric.worker import jobs

from license_helpers import create_license, make_policy, superuser
from webhook_receiver import Receiver, Reply


@pytest.fixture(scope="module")
def webhook_database(empty_database: Callable[[], str]) -> str:
    url = empty_database()
    migrate(url)
    return url


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver().start()
    try:
        yield receiver
    finally:
        receiver.stop()


@dataclass(frozen=True)
class Tenant:
    id: str
    secret_key: str
    # LICENTRIC_SECRET_KEY of the tests: the web layer encrypts endpoint secrets with it.
    box_key: bytes

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret_key}"}


@pytest.fixture
def tenant(webhook_database: str, settings: Settings) -> Iterator[Tenant]:
    """An account with a monthly policy; its endpoints are disabled when the test ends, so no delivery
    of this test is left for the next test's dispatcher."""
    created = create_account(webhook_database, "Webhook test", "free")
    make_policy(webhook_database, created["account_id"], "monthly")
    assert settings.secret_key is not None
    yield Tenant(created["account_id"], created["secret_key"], settings.secret_key)
    superuser(
        webhook_database,
        "update lic.webhook_endpoints set enabled = false, disabled_at = now(), disabled_reason = 'test over'"
        " where account_id = %s and enabled",
        (created["account_id"],),
    )


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def create_endpoint(
    database_url: str,
    tenant: Tenant,
    url: str,
    event_types: tuple[str, ...] = ("license.suspended",),
    key: bytes | None = None,
) -> tuple[str, str]:
    """An endpoint made as a request would make it (lic_app, the tenant's key); its id and secret."""
    secret = new_secret()
    ciphertext = SecretBox(key or tenant.box_key).encrypt(secret, tenant.id, "webhook_endpoint_secret")
    with psycopg.connect(database_url) as conn:
        conn.execute("set role lic_app")
        conn.execute("select from api.authenticate(secret => %s)", (tenant.secret_key,))
        row = conn.execute(
            "select id::text from api.create_webhook_endpoint(url => %s, secret_ciphertext => %s,"
            " event_types => %s)",
            (url, ciphertext, list(event_types)),
        ).fetchone()
    return row[0], secret


@pytest.fixture
async def client(settings: Settings, webhook_database: str) -> AsyncIterator[AsyncTestClient]:
    app = create_app(replace(settings, database_url=login_url(webhook_database, WEB_ROLE)))
    async with AsyncTestClient(app=app) as test_client:
        yield test_client


async def suspend_new_license(client: AsyncTestClient, tenant: Tenant) -> str:
    license_ = await create_license(client, tenant.headers, policy_code="monthly")
    response = await client.post(
        f"/v1/licenses/{license_['id']}/suspend", headers=tenant.headers, json={"reason": "chargeback"}
    )
    assert response.status_code == 200, response.text
    return license_["id"]


@pytest.fixture
def dispatcher(settings: Settings, webhook_database: str) -> Callable[..., Any]:
    """`async with dispatcher(**settings changes):` runs the webhook dispatcher in this event loop."""

    @asynccontextmanager
    async def run(**changes: Any) -> AsyncIterator[None]:
        base = {
            "database_url": login_url(webhook_database, WORKER_ROLE),
            "webhook_allow_private_targets": True,
            "webhook_poll_interval": 0.5,
            "webhook_timeout": 3,
            "webhook_lease": 10,
        }
        configured = replace(settings, **{**base, **changes})
        stop = asyncio.Event()
        task = asyncio.create_task(webhook_delivery.run(configured, WORKER_ROLE, stop))
        try:
            yield
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)

    return run


def delivery_rows(database_url: str, endpoint_id: str) -> list[dict[str, Any]]:
    return superuser(
        database_url,
        "select d.*, e.type as type from lic.webhook_deliveries as d"
        " join lic.events as e on e.account_id = d.account_id and e.id = d.event_id"
        " where d.endpoint_id = %s order by d.created_at, d.id",
        (endpoint_id,),
    )


def attempts(database_url: str, delivery_id: Any) -> list[dict[str, Any]]:
    return superuser(
        database_url,
        "select * from lic.webhook_attempts where delivery_id = %s order by attempt",
        (delivery_id,),
    )


async def until(condition: Callable[[], bool], what: str, within: float = 15) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {within} s: {what}")


# Signed delivery of a state change


async def test_a_license_suspended_through_the_api_arrives_signed_and_verifies(
    client, tenant, receiver, dispatcher, webhook_database
):
    endpoint_id, secret = create_endpoint(webhook_database, tenant, receiver.url("/hooks"))
    async with dispatcher():
        license_id = await suspend_new_license(client, tenant)
        await until(lambda: receiver.answered("/hooks"), "the delivery")
        await until(
            lambda: delivery_rows(webhook_database, endpoint_id)[0]["status"] == "succeeded", "its record"
        )

    [request] = receiver.requests("/hooks")
    # Both libraries, unchanged, with the secret the tenant was shown.
    stripe.WebhookSignature.verify_header(request.body, request.headers["Licentric-Signature"], secret)
    event = standardwebhooks.Webhook(secret).verify(request.body, request.headers)
    assert event == json.loads(request.body)

    [stored] = superuser(
        webhook_database,
        "select id::text, type, floor(extract(epoch from created_at))::bigint as created from lic.events"
        " where account_id = %s and type = 'license.suspended'",
        (tenant.id,),
    )
    assert event["id"] == stored["id"] == request.headers["webhook-id"]
    assert event["object"] == "event"
    assert event["type"] == "license.suspended"
    assert event["account"] == tenant.id
    assert event["created"] == stored["created"]
    assert event["data"]["object"]["id"] == license_id
    assert event["data"]["object"]["status"] == "suspended"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"] == "Licentric-Webhooks/1"
    assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 60

    [delivery] = delivery_rows(webhook_database, endpoint_id)
    assert delivery["attempts"] == 1 and delivery["last_status_code"] == 200
    assert delivery["lease_id"] is None
    [attempt] = attempts(webhook_database, delivery["id"])
    assert attempt["status_code"] == 200
    assert attempt["error_class"] is None
    assert attempt["response_body"] == "ok"
    assert attempt["latency_ms"] >= 0


async def test_500_five_times_then_200_is_delivered_on_the_sixth_attempt_with_the_same_event_id(
    client, tenant, receiver, dispatcher, webhook_database
):
    endpoint_id, secret = create_endpoint(webhook_database, tenant, receiver.url("/flaky"))
    receiver.script("/flaky", [Reply(500, body=f"down {n}") for n in range(1, 6)])

    def recorded(n: int) -> bool:
        rows = delivery_rows(webhook_database, endpoint_id)
        return bool(rows) and rows[0]["attempts"] == n and rows[0]["lease_id"] is None

    async with dispatcher():
        await suspend_new_license(client, tenant)
        for n in range(1, 6):
            await until(lambda n=n: recorded(n), f"attempt {n} recorded")
            [delivery] = delivery_rows(webhook_database, endpoint_id)
            assert delivery["status"] == "pending"
            # The schedule would wait 5 s, 5 min, 30 min, 2 h, 5 h: the test makes each retry due now, as
            # the superuser, instead of waiting (the delays themselves are pinned in pgTAP).
            assert delivery["next_attempt_at"] > datetime.now(UTC) + timedelta(seconds=3)
            superuser(
                webhook_database,
                "update lic.webhook_deliveries set next_attempt_at = now() where id = %s",
                (delivery["id"],),
            )
        await until(lambda: recorded(6), "attempt 6 recorded")

    requests = receiver.requests("/flaky")
    assert [r.status for r in requests] == [500] * 5 + [200]
    assert len({r.headers["webhook-id"] for r in requests}) == 1
    assert len({r.body for r in requests}) == 1  # the same body on every attempt
    for request in requests:
        standardwebhooks.Webhook(secret).verify(request.body, request.headers)
    [delivery] = delivery_rows(webhook_database, endpoint_id)
    assert delivery["status"] == "succeeded"
    assert str(delivery["event_id"]) == requests[0].headers["webhook-id"]
    rows = attempts(webhook_database, delivery["id"])
    assert [a["attempt"] for a in rows] == [1, 2, 3, 4, 5, 6]
    assert [a["status_code"] for a in rows] == [500] * 5 + [200]
    assert [a["error_class"] for a in rows] == ["http_status"] * 5 + [None]
    assert rows[0]["response_body"] == "down 1"


async def test_410_disables_the_endpoint(client, tenant, receiver, dispatcher, webhook_database):
    endpoint_id, _ = create_endpoint(webhook_database, tenant, receiver.url("/gone"))
    receiver.default("/gone", Reply(410, body="gone"))

    async with dispatcher():
        await suspend_new_license(client, tenant)
        await until(lambda: delivery_rows(webhook_database, endpoint_id)[0]["status"] == "failed", "a 410")

    [endpoint] = superuser(
        webhook_database,
        "select enabled, disabled_reason, disabled_at from lic.webhook_endpoints where id = %s",
        (endpoint_id,),
    )
    assert endpoint["enabled"] is False
    assert "410" in endpoint["disabled_reason"]
    assert len(receiver.requests("/gone")) == 1
    disabled = superuser(
        webhook_database,
        "select object ->> 'id' as id from lic.events"
        " where account_id = %s and type = 'webhook_endpoint.disabled'",
        (tenant.id,),
    )
    assert [row["id"] for row in disabled] == [endpoint_id]


async def test_a_redirect_is_not_followed(client, tenant, receiver, dispatcher, webhook_database):
    endpoint_id, _ = create_endpoint(webhook_database, tenant, receiver.url("/moved"))
    receiver.default("/moved", Reply(302, headers={"Location": receiver.url("/elsewhere")}))

    async with dispatcher():
        await suspend_new_license(client, tenant)
        await until(lambda: delivery_rows(webhook_database, endpoint_id)[0]["attempts"] == 1, "one attempt")
        await asyncio.sleep(0.3)

    assert receiver.requests("/elsewhere") == []
    [delivery] = delivery_rows(webhook_database, endpoint_id)
    assert delivery["status"] == "pending"  # a failure: retried on the schedule
    [attempt] = attempts(webhook_database, delivery["id"])
    assert attempt["status_code"] == 302
    assert attempt["error_class"] == "redirect"


async def test_a_hanging_receiver_does_not_stall_another_endpoint(
    client, tenant, receiver, dispatcher, webhook_database
):
    hanging_id, _ = create_endpoint(webhook_database, tenant, receiver.url("/hangs"))
    fast_id, _ = create_endpoint(webhook_database, tenant, receiver.url("/fast"))
    receiver.default("/hangs", Reply(hang=True))
    for _ in range(6):
        await suspend_new_license(client, tenant)

    # Four slots: without a limit per endpoint the hanging one would take them all (oldest due first),
    # and the fast one would wait for the 5 s timeout.
    async with dispatcher(webhook_concurrency=4, webhook_timeout=5):
        started = time.monotonic()
        await until(lambda: len(receiver.answered("/fast")) == 6, "all six to the fast endpoint", within=4)
        elapsed = time.monotonic() - started
        assert elapsed < 3, elapsed
        # The hanging endpoint has one send in flight (a quarter of four slots), not answered yet.
        assert len(receiver.requests("/hangs")) == 1
        assert receiver.answered("/hangs") == []
        await until(
            lambda: all(d["status"] == "succeeded" for d in delivery_rows(webhook_database, fast_id)),
            "the fast endpoint's records",
        )
        await until(lambda: delivery_rows(webhook_database, hanging_id)[0]["attempts"] == 1, "the timeout")

    # Stopping let the send in flight then (the next one, after the first timed out) time out too.
    timed_out = [d for d in delivery_rows(webhook_database, hanging_id) if d["attempts"]]
    assert 1 <= len(timed_out) <= 2
    for delivery in timed_out:
        [attempt] = attempts(webhook_database, delivery["id"])
        assert attempt["error_class"] == "timeout"
        assert attempt["status_code"] is None
        assert 4500 <= attempt["latency_ms"] < 8000


async def test_a_tenant_with_a_backlog_does_not_starve_another_whose_deliveries_came_due_later(
    client, tenant, receiver, dispatcher, webhook_database, settings
):
    # A: 1,000 deliveries to a slow endpoint, due for an hour. B: 5 that come due now.
    backlog_id, _ = create_endpoint(webhook_database, tenant, receiver.url("/backlog"))
    receiver.default("/backlog", Reply(delay=0.5))
    superuser(
        webhook_database,
        "select count(private.emit_event(%s, 'license.suspended',"
        " jsonb_build_object('object', 'license', 'id', gen_random_uuid()))) from generate_series(1, 1000)",
        (tenant.id,),
    )
    superuser(
        webhook_database,
        "update lic.webhook_deliveries set next_attempt_at = now() - interval '1 hour'"
        " where endpoint_id = %s and status = 'pending'",
        (backlog_id,),
    )
    created = create_account(webhook_database, "Webhook test B", "free")
    other = Tenant(created["account_id"], created["secret_key"], tenant.box_key)
    try:
        create_endpoint(webhook_database, other, receiver.url("/later"))
        superuser(
            webhook_database,
            "select count(private.emit_event(%s, 'license.suspended',"
            " jsonb_build_object('object', 'license', 'id', gen_random_uuid()))) from generate_series(1, 5)",
            (other.id,),
        )
        # Eight slots: claims oldest first would hand them all to A's backlog claim after claim (the
        # share per endpoint releases the excess, but 990 older deliveries stay ahead of B's).
        async with dispatcher(webhook_concurrency=8):
            await until(lambda: len(receiver.answered("/later")) == 5, "B's five deliveries", within=3)
    finally:
        superuser(
            webhook_database,
            "update lic.webhook_endpoints set enabled = false, disabled_at = now(),"
            " disabled_reason = 'test over' where account_id = %s",
            (other.id,),
        )


async def test_retry_after_is_honoured_in_seconds_and_as_an_http_date(
    client, tenant, receiver, dispatcher, webhook_database
):
    seconds_id, _ = create_endpoint(webhook_database, tenant, receiver.url("/busy"))
    date_id, _ = create_endpoint(webhook_database, tenant, receiver.url("/later"))
    receiver.default("/busy", Reply(429, headers={"Retry-After": "3600"}))
    in_two_hours = format_datetime(datetime.now(UTC) + timedelta(hours=2), usegmt=True)
    receiver.default("/later", Reply(503, headers={"Retry-After": in_two_hours}))

    async with dispatcher():
        await suspend_new_license(client, tenant)
        for endpoint in (seconds_id, date_id):
            await until(lambda e=endpoint: delivery_rows(webhook_database, e)[0]["attempts"] == 1, "attempt")

    for endpoint, wait in ((seconds_id, 3600), (date_id, 7200)):
        [delivery] = delivery_rows(webhook_database, endpoint)
        assert delivery["status"] == "pending"
        # The schedule alone would say 5 s (±20 %) after the first attempt.
        delay = (delivery["next_attempt_at"] - delivery["last_attempt_at"]).total_seconds()
        assert wait - 5 <= delay <= wait + 5, delay


async def test_a_large_response_is_read_up_to_1_kb(client, tenant, receiver, dispatcher, webhook_database):
    endpoint_id, _ = create_endpoint(webhook_database, tenant, receiver.url("/chatty"))
    receiver.default("/chatty", Reply(200, body="é" + "x" * 2_000_000))

    async with dispatcher():
        await suspend_new_license(client, tenant)
        await until(lambda: delivery_rows(webhook_database, endpoint_id)[0]["status"] == "succeeded", "it")

    [delivery] = delivery_rows(webhook_database, endpoint_id)
    [attempt] = attempts(webhook_database, delivery["id"])
    assert attempt["response_body"] == ("é" + "x" * 1022)  # 1,024 bytes read: é is two of them


async def test_a_private_target_is_refused_at_connect_time_unless_allowed(
    client, tenant, receiver, dispatcher, webhook_database
):
    # Registered straight in SQL (the route would refuse them): one IP literal, one name.
    literal_id, _ = create_endpoint(webhook_database, tenant, receiver.url("/private"))
    named_id, _ = create_endpoint(
        webhook_database, tenant, f"http://localhost:{receiver.port}/private-by-name"
    )

    async with dispatcher(webhook_allow_private_targets=False):
        await suspend_new_license(client, tenant)
        for endpoint in (literal_id, named_id):
            await until(lambda e=endpoint: delivery_rows(webhook_database, e)[0]["attempts"] == 1, "attempt")

    assert receiver.requests() == []
    for endpoint in (literal_id, named_id):
        [delivery] = delivery_rows(webhook_database, endpoint)
        [attempt] = attempts(webhook_database, delivery["id"])
        assert attempt["error_class"] == "unsafe_target"
        assert attempt["status_code"] is None


async def test_a_refused_connection_is_a_connect_attempt(client, tenant, dispatcher, webhook_database):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    endpoint_id, _ = create_endpoint(webhook_database, tenant, f"http://127.0.0.1:{port}/closed")

    async with dispatcher():
        await suspend_new_license(client, tenant)
        await until(lambda: delivery_rows(webhook_database, endpoint_id)[0]["attempts"] == 1, "the attempt")

    [delivery] = delivery_rows(webhook_database, endpoint_id)
    [attempt] = attempts(webhook_database, delivery["id"])
    assert (attempt["error_class"], attempt["status_code"], attempt["response_body"]) == (
        "connect",
        None,
        None,
    )


async def test_a_secret_that_cannot_be_decrypted_is_a_failed_attempt_not_a_crash(
    client, tenant, receiver, dispatcher, webhook_database
):
    broken_id, _ = create_endpoint(webhook_database, tenant, receiver.url("/broken"), key=os.urandom(32))
    fine_id, _ = create_endpoint(webhook_database, tenant, receiver.url("/fine"))

    async with dispatcher():
        await suspend_new_license(client, tenant)
        await until(lambda: delivery_rows(webhook_database, broken_id)[0]["attempts"] == 1, "the attempt")
        await until(lambda: delivery_rows(webhook_database, fine_id)[0]["status"] == "succeeded", "the other")

    assert receiver.requests("/broken") == []
    [delivery] = delivery_rows(webhook_database, broken_id)
    assert delivery["status"] == "pending"
    [attempt] = attempts(webhook_database, delivery["id"])
    assert attempt["error_class"] == "secret_unusable"


async def test_stopping_lets_sends_in_flight_finish_and_releases_the_rest(
    client, tenant, receiver, dispatcher, webhook_database
):
    endpoint_id, _ = create_endpoint(webhook_database, tenant, receiver.url("/slow"))
    receiver.default("/slow", Reply(delay=1))
    for _ in range(4):
        await suspend_new_license(client, tenant)

    # Four slots, one per endpoint: one send in flight, one waiting for it, two released at the claim.
    async with dispatcher(webhook_concurrency=4):
        await until(lambda: len(receiver.requests("/slow")) == 1, "the first send")
        stopped = time.monotonic()
    assert time.monotonic() - stopped < 3

    rows = delivery_rows(webhook_database, endpoint_id)
    assert [r.status for r in receiver.requests("/slow")] == [200]
    assert sorted(r["status"] for r in rows) == ["pending", "pending", "pending", "succeeded"]
    # Nothing is left leased: the others are due now for the next worker.
    assert all(r["lease_id"] is None for r in rows)
    assert all(r["next_attempt_at"] <= datetime.now(UTC) for r in rows if r["status"] == "pending")


async def test_two_dispatchers_never_send_one_delivery_twice_at_once(
    client, tenant, receiver, dispatcher, webhook_database
):
    endpoints = [create_endpoint(webhook_database, tenant, receiver.url(f"/pair/{n}"))[0] for n in range(4)]
    for n in range(4):
        receiver.default(f"/pair/{n}", Reply(delay=0.05))
    for _ in range(10):
        await suspend_new_license(client, tenant)

    async with dispatcher(webhook_concurrency=8), dispatcher(webhook_concurrency=8):
        await until(
            lambda: all(
                d["status"] == "succeeded" for e in endpoints for d in delivery_rows(webhook_database, e)
            ),
            "all 40 deliveries",
            within=30,
        )

    requests = receiver.requests()
    assert len(requests) == 40
    # Each (endpoint, event) reached its endpoint once, and never twice at the same time.
    assert len({(r.path, r.event_id) for r in requests}) == 40
    assert set(receiver.max_concurrent.values()) == {1}
    for endpoint in endpoints:
        assert all(d["attempts"] == 1 for d in delivery_rows(webhook_database, endpoint))


async def test_the_worker_purges_finished_deliveries_past_the_retention(
    client, tenant, receiver, dispatcher, settings, webhook_database
):
    endpoint_id, _ = create_endpoint(webhook_database, tenant, receiver.url("/old"))
    async with dispatcher():
        await suspend_new_license(client, tenant)
        await suspend_new_license(client, tenant)
        await until(
            lambda: [d["status"] for d in delivery_rows(webhook_database, endpoint_id)] == ["succeeded"] * 2,
            "two deliveries",
        )
    old, recent = delivery_rows(webhook_database, endpoint_id)
    superuser(
        webhook_database,
        "update lic.webhook_deliveries set created_at = now() - interval '31 days' where id = %s",
        (old["id"],),
    )

    [purge] = [
        job for job in jobs(replace(settings, worker_batch_size=1)) if job.name == "purge_webhook_deliveries"
    ]
    pool = await open_pool(login_url(webhook_database, WORKER_ROLE), WORKER_ROLE, min_size=1, max_size=1)
    try:
        assert await purge.work(pool) == 1
    finally:
        await pool.close()

    assert [d["id"] for d in delivery_rows(webhook_database, endpoint_id)] == [recent["id"]]
    assert attempts(webhook_database, old["id"]) == []


def test_retry_after_parsing():
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    parse = webhook_delivery.parse_retry_after
    assert parse(None, now) is None
    assert parse("120", now) == 120
    assert parse(" 7 ", now) == 7
    assert parse("Thu, 01 Jan 2026 13:00:00 GMT", now) == 3600
    assert parse("Thu, 01 Jan 2026 11:00:00 GMT", now) == 0  # in the past: now
    assert parse("soon", now) is None
    assert parse("-5", now) is None
    assert parse("99999999999999", now) == 2**31 - 1


def test_response_text_is_what_the_database_takes():
    assert webhook_delivery.response_text(b"ok") == "ok"
    assert webhook_delivery.response_text(b"a\x00b") == "a\ufffdb"
    assert webhook_delivery.response_text(b"\xff\xfe") == "\ufffd\ufffd"
    assert len(webhook_delivery.response_text(b"x" * 5000)) == 1024
