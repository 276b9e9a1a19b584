"""Tenancy, with DATABASE_URL logging in as a superuser (as it does in these
tests): one account never sees or touches another's objects over HTTP,
whatever id it sends, because every pooled connection drops to lic_app (which
may only call the tenant-scoped api functions) and refuses a role that
bypasses row level security."""

from __future__ import annotations

import asyncio
import socket
import uuid

import psycopg
import pytest
from psycopg import sql

from licentric.db import WEB_ROLE, UnsafeRoleError, check_login, login_url, open_pool

from support import all_key_ids, assert_error, create_key, with_checksum


@pytest.fixture
def database_superuser(database_url) -> str:
    """The tests' DATABASE_URL, checked to bypass RLS: what the pool must not keep."""
    with psycopg.connect(database_url) as conn:
        assert conn.execute("select rolsuper from pg_roles where rolname = current_user").fetchone() == (
            True,
        )
    return database_url


async def test_an_account_lists_only_its_own_keys(client, make_account, database_superuser):
    a, b = make_account("A"), make_account("B")
    mine = [(await create_key(client, a.headers))["id"] for _ in range(2)]
    theirs = [(await create_key(client, b.headers))["id"] for _ in range(2)]
    listed_for_a = await all_key_ids(client, a.headers)
    assert len(listed_for_a) == 3
    assert set(mine) <= set(listed_for_a)
    assert not set(theirs) & set(listed_for_a)
    # Cursors from the other account do not open a window into it either.
    page = await client.get("/v1/api_keys", headers=a.headers, params={"ending_before": theirs[0]})
    assert not {key["id"] for key in page.json()["data"]} & set(theirs)


async def test_another_accounts_key_is_not_found_and_left_unchanged(client, make_account, database_superuser):
    a, b = make_account("A"), make_account("B")
    target = await create_key(client, b.headers, name="b's key")
    before = (await client.get(f"/v1/api_keys/{target['id']}", headers=b.headers)).json()

    for method, path in (
        ("GET", "/v1/api_keys/{id}"),
        ("POST", "/v1/api_keys/{id}/roll"),
        ("DELETE", "/v1/api_keys/{id}"),
    ):
        response = await client.request(method, path.format(id=target["id"]), headers=a.headers)
        assert_error(response, 404, "resource_missing", "id")

    after = (await client.get(f"/v1/api_keys/{target['id']}", headers=b.headers)).json()
    assert after == before
    assert after["revoked_at"] is None and after["expires_at"] is None
    assert len(await all_key_ids(client, b.headers)) == 2
    assert len(await all_key_ids(client, a.headers)) == 1
    assert (await client.get("/v1/account", headers={"Authorization": f"Bearer {target['secret']}"})).json()[
        "id"
    ] == b.id


async def test_an_account_sees_its_own_account_and_usage_only(client, make_account):
    a, b = make_account("A"), make_account("B")
    for _ in range(3):
        await create_key(client, b.headers)
    account = (await client.get("/v1/account", headers=a.headers)).json()
    assert (account["id"], account["name"], account["usage"]["api_keys"]) == (a.id, "A", 1)


async def test_a_key_naming_another_account_does_not_authenticate(client, make_account):
    a, b = make_account("A"), make_account("B")
    # A's key with B's account id in it fails the checksum; re-checksummed, the lookup in B finds nothing.
    moved = a.secret_key.replace(uuid.UUID(a.id).hex, uuid.UUID(b.id).hex)
    assert_error(
        await client.get("/v1/account", headers={"Authorization": f"Bearer {moved}"}), 401, "unauthenticated"
    )
    rechecked = with_checksum(moved[:-8])
    assert_error(
        await client.get("/v1/account", headers={"Authorization": f"Bearer {rechecked}"}),
        401,
        "unauthenticated",
    )


async def test_the_pool_logs_in_as_lic_web_and_cannot_climb_back(database_superuser):
    """The login *is* the role: no SET ROLE from a superuser, so RESET ROLE (or SET ROLE postgres)
    leaves the connection as lic_web (issue 12, item 2)."""
    pool = await open_pool(login_url(database_superuser, WEB_ROLE), WEB_ROLE, min_size=1, max_size=2)
    try:
        async with pool.connection() as conn:
            await conn.execute("reset role")
            row = await (
                await conn.execute(
                    "select current_user as role, session_user as login, r.rolsuper, r.rolbypassrls"
                    " from pg_roles as r where r.rolname = current_user"
                )
            ).fetchone()
            assert row == {"role": "lic_web", "login": "lic_web", "rolsuper": False, "rolbypassrls": False}
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                await conn.execute("set role postgres")
        async with pool.connection() as conn:
            # lic_web reaches storage only through the api and service functions.
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                await conn.execute("select count(*) from lic.api_keys")
    finally:
        await pool.close()


async def test_the_apps_own_pool_logs_in_as_lic_web(client):
    async def logins() -> list[tuple[str, str]]:
        pool = client.app.state.pool
        async with pool.connection() as first, pool.connection() as second:
            return [
                tuple(
                    (
                        await (await c.execute("select session_user as s, current_user as c")).fetchone()
                    ).values()
                )
                for c in (first, second)
            ]

    # The app's pool lives in the test client's event loop.
    assert client.blocking_portal.call(logins) == [("lic_web", "lic_web"), ("lic_web", "lic_web")]


async def test_a_superuser_login_is_refused_with_the_upgrade_step(database_superuser):
    """What served before this change (a superuser DATABASE_URL, SET ROLE lic_app) now refuses to start
    and says what to set instead."""
    with pytest.raises(UnsafeRoleError, match="DATABASE_URL to postgresql://lic_web"):
        await asyncio.wait_for(open_pool(database_superuser, WEB_ROLE, min_size=1, max_size=1), timeout=5)


async def test_a_login_of_another_role_is_refused(database_superuser):
    with pytest.raises(UnsafeRoleError):
        await asyncio.wait_for(
            open_pool(login_url(database_superuser, "lic_app"), WEB_ROLE, min_size=1, max_size=1), timeout=5
        )


@pytest.mark.parametrize("attribute", ["bypassrls", "in role lic_app"])
async def test_a_login_role_with_a_way_up_is_refused(database_superuser, attribute):
    """A role that bypasses RLS, or that is a member of another role (it could SET ROLE to it), is no
    safe login even under the expected name."""
    role = f"lic_test_{uuid.uuid4().hex[:8]}"
    async with await psycopg.AsyncConnection.connect(database_superuser, autocommit=True) as conn:
        await conn.execute(sql.SQL(f"create role {{}} login {attribute}").format(sql.Identifier(role)))
        await conn.execute(
            sql.SQL("grant connect on database {} to {}").format(
                sql.Identifier(conn.info.dbname), sql.Identifier(role)
            )
        )
        try:
            async with await psycopg.AsyncConnection.connect(
                login_url(database_superuser, role), autocommit=True
            ) as login:
                with pytest.raises(UnsafeRoleError):
                    await check_login(login, role)
        finally:
            await conn.execute(sql.SQL("drop owned by {}").format(sql.Identifier(role)))
            await conn.execute(sql.SQL("drop role {}").format(sql.Identifier(role)))


async def test_a_pool_for_a_server_that_does_not_answer_fails_at_once(database_superuser):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here
    dsn = f"postgresql://lic_web@127.0.0.1:{port}/postgres?connect_timeout=2"
    with pytest.raises(psycopg.OperationalError):
        await asyncio.wait_for(open_pool(dsn, WEB_ROLE, min_size=1, max_size=1), timeout=5)
