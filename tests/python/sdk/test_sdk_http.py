"""The SDK's HTTP behaviour against a real server behind a fault-injecting proxy: retries (429 with
Retry-After, 503, connection resets) with their counts and timing, the Idempotency-Key kept across the retries
of a POST (applied once, as the server's state shows), pagination, typed errors, versions, fork safety."""

from __future__ import annotations

import multiprocessing
import time
import uuid

import pytest
from fault_proxy import FaultProxy

from licentric import __version__ as server_version
from licentric_sdk import AsyncLicentric, Licentric, RetryPolicy, _generated
from licentric_sdk.errors import APIConnectionError, RateLimitError, ServerError

FAST = RetryPolicy(max_retries=3, initial_delay=0.05, max_delay=0.1)


@pytest.fixture
def proxy(serve_url):
    with FaultProxy(serve_url) as proxy:
        yield proxy


def test_429_503_and_a_reset_are_retried_honouring_retry_after(proxy, account):
    proxy.faults.extend([("status", 429, {"Retry-After": "1"}), ("status", 503, {}), "reset"])
    client = Licentric(account.secret_key, base_url=proxy.url, retry=FAST)
    started = time.monotonic()
    assert client.account.get().id == account.id
    elapsed = time.monotonic() - started
    attempts = proxy.requests("GET", "/v1/account")
    assert len(attempts) == 4
    # Retry-After: 1 was waited for in full; the two backoffs after it are at most 0.1 s each.
    assert attempts[1][0] - attempts[0][0] >= 1.0
    assert 1.0 <= elapsed < 2.5


def test_retries_stop_after_max_retries_with_a_typed_error(proxy, account):
    proxy.mode = ("status", 503, {})
    client = Licentric(
        account.secret_key, base_url=proxy.url, retry=RetryPolicy(max_retries=2, initial_delay=0.01)
    )
    with pytest.raises(ServerError) as failed:
        client.account.get()
    assert (failed.value.status, failed.value.code) == (503, "injected")
    assert len(proxy.requests("GET", "/v1/account")) == 3


def test_a_retry_after_beyond_the_cap_fails_at_once(proxy, account):
    proxy.faults.append(("status", 429, {"Retry-After": "3600"}))
    client = Licentric(account.secret_key, base_url=proxy.url, retry=FAST)
    started = time.monotonic()
    with pytest.raises(RateLimitError):
        client.account.get()
    assert time.monotonic() - started < 1 and len(proxy.seen) == 1


def test_connection_failures_surface_as_api_connection_error(account):
    client = Licentric(
        account.secret_key,
        base_url="http://127.0.0.1:9",
        retry=RetryPolicy(max_retries=1, initial_delay=0.01),
    )
    with pytest.raises(APIConnectionError):
        client.account.get()


def test_a_post_whose_answer_was_lost_is_retried_with_its_key_and_applied_once(proxy, make_account):
    account = make_account()
    direct = Licentric(account.secret_key, base_url=proxy.upstream)
    policy = direct.license_policies.create(code="pro", name="Pro")
    customer = direct.customers.create(email="once@example.com")
    proxy.faults.append("lose")  # the server creates the license, the client hears a reset
    client = Licentric(account.secret_key, base_url=proxy.url, retry=FAST)
    made = client.licenses.create(policy_id=policy.id, customer_id=customer.id)
    posts = proxy.requests("POST", "/v1/licenses")
    assert len(posts) == 2
    assert posts[0][3]["Idempotency-Key"] == posts[1][3]["Idempotency-Key"]
    assert [lic.id for lic in direct.licenses.list(customer_id=customer.id)] == [made.id]
    assert direct.account.get().usage.active_licenses == 1


def test_every_post_gets_its_own_idempotency_key(proxy, account):
    client = Licentric(account.secret_key, base_url=proxy.url)
    client.customers.create(email="a@example.com")
    client.customers.create(email="a@example.com")
    keys = {r[3]["Idempotency-Key"] for r in proxy.requests("POST", "/v1/customers")}
    assert len(keys) == 2 and all(uuid.UUID(k) for k in keys)


def test_lists_iterate_over_every_page(proxy, make_account):
    account = make_account()
    client = Licentric(account.secret_key, base_url=proxy.url)
    made = [client.customers.create(email=f"c{n}@example.com").id for n in range(25)]
    assert sorted(c.id for c in client.customers.list(limit=10)) == sorted(made)
    pages = proxy.requests("GET", "/v1/customers")
    assert len(pages) == 3 and "starting_after=" in pages[1][2] and "starting_after=" in pages[2][2]
    assert [len(page.data) for page in client.customers.list(limit=10).pages()] == [10, 10, 5]


async def test_the_async_client_retries_and_paginates(proxy, make_account):
    account = make_account()
    async with AsyncLicentric(account.secret_key, base_url=proxy.url, retry=FAST) as client:
        made = {(await client.customers.create(email=f"a{n}@example.com")).id for n in range(12)}
        proxy.faults.extend([("status", 429, {"Retry-After": "0.5"}), "reset"])
        started = time.monotonic()
        listed = {c.id async for c in client.customers.list(limit=5)}
        assert listed == made and time.monotonic() - started >= 0.5
        assert len(proxy.requests("GET", "/v1/customers")) == 3 + 2  # three pages, two retried attempts
        versions = await client.versions()
    assert versions.server == server_version and versions.compatible


def test_versions_report_the_sdk_the_api_and_the_server(serve_url, account):
    client = Licentric(account.secret_key, base_url=serve_url)
    assert client.server_version is None
    versions = client.versions()
    assert (versions.api, versions.server) == (_generated.API_VERSION, server_version)
    assert versions.compatible


def test_an_incompatible_server_is_reported_in_the_log(proxy, account, caplog):
    proxy.faults.append(("status", 503, {"Licentric-Version": "9.0.0"}))
    client = Licentric(account.secret_key, base_url=proxy.url, retry=RetryPolicy(max_retries=0))
    with pytest.raises(ServerError):
        client.operations.health()
    assert client.server_version == "9.0.0"
    assert "the server at" in caplog.text and "9.0.0" in caplog.text


def _in_child(client: Licentric, queue: multiprocessing.Queue) -> None:
    queue.put(client.account.get().id)


def test_a_client_made_before_a_fork_works_in_the_child(serve_url, account):
    client = Licentric(account.secret_key, base_url=serve_url)
    assert client.account.get().id == account.id  # the parent's connection is open now
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_in_child, args=(client, queue))
    child.start()
    child.join(30)
    assert child.exitcode == 0 and queue.get(timeout=5) == account.id
    assert client.account.get().id == account.id  # and the parent's still works
