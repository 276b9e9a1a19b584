"""The role model seen from outside (decisions 50-53): who may log in, what a login bound to an account
does, where migrate refuses, and what a copied tenant context is worth."""

from __future__ import annotations

import json
from collections.abc import Callable

import psycopg
import pytest
from conftest import Account

from licentric.db import login_url

from processes import cli_env, run_cli


def login(database_url: str, account_id: str, *extra: str) -> dict[str, object]:
    result = run_cli("accounts", "login", account_id, *extra, env=cli_env(DATABASE_ADMIN_URL=database_url))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_bound_login_calls_the_api_as_its_account_without_a_key(database_url: str, account: Account):
    made = login(database_url, account.id)
    assert made["role"] == "lic_tenant_" + account.id.replace("-", "")
    try:
        with psycopg.connect(made["conninfo"], autocommit=True) as conn:
            assert conn.info.user == made["role"]
            assert conn.execute("select (api.get_account()).id::text").fetchone()[0] == account.id
            # The login is the proof, transaction by transaction: nothing carries over, nothing to forge.
            conn.execute(
                "select set_config('lic.account_id', %s, false)", ("0" * 8 + "-0000-7000-8000-" + "0" * 12,)
            )
            with pytest.raises(psycopg.Error) as refused:
                conn.execute("select api.get_account()")
            assert refused.value.sqlstate == "LAUTH"
    finally:
        assert login(database_url, account.id, "--drop") == {"account_id": account.id, "dropped": True}
    with psycopg.connect(database_url) as conn:
        assert (
            conn.execute("select count(*) from pg_roles where rolname = %s", (made["role"],)).fetchone()[0]
            == 0
        )


def test_a_login_for_an_unknown_account_is_refused(database_url: str):
    result = run_cli(
        "accounts",
        "login",
        "01890000-0000-7000-8000-000000000000",
        env=cli_env(DATABASE_ADMIN_URL=database_url),
    )
    assert result.returncode != 0
    assert "account not found" in result.stderr


def test_migrate_refuses_a_second_licentric_database_on_the_server(
    database_url: str, empty_database: Callable[[], str]
):
    """database_url already holds Licentric on this server: the roles would be shared."""
    second = empty_database()
    refused = run_cli("migrate", env=cli_env(DATABASE_URL=second, LICENTRIC_SHARED_ROLES=None))
    assert refused.returncode != 0
    assert "one Licentric database per server" in refused.stderr
    with psycopg.connect(second) as conn:
        assert conn.execute("select to_regnamespace('lic') is null").fetchone()[0], "nothing was applied"
    allowed = run_cli("migrate", env=cli_env(DATABASE_URL=second, LICENTRIC_SHARED_ROLES="true"))
    assert allowed.returncode == 0, allowed.stderr


def test_public_cannot_connect(database_url: str, empty_database: Callable[[], str]):
    """Only Licentric's logins may connect to its database; a role of the server's own may not."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("drop role if exists lic_test_stranger")
        conn.execute("create role lic_test_stranger login")
    try:
        with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
            psycopg.connect(login_url(database_url, "lic_test_stranger")).close()
        psycopg.connect(login_url(database_url, "lic_app")).close()
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("drop role lic_test_stranger")


def test_a_context_copied_to_the_session_is_void_in_the_next_message(database_url: str, account: Account):
    """The signature is bound to the transaction's start (decision 53): settings copied to session level in
    one transaction verify in no transaction of a later message."""
    with psycopg.connect(login_url(database_url, "lic_app"), autocommit=True) as conn:
        with conn.transaction():
            conn.execute("select from api.authenticate(secret => %s)", (account.secret_key,))
            conn.execute(
                "select set_config(name, current_setting(name), false) from unnest(array["
                "'lic.account_id', 'lic.key_kind', 'lic.principal_id', 'lic.context_signature']) as name"
            )
        assert conn.execute("select current_setting('lic.account_id')").fetchone()[0] == account.id
        with pytest.raises(psycopg.Error) as refused:
            conn.execute("select api.get_account()")
        assert refused.value.sqlstate == "LAUTH"
