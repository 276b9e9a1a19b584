"""Entitlement snapshots and the change feed over HTTP, and the feed's order under concurrent transactions:
a transaction that commits late is not skipped (decision 81)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import psycopg
from conftest import Account
from litestar.testing import AsyncTestClient

from licensing_support import as_account, live_server, make_license, make_policy, superuser
from support import assert_error, bearer

# The feed's horizon waits for every transaction of the database (and for those of the server it cannot place
# in another database, decision 81).
HORIZON_TIMEOUT = 180


def horizon_holder(database_url: str) -> str:
    """For a failure message: the server's oldest running transaction with an id, which holds every feed."""
    rows = superuser(
        database_url,
        "select datname, pid, state, now() - xact_start as age, left(query, 80) as query"
        " from pg_stat_activity where backend_xid is not null order by age(backend_xid) desc limit 1",
    )
    return f"the server's horizon is held by {rows[0] if rows else 'nothing now'}"


def entitled_customer(database_url: str, account: Account, external_id: str, code: str = "export-4k") -> str:
    """A customer with a license whose policy grants code; the license's id."""
    policy = make_policy(database_url, account.id)
    params = {"a": account.id, "c": code, "p": policy}
    superuser(
        database_url,
        "insert into lic.entitlements (account_id, code, name) values (%(a)s, %(c)s, %(c)s)"
        " on conflict do nothing",
        params,
    )
    superuser(
        database_url,
        "insert into lic.policy_entitlements (account_id, policy_id, entitlement_id)"
        " select p.account_id, p.id, e.id from lic.license_policies as p join lic.entitlements as e"
        " using (account_id) where p.account_id = %(a)s and p.code = %(p)s and e.code = %(c)s",
        params,
    )
    [row] = superuser(
        database_url,
        "insert into lic.customers (account_id, external_id) values (%s, %s) returning id::text",
        (account.id, external_id),
    )
    return make_license(database_url, account.secret_key, policy, row["id"])


def reason(entry: dict[str, Any], code: str) -> str:
    return entry["entitlements"].get(code, entry["default"])[0]["reason"]


def changes(database_url: str, account: Account, cursor: str) -> dict[str, Any]:
    [page] = as_account(
        database_url, account.secret_key, "select * from api.entitlement_changes(cursor => %s)", (cursor,)
    )
    return page


async def test_snapshot_of_the_account_and_of_one_customer(
    client: AsyncTestClient, database_url: str, account: Account
) -> None:
    license_id = entitled_customer(database_url, account, "user_1")
    entitled_customer(database_url, account, "user_2")
    whole = (await client.get("/v1/entitlements/snapshot", headers=account.headers)).json()
    assert [e["customer"] for e in whole["data"]] == ["user_1", "user_2"]
    assert whole["has_more"] is False and whole["cursor"].isdigit()
    first = whole["data"][0]["entitlements"]["export-4k"][0]
    assert (first["allowed"], first["reason"], first["license_id"]) == (True, "ENTITLED", license_id)
    paged = (await client.get("/v1/entitlements/snapshot?limit=1", headers=account.headers)).json()
    assert [e["customer"] for e in paged["data"]] == ["user_1"] and paged["has_more"] is True
    one = (await client.get("/v1/entitlements/snapshot?customer=nobody", headers=account.headers)).json()
    assert one["data"][0]["found"] is False and reason(one["data"][0], "export-4k") == "CUSTOMER_NOT_FOUND"
    assert_error(
        await client.get("/v1/entitlements/snapshot?limit=0", headers=account.headers),
        422,
        "invalid_parameter",
    )


async def test_changes_refuse_bad_and_old_cursors_and_publishable_keys(
    client: AsyncTestClient, database_url: str, account: Account
) -> None:
    assert_error(
        await client.get("/v1/entitlements/changes?cursor=x", headers=account.headers),
        422,
        "invalid_parameter",
        "cursor",
    )
    assert_error(
        await client.get("/v1/entitlements/changes", headers=account.headers), 400, "invalid_request"
    )
    assert_error(
        await client.get("/v1/entitlements/changes?cursor=1&wait=-1", headers=account.headers),
        422,
        "invalid_parameter",
        "wait",
    )
    superuser(
        database_url,
        "update lic.accounts set entitlement_feed_floor = '100' where account_id = %s",
        (account.id,),
    )
    gone = await client.get("/v1/entitlements/changes?cursor=100", headers=account.headers)
    assert_error(gone, 410, "cursor_expired", "cursor")
    publishable = (
        await client.post("/v1/api_keys", headers=account.headers, json={"kind": "publishable"})
    ).json()["secret"]
    assert_error(await client.get("/v1/entitlements/snapshot", headers=bearer(publishable)), 403, "forbidden")


def test_a_transaction_that_commits_late_is_not_skipped(database_url: str, account: Account) -> None:
    """T1 writes first and commits last; T2 writes later and commits first. A feed ordered by the first
    commit seen (or by a sequence) would move past T1's change; the horizon holds the cursor at or below T1's
    id while it runs, so T1's change falls in a later page."""
    early = entitled_customer(database_url, account, "early")
    late = entitled_customer(database_url, account, "late")
    [snapshot] = as_account(database_url, account.secret_key, "select cursor from api.entitlement_snapshot()")

    def revoke(conn: psycopg.Connection, license_id: str) -> None:
        # Not a suspension: that also counts the account's active licenses, one row all writers wait for.
        conn.execute("select from api.authenticate(secret => %s)", (account.secret_key,))
        conn.execute("select from api.set_license_entitlement(%s, 'export-4k', 'revoke')", (license_id,))

    with psycopg.connect(database_url) as t1, psycopg.connect(database_url) as t2:
        revoke(t1, early)  # T1 has its transaction id and has written; it commits last
        revoke(t2, late)
        t2.commit()
        page = changes(database_url, account, snapshot["cursor"])
        assert page["data"] == [], "nothing may be answered past the running T1"
        assert int(page["cursor"]) <= int(t1.execute("select pg_current_xact_id()::text").fetchone()[0])
        t1.commit()
    # Every page from that cursor on covers both changes. Rather than wait for the server's horizon to pass
    # them (other databases' transactions on a shared test server may hold it for minutes), read the window
    # from the cursor up to what has certainly ended, a cursor's explicit end.
    [ended] = superuser(database_url, "select pg_snapshot_xmax(pg_current_snapshot())::text as xid")
    later = changes(database_url, account, f"{page['cursor']}.{ended['xid']}.")
    assert {e["customer"]: reason(e, "export-4k") for e in later["data"]} == {
        "early": "NOT_ENTITLED",
        "late": "NOT_ENTITLED",
    }


def test_a_transaction_left_open_in_another_database_does_not_hold_the_feed(
    empty_database, database_url: str, account: Account
) -> None:
    license_id = entitled_customer(database_url, account, "user_9")
    [snapshot] = as_account(database_url, account.secret_key, "select cursor from api.entitlement_snapshot()")
    with psycopg.connect(empty_database()) as elsewhere:
        elsewhere.execute("select pg_current_xact_id()")  # an id, in a transaction left open
        as_account(
            database_url,
            account.secret_key,
            "select from api.set_license_entitlement(%s, 'export-4k', 'revoke')",
            (license_id,),
        )
        cursor, seen = snapshot["cursor"], []
        deadline = time.monotonic() + 60
        while not seen and time.monotonic() < deadline:
            page = changes(database_url, account, cursor)
            cursor, seen = page["cursor"], page["data"]
            time.sleep(0.05)
        assert [(e["customer"], reason(e, "export-4k")) for e in seen] == [("user_9", "NOT_ENTITLED")], (
            horizon_holder(database_url)
        )


def test_a_long_poll_answers_when_a_license_is_suspended(
    settings, database_url: str, account: Account
) -> None:
    license_id = entitled_customer(database_url, account, "user_42")
    with live_server(settings) as base, httpx.Client(base_url=base, headers=account.headers) as http:
        cursor = http.get("/v1/entitlements/snapshot").json()["cursor"]
        quiet = time.monotonic()
        empty = http.get("/v1/entitlements/changes", params={"cursor": cursor, "wait": 0.5}).json()
        assert empty["data"] == [] and time.monotonic() - quiet >= 0.4, "an empty answer waits"
        http.post(f"/v1/licenses/{license_id}/suspend").raise_for_status()
        cursor, data = empty["cursor"], []
        deadline = time.monotonic() + HORIZON_TIMEOUT
        while not data and time.monotonic() < deadline:
            page = http.get(
                "/v1/entitlements/changes", params={"cursor": cursor, "wait": 20}, timeout=30
            ).json()
            cursor, data = page["cursor"], page["data"]
    assert data, horizon_holder(database_url)
    assert [(e["customer"], reason(e, "export-4k")) for e in data] == [("user_42", "NO_VALID_LICENSE")]
