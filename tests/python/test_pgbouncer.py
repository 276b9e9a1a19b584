"""What docs/operations.md claims about transaction pooling, behind a real PgBouncer (Debian's
`pgbouncer`, installed by .ci/run): in `pool_mode = transaction` with one server connection per pool, clients
take turns on the same server session, and still no tenant context passes from one client to the next —
not even one copied into session-level settings (decision 53) — while a bound login keeps its own pool and
account (decision 52)."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from conftest import Account

from processes import cli_env, free_port, run_cli

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
COPY_CONTEXT = (
    "select set_config(name, current_setting(name), false) from unnest(array["
    "'lic.account_id', 'lic.key_kind', 'lic.principal_id', 'lic.context_signature']) as name"
)


@pytest.fixture
def bound_login(database_url: str, account: Account) -> Iterator[str]:
    result = run_cli("accounts", "login", account.id, env=cli_env(DATABASE_ADMIN_URL=database_url))
    assert result.returncode == 0, result.stderr
    role = json.loads(result.stdout)["role"]
    yield role
    run_cli("accounts", "login", account.id, "--drop", env=cli_env(DATABASE_ADMIN_URL=database_url))


@pytest.fixture
def pgbouncer(database_url: str, bound_login: str) -> Iterator[str]:
    """A PgBouncer in transaction mode with ONE server connection per user, in front of the test database;
    the DSN of its database `licentric` without a user."""
    # PgBouncer refuses to run as root; -u drops to the server's own user, who must own its files.
    as_root = os.geteuid() == 0
    files = Path(tempfile.mkdtemp(prefix="licentric-pgbouncer-"))
    if as_root:
        os.chown(files, pwd.getpwnam("postgres").pw_uid, -1)
    target = urlsplit(database_url)
    port = free_port()
    users = ["lic_app", bound_login]
    (files / "users.txt").write_text("".join(f'"{user}" ""\n' for user in users))
    (files / "pgbouncer.ini").write_text(
        f"""[databases]
licentric = host={target.hostname} port={target.port or 5432} dbname={target.path.lstrip("/")}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {files / "users.txt"}
pool_mode = transaction
default_pool_size = 1
max_client_conn = 20
logfile = {files / "pgbouncer.log"}
pidfile = {files / "pgbouncer.pid"}
"""
    )
    process = subprocess.Popen(
        [PGBOUNCER, *(["-u", "postgres"] if as_root else []), str(files / "pgbouncer.ini")]
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    log = files / "pgbouncer.log"
                    raise AssertionError(
                        f"pgbouncer did not start:\n{log.read_text() if log.exists() else ''}"
                    ) from None
                time.sleep(0.1)
        yield f"host=127.0.0.1 port={port} dbname=licentric"
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(files)


def server_pid(conn: psycopg.Connection) -> int:
    return conn.execute("select pg_backend_pid()").fetchone()[0]


def sqlstate_of(conn: psycopg.Connection, statement: str) -> str | None:
    try:
        conn.execute(statement)
    except psycopg.Error as exc:
        return exc.sqlstate
    return None


def test_no_context_passes_between_clients_of_one_pooled_server_connection(pgbouncer: str, account: Account):
    with (
        psycopg.connect(f"{pgbouncer} user=lic_app", autocommit=True, prepare_threshold=None) as first,
        psycopg.connect(f"{pgbouncer} user=lic_app", autocommit=True, prepare_threshold=None) as second,
    ):
        assert server_pid(first) == server_pid(second), "one server connection serves both clients"

        with first.transaction():
            first.execute("select from api.authenticate(secret => %s)", (account.secret_key,))
            assert first.execute("select (api.get_account()).id::text").fetchone()[0] == account.id
        assert sqlstate_of(second, "select api.get_account()") == "LAUTH"

        # Copied to session level, the settings stay on the server connection for the next client ...
        with first.transaction():
            first.execute("select from api.authenticate(secret => %s)", (account.secret_key,))
            first.execute(COPY_CONTEXT)
        assert second.execute("select current_setting('lic.account_id')").fetchone()[0] == account.id
        # ... and verify in none of its transactions: the signature was bound to another transaction's start.
        assert sqlstate_of(second, "select api.get_account()") == "LAUTH"
        assert sqlstate_of(first, "select api.get_account()") == "LAUTH"


def test_a_bound_login_keeps_its_account_behind_the_pooler(
    pgbouncer: str, bound_login: str, account: Account
):
    with (
        psycopg.connect(f"{pgbouncer} user={bound_login}", autocommit=True, prepare_threshold=None) as bound,
        psycopg.connect(f"{pgbouncer} user=lic_app", autocommit=True, prepare_threshold=None) as keyless,
    ):
        assert server_pid(bound) != server_pid(keyless), "PgBouncer pools per user"
        for _ in range(3):
            assert bound.execute("select (api.get_account()).id::text").fetchone()[0] == account.id
            assert sqlstate_of(keyless, "select api.get_account()") == "LAUTH"
