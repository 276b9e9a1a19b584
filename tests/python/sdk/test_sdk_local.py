"""Local evaluation against a real `licentric serve`: checks answered from the snapshot, a suspension made
over the API reaching a running SDK's check through the feed, a 410 answered with a full snapshot, staleness
failing closed or open, the lazy LRU, the asyncio variant, a forked child's own feed, the Litestar guard."""

from __future__ import annotations

import asyncio
import os
import time

import pytest
from fault_proxy import FaultProxy
from litestar import Litestar, get
from litestar.testing import TestClient
from test_entitlement_feed import HORIZON_TIMEOUT, entitled_customer, horizon_holder

from licentric_sdk import AsyncLicentric, Licentric, LocalOptions, RetryPolicy
from licentric_sdk.litestar import EntitlementGate

from licensing_support import superuser

QUICK = RetryPolicy(max_retries=1, initial_delay=0.05, max_delay=0.1)
FAST_FEED = LocalOptions(wait=1.0)


def eventually(database_url: str, condition, timeout: float = HORIZON_TIMEOUT) -> None:
    """Wait until condition() holds; fail after timeout (the feed waits for the server's horizon)."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout} s; {horizon_holder(database_url)}")
        time.sleep(0.01)


def reason(client: Licentric, entitlement: str, customer: str) -> str:
    return client.entitlements.check(entitlement, customer=customer).reason


def test_a_license_suspended_over_the_api_reaches_a_running_local_check(serve_url, database_url, account):
    license_id = entitled_customer(database_url, account, "user_42")
    with Licentric(account.secret_key, base_url=serve_url, local=FAST_FEED) as client:
        answer = client.entitlements.check("export-4k", customer="user_42")
        assert (answer.allowed, answer.reason, answer.license_id) == (True, "ENTITLED", license_id)
        assert client.entitlements.check("other", customer="user_42").reason == "NOT_ENTITLED"
        assert client.entitlements.check("export-4k", customer="nobody").reason == "CUSTOMER_NOT_FOUND"
        Licentric(account.secret_key, base_url=serve_url).licenses.suspend(license_id)
        eventually(database_url, lambda: reason(client, "export-4k", "user_42") == "NO_VALID_LICENSE")
        stats = client.entitlements.local.stats()
        assert stats.hits >= 4 and stats.misses == 0 and stats.snapshots == 1 and stats.customers == 1


def test_a_cursor_too_old_is_answered_with_a_full_snapshot(serve_url, database_url, account):
    entitled_customer(database_url, account, "user_1")
    with Licentric(account.secret_key, base_url=serve_url, local=FAST_FEED) as client:
        local = client.entitlements.local
        assert client.entitlements.check("export-4k", customer="user_1").allowed
        # Every cursor so far is now older than the account's floor (as after pruned tombstones).
        superuser(
            database_url,
            "update lic.accounts set entitlement_feed_floor = pg_snapshot_xmax(pg_current_snapshot())"
            " where account_id = %s",
            (account.id,),
        )
        entitled_customer(database_url, account, "user_2")
        eventually(database_url, lambda: local.stats().snapshots == 2, timeout=30)
        eventually(database_url, lambda: client.entitlements.check("export-4k", customer="user_2").allowed)


@pytest.mark.parametrize("fail_open", [False, True])
def test_a_stale_snapshot_fails_closed_or_open_as_configured(serve_url, database_url, account, fail_open):
    entitled_customer(database_url, account, "user_1")
    options = LocalOptions(wait=0.2, max_staleness=1.0, fail_open=fail_open, retry_delay=0.1)
    with (
        FaultProxy(serve_url) as proxy,
        Licentric(account.secret_key, base_url=proxy.url, retry=QUICK, local=options) as client,
    ):
        assert client.entitlements.check("nothing-granted", customer="user_1").reason == "NOT_ENTITLED"
        proxy.mode = ("status", 503, {})  # an outage
        eventually(database_url, lambda: reason(client, "nothing-granted", "user_1") == "STALE", 10)
        stale = client.entitlements.check("nothing-granted", customer="user_1")
        assert stale.allowed is fail_open
        proxy.mode = None
        eventually(database_url, lambda: reason(client, "nothing-granted", "user_1") != "STALE", 10)
        assert client.entitlements.local.stats().feed_errors > 0


def test_lazy_mode_fetches_on_a_miss_and_keeps_an_lru(serve_url, database_url, account):
    first = entitled_customer(database_url, account, "user_1")
    entitled_customer(database_url, account, "user_2")
    options = LocalOptions(mode="lazy", max_customers=1, wait=1.0)
    with Licentric(account.secret_key, base_url=serve_url, local=options) as client:
        local = client.entitlements.local
        assert client.entitlements.check("export-4k", customer="user_1").allowed
        assert client.entitlements.check("export-4k", customer="user_1").allowed
        assert (local.stats().misses, local.stats().hits, local.stats().customers) == (1, 1, 1)
        assert client.entitlements.check("export-4k", customer="user_2").allowed
        assert local.stats().customers == 1, "the LRU holds max_customers"
        assert client.entitlements.check("export-4k", customer="user_1").allowed  # a miss again
        assert local.stats().misses == 3
        Licentric(account.secret_key, base_url=serve_url).licenses.suspend(first)
        eventually(database_url, lambda: reason(client, "export-4k", "user_1") == "NO_VALID_LICENSE")
        assert local.stats().misses == 3, "the change came through the feed, not a fetch"


def test_the_async_client_checks_locally_with_a_feed_task(serve_url, database_url, account):
    license_id = entitled_customer(database_url, account, "user_42")

    async def scenario() -> None:
        async with AsyncLicentric(account.secret_key, base_url=serve_url, local=FAST_FEED) as client:
            assert (await client.entitlements.check("export-4k", customer="user_42")).allowed
            await client.licenses.suspend(license_id)
            deadline = time.monotonic() + HORIZON_TIMEOUT
            while (await client.entitlements.check("export-4k", customer="user_42")).allowed:
                assert time.monotonic() < deadline, horizon_holder(database_url)
                await asyncio.sleep(0.01)
            assert client.entitlements.local.stats().snapshots == 1

    asyncio.run(scenario())


def test_a_forked_child_follows_the_feed_with_its_own_thread(serve_url, database_url, account):
    license_id = entitled_customer(database_url, account, "user_42")
    with Licentric(account.secret_key, base_url=serve_url, local=FAST_FEED) as client:
        assert client.entitlements.check("export-4k", customer="user_42").allowed
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: wait for the parent's suspension to arrive through its own feed
            os.close(write)
            os.read(read, 1)
            try:
                eventually(database_url, lambda: reason(client, "export-4k", "user_42") == "NO_VALID_LICENSE")
                os._exit(0)
            except BaseException:
                os._exit(1)
        os.close(read)
        Licentric(account.secret_key, base_url=serve_url).licenses.suspend(license_id)
        os.write(write, b"x")
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0


def test_the_litestar_guard_lets_entitled_customers_through(serve_url, database_url, account):
    entitled_customer(database_url, account, "user_42")
    with Licentric(account.secret_key, base_url=serve_url, local=FAST_FEED) as client:
        gate = EntitlementGate(client, customer=lambda connection: connection.headers["x-user"])

        @get("/export", guards=[gate.requires_entitlement("export-4k")], sync_to_thread=False)
        def export() -> str:
            return "exported"

        with TestClient(app=Litestar([export])) as http:
            assert http.get("/export", headers={"x-user": "user_42"}).text == "exported"
            denied = http.get("/export", headers={"x-user": "user_7"})
            assert denied.status_code == 403 and "CUSTOMER_NOT_FOUND" in denied.text
