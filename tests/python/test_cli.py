"""The `licentric` command, run as a subprocess the way an operator runs it."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote

import httpx
import psycopg
import pytest

from licentric.db import WEB_ROLE, login_url
from licentric.migrate import LOCK_ID, ROOT
from licentric.web.security import digest

from processes import Server, cli_env, free_port, run_cli

SQL_FILES = sorted(path.name for path in (ROOT / "sql").glob("*.sql"))


def test_migrate_command_migrates_an_empty_database(empty_database: Callable[[], str]):
    url = empty_database()

    result = run_cli("migrate", env=cli_env(DATABASE_URL=url))

    assert result.returncode == 0, result.stderr
    assert all(name in result.stderr for name in SQL_FILES)
    with psycopg.connect(url) as conn:
        applied = conn.execute(
            "select array_agg(name order by name) from lic_migrations.versioned"
        ).fetchone()
    assert applied[0] == SQL_FILES


def test_migrate_command_fails_while_another_migrator_holds_the_lock(empty_database: Callable[[], str]):
    url = empty_database()
    with psycopg.connect(url, autocommit=True) as holder:
        holder.execute("select pg_advisory_lock(%s)", (LOCK_ID,))
        result = run_cli("migrate", env=cli_env(DATABASE_URL=url))

    assert result.returncode != 0
    assert "another `licentric migrate` is running" in result.stderr
    assert "Traceback" not in result.stderr


def test_accounts_create_prints_an_account_and_a_working_secret_key(database_url: str):
    result = run_cli(
        "accounts", "create", "Acme Tools", "--plan", "starter", env=cli_env(DATABASE_URL=database_url)
    )

    assert result.returncode == 0, result.stderr
    created = json.loads(result.stdout)
    assert created["secret_key"].startswith("lic_sk_")
    with psycopg.connect(database_url) as conn:
        conn.execute("set local role lic_app")
        context = conn.execute(
            "select account_id::text, kind from api.authenticate(secret => %s)", (created["secret_key"],)
        ).fetchone()
        account = conn.execute("select id::text, name, plan from api.get_account()").fetchone()
    assert context == (created["account_id"], "secret")
    assert account == (created["account_id"], "Acme Tools", "starter")


def test_accounts_create_with_owner_makes_that_address_the_owner(database_url: str):
    result = run_cli(
        "accounts",
        "create",
        "Owned",
        "--owner",
        "Founder@Example.com",
        env=cli_env(DATABASE_URL=database_url),
    )

    assert result.returncode == 0, result.stderr
    created = json.loads(result.stdout)
    assert created["owner"] == "founder@example.com"
    with psycopg.connect(database_url) as conn:
        conn.execute("set local role lic_app")
        conn.execute("select api.authenticate(secret => %s)", (created["secret_key"],))
        members = conn.execute("select email, role from api.list_members()").fetchall()
    assert members == [("founder@example.com", "owner")]


def test_accounts_create_with_a_malformed_owner_creates_nothing(database_url: str):
    with psycopg.connect(database_url) as conn:
        before = conn.execute("select count(*) from lic.accounts").fetchone()[0]
    result = run_cli(
        "accounts", "create", "Bad", "--owner", "not an address", env=cli_env(DATABASE_URL=database_url)
    )

    assert result.returncode != 0
    assert "email is not a valid address" in result.stderr
    assert "Traceback" not in result.stderr
    with psycopg.connect(database_url) as conn:
        assert conn.execute("select count(*) from lic.accounts").fetchone()[0] == before


def test_accounts_sign_in_link_prints_a_link_that_signs_the_member_in(database_url: str):
    env = cli_env(DATABASE_URL=database_url, LICENTRIC_PUBLIC_URL="https://licentric.example")
    created = json.loads(run_cli("accounts", "create", "Linked", "--owner", "o@example.com", env=env).stdout)

    result = run_cli("accounts", "sign-in-link", created["account_id"], "O@example.com", env=env)

    assert result.returncode == 0, result.stderr
    link = json.loads(result.stdout)
    prefix = "https://licentric.example/console/login/confirm?token="
    assert link["url"].startswith(prefix)
    token = unquote(link["url"].removeprefix(prefix))
    with psycopg.connect(database_url) as conn:
        conn.execute("set local role lic_web")
        session = conn.execute(
            "select account_id::text, email, role"
            " from service.confirm_console_login(token_hash => %s, session_hash => %s)",
            (digest(token), digest("session")),
        ).fetchone()
    assert session == (created["account_id"], "o@example.com", "owner")


def test_accounts_sign_in_link_for_a_non_member_exits_naming_it(database_url: str):
    env = cli_env(DATABASE_URL=database_url)
    created = json.loads(run_cli("accounts", "create", "Lonely", env=env).stdout)

    result = run_cli("accounts", "sign-in-link", created["account_id"], "who@example.com", env=env)

    assert result.returncode != 0
    assert "no member of that account" in result.stderr
    assert "Traceback" not in result.stderr


def test_accounts_create_rejects_an_unknown_plan(database_url: str):
    result = run_cli(
        "accounts", "create", "Acme", "--plan", "platinum", env=cli_env(DATABASE_URL=database_url)
    )

    assert result.returncode == 2
    assert "invalid choice: 'platinum'" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("args", [["migrate"], ["serve"], ["accounts", "create", "Acme"]], ids=" ".join)
def test_database_commands_without_database_url_exit_naming_it(args: list[str]):
    result = run_cli(*args, env=cli_env(), timeout=30)

    assert result.returncode != 0
    assert "DATABASE_URL is not set" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_answers_healthz_and_exits_cleanly_on_sigterm(database_url: str, tmp_path: Path):
    port = free_port()
    env = cli_env(DATABASE_URL=login_url(database_url, WEB_ROLE))
    server = Server(["serve", "--port", str(port)], env, tmp_path)
    try:
        server.wait_healthy(f"http://127.0.0.1:{port}")
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").json() == {"status": "ok"}

        returncode = server.stop(signal.SIGTERM)
    finally:
        server.kill()

    # SIGTERM unwinds like Ctrl-C (exit handlers run) and exits with the shell's 128 + 15.
    assert returncode == 128 + signal.SIGTERM, server.stderr
    assert "Traceback" not in server.stderr
    assert "Application shutdown complete" in server.stderr


def test_a_suspended_account_records_no_usage_until_it_is_reactivated(database_url: str):
    env = cli_env(DATABASE_URL=database_url)
    created = json.loads(run_cli("accounts", "create", "Overdue Co", env=env).stdout)
    event = '[{"id": "e1", "meter": "calls", "subject_key": "u1"}]'

    def ingest() -> tuple[str | None, str | None]:
        with psycopg.connect(database_url) as conn:
            conn.execute("set local role lic_app")
            conn.execute("select from api.authenticate(secret => %s)", (created["secret_key"],))
            try:
                result = conn.execute(
                    "select api.ingest_events(events => %s::jsonb) ->> 'accepted'", (event,)
                )
                return None, result.fetchone()[0]
            except psycopg.Error as exc:
                return exc.sqlstate, None

    with psycopg.connect(database_url) as conn:
        conn.execute("select private.set_context(%s, 'secret')", (created["account_id"],))
        conn.execute(
            "insert into lic.meters (account_id, code, name, aggregation)"
            " values (%s, 'calls', 'Calls', 'count')",
            (created["account_id"],),
        )

    suspended = run_cli("accounts", "suspend", created["account_id"], "--reason", "invoice unpaid", env=env)
    assert suspended.returncode == 0, suspended.stderr
    assert json.loads(suspended.stdout) == {
        "account_id": created["account_id"],
        "status": "suspended",
        "previous_status": "active",
    }
    assert ingest() == ("LACCT", None)
    with psycopg.connect(database_url) as conn:
        conn.execute("set local role lic_app")
        conn.execute("select from api.authenticate(secret => %s)", (created["secret_key"],))
        assert conn.execute("select status, status_reason from api.get_account()").fetchone() == (
            "suspended",
            "invoice unpaid",
        )

    reactivated = run_cli("accounts", "reactivate", created["account_id"], env=env)
    assert reactivated.returncode == 0, reactivated.stderr
    assert json.loads(reactivated.stdout)["previous_status"] == "suspended"
    assert ingest() == (None, "1")


def test_suspending_an_unknown_account_exits_naming_it(database_url: str):
    result = run_cli(
        "accounts", "suspend", "00000000-0000-0000-0000-000000000001", env=cli_env(DATABASE_URL=database_url)
    )

    assert result.returncode != 0
    assert "account not found" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_with_an_unusable_mail_url_exits_naming_it(database_url: str):
    result = run_cli(
        "serve",
        env=cli_env(DATABASE_URL=login_url(database_url, WEB_ROLE), LICENTRIC_MAIL_URL="smtp://"),
        timeout=30,
    )

    assert result.returncode != 0
    assert "configuration: LICENTRIC_MAIL_URL" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_serving_on_a_superuser_login_exits_with_the_upgrade_step(database_url: str, command: str):
    """The API and the worker log in as their own roles (issue 12, item 2): an install that served on a
    superuser DATABASE_URL is told what to set instead of starting with a way back to superuser."""
    result = run_cli(command, env=cli_env(DATABASE_URL=database_url), timeout=30)

    assert result.returncode != 0
    role = "lic_web" if command == "serve" else "lic_worker"
    assert f"the database login is 'postgres', but this process must log in as '{role}'" in result.stderr
    assert f"set DATABASE_URL to postgresql://{role}:" in result.stderr
    assert "Traceback" not in result.stderr
