"""`licentric worker` as a real subprocess against a freshly migrated database: it makes the metering
partitions at start, runs the license sweeps, survives a failing job and stops cleanly on a signal."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from licentric.cli import create_account
from licentric.db import WORKER_ROLE, login_url
from licentric.migrate import migrate

from license_helpers import make_policy, superuser
from processes import Server, cli_env, run_cli

# Short intervals, so a test sees several ticks in a second or two.
FAST = {"LICENTRIC_WORKER_SWEEP_INTERVAL": "0.2", "LICENTRIC_WORKER_PARTITION_INTERVAL": "0.2"}


@pytest.fixture(scope="module")
def worker_database(empty_database: Callable[[], str]) -> str:
    """A migrated database of the worker tests' own: the worker sweeps and partitions across tenants."""
    url = empty_database()
    migrate(url)
    return url


def start_worker(database_url: str, logs: Path, **env: str) -> Server:
    return Server(
        ["worker"], cli_env(DATABASE_URL=login_url(database_url, WORKER_ROLE), **{**FAST, **env}), logs
    )


def wait_for(condition: Callable[[], bool], what: str, server: Server, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if server.process.poll() is not None:
            raise AssertionError(f"the worker exited with {server.process.returncode}:\n{server.stderr}")
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s: {what}\n{server.stderr}")


def log_entries(server: Server) -> list[dict[str, Any]]:
    """The worker's JSON log lines."""
    return [json.loads(line) for line in server.stderr.splitlines() if line.startswith("{")]


def month_partition(at: datetime) -> str:
    return f"metering_events_{at:%Y%m}"


def partitions(database_url: str) -> set[str]:
    rows = superuser(
        database_url,
        "select c.relname::text as name from pg_catalog.pg_inherits as i"
        " join pg_catalog.pg_class as c on c.oid = i.inhrelid"
        " where i.inhparent = 'lic.metering_events'::regclass",
    )
    return {row["name"] for row in rows}


def seed_due_licenses(database_url: str) -> dict[str, str]:
    """An active license whose expiry passed and a past_due one whose payment grace ended, in a new
    account, written as the superuser; their ids by name."""
    account_id = create_account(database_url, "Worker test", "free")["account_id"]
    policy = make_policy(database_url, account_id, f"monthly-{account_id[:8]}")
    rows = superuser(
        database_url,
        "insert into lic.licenses (account_id, key, policy_id, status, expires_at, grace_ends_at)"
        " select %(account)s, private.new_license_key(), %(policy)s, s.status, s.expires_at, s.grace_ends_at"
        " from (values ('active', now() - interval '1 hour', null::timestamptz),"
        " ('past_due', now() + interval '20 days', now() - interval '1 minute'))"
        " as s (status, expires_at, grace_ends_at)"
        " returning id::text, status",
        {"account": account_id, "policy": policy},
    )
    return {"lapsed" if row["status"] == "active" else "overdue": row["id"] for row in rows}


def seed_idempotency_keys(database_url: str) -> str:
    """Two stored idempotent responses in a new account: 'stale' from two days ago, 'fresh' from now."""
    account_id = create_account(database_url, "Idempotency test", "free")["account_id"]
    superuser(
        database_url,
        "insert into lic.idempotency_keys (account_id, key, request_fingerprint, response_status, created_at)"
        " values (%(a)s, 'stale', 'fp', 200, now() - interval '2 days'), (%(a)s, 'fresh', 'fp', 200, now())",
        {"a": account_id},
    )
    return account_id


def idempotency_keys(database_url: str, account_id: str) -> list[str]:
    rows = superuser(
        database_url, "select key from lic.idempotency_keys where account_id = %s order by key", (account_id,)
    )
    return [row["key"] for row in rows]


def seed_default_event(database_url: str) -> datetime:
    """A usage event of 40 days ago in a new account, written before any monthly partition exists, so the
    DEFAULT partition (row level security forced) holds it; its instant."""
    account_id = create_account(database_url, "Metering test", "free")["account_id"]
    meter = superuser(
        database_url,
        "insert into lic.meters (account_id, code, name, aggregation)"
        " values (%s, 'tokens', 'Tokens', 'sum') returning id",
        (account_id,),
    )[0]["id"]
    rows = superuser(
        database_url,
        "insert into lic.metering_events (account_id, id, meter_id, subject_key, quantity, occurred_at)"
        " values (%s, 'early', %s, 'u1', 1, now() - interval '40 days')"
        " returning occurred_at, tableoid::regclass::text as place",
        (account_id, meter),
    )
    assert rows[0]["place"] == "lic.metering_events_default"
    return rows[0]["occurred_at"]


def event_place(database_url: str, occurred_at: datetime) -> str:
    rows = superuser(
        database_url,
        "select tableoid::regclass::text as place from lic.metering_events"
        " where id = 'early' and occurred_at = %s",
        (occurred_at,),
    )
    return rows[0]["place"]


def status(database_url: str, license_id: str) -> str:
    return superuser(database_url, "select status from lic.licenses where id = %s", (license_id,))[0][
        "status"
    ]


def event_types(database_url: str, license_id: str) -> list[str]:
    rows = superuser(
        database_url,
        "select type from lic.events where object ->> 'id' = %s order by id",
        (license_id,),
    )
    return [row["type"] for row in rows]


def test_worker_makes_partitions_sweeps_due_licenses_purges_old_keys_and_exits_0_on_sigterm(
    worker_database: str, tmp_path: Path
):
    licenses = seed_due_licenses(worker_database)
    keyed_account = seed_idempotency_keys(worker_database)
    early = seed_default_event(worker_database)
    now = datetime.now(UTC)
    worker = start_worker(worker_database, tmp_path, LICENTRIC_WORKER_SWEEP_INTERVAL="60")
    try:
        # All jobs run at start, whatever their interval.
        wait_for(
            lambda: month_partition(now) in partitions(worker_database), "this month's partition", worker
        )
        wait_for(lambda: status(worker_database, licenses["lapsed"]) == "expired", "the expiry sweep", worker)
        wait_for(
            lambda: status(worker_database, licenses["overdue"]) == "suspended", "the grace sweep", worker
        )
        wait_for(
            lambda: idempotency_keys(worker_database, keyed_account) == ["fresh"],
            "the idempotency-key purge",
            worker,
        )
        stopped_at = time.monotonic()
        returncode = worker.stop(signal.SIGTERM, timeout=10)
    finally:
        worker.kill()

    assert returncode == 0, worker.stderr
    assert time.monotonic() - stopped_at < 5
    assert "Traceback" not in worker.stderr
    # Three months ahead by default: this month and the next three.
    assert len({name for name in partitions(worker_database) if name != "metering_events_default"}) >= 4
    # The event the DEFAULT partition caught moved into its month's partition, made for it.
    assert event_place(worker_database, early) == f"lic.{month_partition(early.astimezone(UTC))}"
    assert event_types(worker_database, licenses["lapsed"]) == ["license.expired"]
    assert event_types(worker_database, licenses["overdue"]) == ["license.suspended"]
    entries = log_entries(worker)
    assert entries[0]["message"] == "worker started"
    assert entries[0]["jobs"] == [
        "expire_licenses",
        "suspend_overdue_licenses",
        "ensure_metering_partitions",
        "purge_idempotency_keys",
        "purge_webhook_deliveries",
    ]
    done = {entry["job"]: entry["done"] for entry in entries if "done" in entry}
    assert done["expire_licenses"] >= 1 and done["suspend_overdue_licenses"] >= 1
    assert done["purge_idempotency_keys"] >= 1
    assert entries[-1]["message"] == "worker stopped"


def test_a_failing_job_is_logged_and_retried_while_the_worker_runs_on(worker_database: str, tmp_path: Path):
    licenses = seed_due_licenses(worker_database)
    revoke = "revoke execute on function worker.expire_licenses(integer) from lic_worker"
    grant = "grant execute on function worker.expire_licenses(integer) to lic_worker"
    superuser(worker_database, revoke)
    try:
        worker = start_worker(worker_database, tmp_path)
        try:

            def failures() -> list[dict[str, Any]]:
                return [
                    e
                    for e in log_entries(worker)
                    if e.get("job") == "expire_licenses" and e["level"] == "error"
                ]

            wait_for(lambda: len(failures()) >= 2, "the failing job logged twice", worker)
            # The other jobs still run.
            wait_for(
                lambda: status(worker_database, licenses["overdue"]) == "suspended", "the grace sweep", worker
            )
            assert status(worker_database, licenses["lapsed"]) == "active"

            superuser(worker_database, grant)
            wait_for(
                lambda: status(worker_database, licenses["lapsed"]) == "expired", "the job's next run", worker
            )
            returncode = worker.stop(signal.SIGTERM, timeout=10)
        finally:
            worker.kill()
    finally:
        superuser(worker_database, grant)

    assert returncode == 0, worker.stderr
    failure = failures()[0]
    assert failure["sqlstate"] == "42501"
    assert "permission denied" in failure["error"]
    assert failure["logger"] == "licentric.worker"
    assert "Traceback" not in worker.stderr


def test_worker_drops_partitions_past_the_retention_and_exits_0_on_ctrl_c(
    worker_database: str, tmp_path: Path
):
    # A partition of a month long gone, made by the upkeep's helper as the upkeep runs it (as a worker
    # would have then).
    with psycopg.connect(worker_database) as conn:
        conn.execute("set role lic_owner")
        conn.execute(
            "select private.ensure_metering_partitions(at => '2020-03-15 00:00:00+00', months_ahead => 0)"
        )
    assert "metering_events_202003" in partitions(worker_database)

    worker = start_worker(worker_database, tmp_path, LICENTRIC_METERING_RETENTION_MONTHS="6")
    try:
        wait_for(
            lambda: "metering_events_202003" not in partitions(worker_database), "the retention drop", worker
        )
        returncode = worker.ctrl_c(timeout=10)
    finally:
        worker.kill()

    assert returncode == 0, worker.stderr
    assert month_partition(datetime.now(UTC)) in partitions(worker_database)
    assert "metering_events_default" in partitions(worker_database)
    assert "drop_metering_partitions" in log_entries(worker)[0]["jobs"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LICENTRIC_METERING_RETENTION_MONTHS", "1"),
        ("LICENTRIC_WORKER_SWEEP_INTERVAL", "0"),
        ("LICENTRIC_WORKER_PARTITION_INTERVAL", "soon"),
        ("LICENTRIC_METERING_PARTITIONS_AHEAD", "121"),
    ],
)
def test_worker_refuses_to_start_with_a_bad_setting(worker_database: str, name: str, value: str):
    result = run_cli("worker", env=cli_env(DATABASE_URL=worker_database, **{name: value}), timeout=30)

    assert result.returncode != 0
    assert name in result.stderr
    assert "Traceback" not in result.stderr


def test_worker_without_database_url_exits_naming_it():
    result = run_cli("worker", env=cli_env(), timeout=30)

    assert result.returncode != 0
    assert "DATABASE_URL is not set" in result.stderr
    assert "Traceback" not in result.stderr


def test_worker_on_an_unreachable_server_exits_with_the_reason():
    result = run_cli(
        "worker", env=cli_env(DATABASE_URL="postgresql://postgres@127.0.0.1:1/nowhere"), timeout=30
    )

    assert result.returncode != 0
    assert result.stderr.startswith("worker: ")
    assert "Traceback" not in result.stderr
