"""Rate limits (decisions 59, 60): counted in Postgres, so they hold across API processes (two real `licentric
serve` processes share one database here); per key after authentication however the header varies, per client
address before it and for the portal, per account for Stripe; malformed keys and stale Stripe timestamps are
refused without touching the database."""

from __future__ import annotations

import base64
import itertools
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from litestar.testing import AsyncTestClient

from licentric.app import create_app

from processes import Server, cli_env, free_port
from stripe_support import sign
from support import assert_error, bearer, with_checksum

LIMIT = 5


def fresh_minute() -> None:
    """The limits count calendar minutes: start a test early enough in one to finish within it."""
    second = time.time() % 60
    if second > 45:
        time.sleep(60.5 - second)


@pytest.fixture(scope="module")
def servers(settings: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """Two API processes on one database, each limited to LIMIT a minute. A secret key of their own keys
    the client address hash, so other tests' requests from this machine count elsewhere."""
    urls, started = [], []
    env = cli_env(
        DATABASE_URL=settings.database_url,
        LICENTRIC_SECRET_KEY=base64.b64encode(os.urandom(32)).decode(),
        LICENTRIC_RATE_LIMIT_PER_MINUTE=str(LIMIT),
        LICENTRIC_STRIPE_RATE_LIMIT_PER_MINUTE=str(LIMIT),
    )
    try:
        for n in range(2):
            port = free_port()
            server = Server(
                ["serve", "--port", str(port)], env, tmp_path_factory.mktemp(f"rate_limit_server_{n}")
            )
            started.append(server)
            urls.append(f"http://127.0.0.1:{port}")
            server.wait_healthy(urls[-1])
        yield urls
    finally:
        for server in started:
            server.kill()


ADDRESSES = itertools.count(10)


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    """An HTTP client from a loopback address of the test's own (127.0.0.N), so each test's client address
    starts the minute with a clean count."""
    transport = httpx.HTTPTransport(local_address=f"127.0.0.{next(ADDRESSES)}")
    with httpx.Client(transport=transport) as client:
        yield client


def alternate(
    http: httpx.Client, urls: list[str], requests: list[tuple[str, str, dict[str, str]]]
) -> list[int]:
    """Send each (method, path, headers) to the two processes in turn; the statuses."""
    statuses = []
    for n, (method, path, headers) in enumerate(requests):
        statuses.append(http.request(method, urls[n % 2] + path, headers=headers).status_code)
    return statuses


def test_varying_the_authorization_header_does_not_escape_the_key_limit(http, servers, account):
    fresh_minute()
    key = account.secret_key
    variants = [f"Bearer {key}", f"bearer {key}", f"Bearer  {key}", f"BEARER {key}", f"Bearer   {key}"]
    statuses = alternate(
        http, servers, [("GET", "/v1/account", {"Authorization": variant}) for variant in variants * 2]
    )

    assert statuses == [200] * LIMIT + [429] * LIMIT
    response = http.get(servers[0] + "/v1/account", headers=account.headers)
    assert_error(response, 429, "rate_limited")
    assert 0 < int(response.headers["retry-after"]) <= 60


def test_each_key_has_its_own_limit(http, servers, account, make_account):
    fresh_minute()
    statuses = alternate(http, servers, [("GET", "/v1/account", account.headers)] * (LIMIT + 1))
    other = make_account()

    assert statuses == [200] * LIMIT + [429]
    assert http.get(servers[1] + "/v1/account", headers=other.headers).status_code == 200


def test_well_formed_wrong_keys_from_one_address_are_cut_off_before_authentication(http, servers, account):
    fresh_minute()
    wrong = [
        bearer(with_checksum("lic_sk_" + uuid.UUID(account.id).hex + os.urandom(20).hex())) for _ in range(6)
    ]
    statuses = alternate(http, servers, [("GET", "/v1/account", headers) for headers in wrong])

    assert statuses == [401] * LIMIT + [429]
    # The address is refused before any key is looked up, even a good one.
    assert_error(http.get(servers[1] + "/v1/account", headers=account.headers), 429, "rate_limited")


def test_failing_requests_are_counted(http, servers, account):
    fresh_minute()
    missing = f"/v1/licenses/{uuid.uuid4()}"
    statuses = alternate(http, servers, [("GET", missing, account.headers)] * LIMIT)

    assert statuses == [404] * LIMIT
    assert_error(http.get(servers[0] + "/v1/account", headers=account.headers), 429, "rate_limited")


def test_junk_authorization_headers_do_not_escape_the_portal_limit(http, servers):
    fresh_minute()
    junk = [{"Authorization": f"Bearer junk-{n}"} for n in range(3)] + [
        bearer(with_checksum("lic_sk_" + "ab" * 36))
    ]
    statuses = alternate(
        http, servers, [("GET", "/portal/no-such-portal/login", headers) for headers in junk * 2]
    )

    assert statuses[:LIMIT] == [404] * LIMIT
    assert statuses[LIMIT:] == [429] * (len(statuses) - LIMIT)


def test_the_stripe_webhook_is_limited_per_account_in_its_url(http, servers, account, make_account):
    fresh_minute()
    body = b'{"id": "evt_1", "object": "event"}'
    headers = {"Stripe-Signature": sign(body, "whsec_not_the_secret"), "Content-Type": "application/json"}
    path = f"/v1/stripe/webhooks/{account.id}"
    statuses = [http.post(servers[n % 2] + path, content=body, headers=headers).status_code for n in range(6)]

    assert statuses == [400] * LIMIT + [429]
    other = make_account()
    response = http.post(f"{servers[0]}/v1/stripe/webhooks/{other.id}", content=body, headers=headers)
    assert response.status_code == 400, "another account's deliveries have their own limit"


class Untouchable:
    """A pool that fails the test when anything uses it."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the database was touched (pool.{name})")


@pytest.fixture
async def no_database(settings: Any) -> AsyncIterator[AsyncTestClient]:
    """A client of an app whose pool must not be used."""
    async with AsyncTestClient(app=create_app(settings)) as client:
        pool, client.app.state.pool = client.app.state.pool, Untouchable()
        try:
            yield client
        finally:
            client.app.state.pool = pool


MALFORMED = [
    "lic_sk_",
    "lic_sk_" + "0" * 80,  # a wrong checksum
    with_checksum("lic_xk_" + "0" * 72),  # an unknown prefix
    with_checksum("lic_sk_" + "0" * 71),  # one character short
    with_checksum("lic_sk_" + "G" * 32 + "0" * 40),  # an account part that is not hex
]


@pytest.mark.parametrize("key", MALFORMED)
async def test_a_malformed_key_is_refused_without_touching_the_database(no_database, key):
    error = assert_error(await no_database.get("/v1/account", headers=bearer(key)), 401, "unauthenticated")
    assert "malformed" in error["message"]


@pytest.mark.parametrize("offset", [-301, -3600, 301, 86400])
async def test_a_stripe_signature_out_of_tolerance_is_refused_before_any_database_read(no_database, offset):
    body = b'{"id": "evt_1", "object": "event"}'
    stamp = int(time.time()) + offset
    response = await no_database.post(
        f"/v1/stripe/webhooks/{uuid.uuid4()}",
        content=body,
        headers={"Stripe-Signature": sign(body, "whsec_x", stamp), "Content-Type": "application/json"},
    )
    assert_error(response, 400, "signature_invalid")


def corpus() -> list[str]:
    """Keys of every shape: valid ones of each kind and each way to break one."""
    account = uuid.uuid4().hex
    good = [
        with_checksum(prefix + account + os.urandom(20).hex()) for prefix in ("lic_sk_", "lic_pk_", "lic_ak_")
    ]
    keys = [*good, *MALFORMED, "", " ", "Bearer", good[0].upper(), good[0] + " ", " " + good[0], good[0][:-1]]
    # A valid checksum over a random part that is not hex: the format leaves it to the checksum.
    keys.append(with_checksum("lic_sk_" + account + "z" * 40))
    keys.append(with_checksum("lic_sk_" + account + "é" * 40))
    keys.append(with_checksum("lic_ak_" + account.upper() + "0" * 40))
    for n, key in enumerate(list(good)):
        for position in (0, 6, 7, 38, 39, 78, 79, 86):
            keys.append(key[:position] + ("x" if key[position] != "x" else "y") + key[position + 1 :])
        keys.append(key[: 7 + n] + "-" + key[8 + n :])
    return keys


def test_the_key_format_check_agrees_with_sql(database_url):
    from licentric.tokens import well_formed

    keys = corpus()
    with psycopg.connect(database_url, autocommit=True) as conn:
        in_sql = []
        for key in keys:
            try:
                conn.execute("select private.token_account(%s)", (key,))
                in_sql.append(True)
            except psycopg.Error as exc:
                assert exc.sqlstate == "LAUTH", exc
                in_sql.append(False)

    assert [well_formed(key) for key in keys] == in_sql
    assert sum(in_sql) >= 4 and not all(in_sql), "the corpus holds keys SQL accepts and keys it refuses"
