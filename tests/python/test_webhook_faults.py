"""Webhook delivery under faults, with `licentric worker` as a real subprocess and a real receiver
(webhook_receiver.py): killed with SIGKILL mid-delivery and restarted, nothing is lost; two workers at
once never have one delivery in flight twice; Postgres restarted under a running worker, it reconnects by
itself (against a throwaway cluster of its own: the shared server on 5432 is never restarted)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from licentric.cli import create_account
from licentric.crypto import SecretBox
from licentric.db import WORKER_ROLE, login_url
from licentric.migrate import migrate

from license_helpers import superuser
from processes import Server, cli_env, free_port
from webhook_receiver import Receiver, Reply

SECRET_KEY = bytes(range(32, 64))
# Short lease and timeout, so a delivery a killed worker held is due again in seconds.
FAST = {
    "LICENTRIC_SECRET_KEY": base64.b64encode(SECRET_KEY).decode(),
    "LICENTRIC_WEBHOOK_ALLOW_PRIVATE_TARGETS": "true",
    "LICENTRIC_WEBHOOK_POLL_INTERVAL": "0.5",
    "LICENTRIC_WEBHOOK_TIMEOUT": "2",
    "LICENTRIC_WEBHOOK_LEASE": "3",
    "LICENTRIC_WORKER_SWEEP_INTERVAL": "60",
    "LICENTRIC_LOG_LEVEL": "DEBUG",
}


@pytest.fixture
def faults_database(empty_database: Callable[[], str]) -> str:
    """A migrated database of this test's own: the workers claim across every tenant in it."""
    url = empty_database()
    migrate(url)
    return url


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver().start()
    try:
        yield receiver
    finally:
        receiver.stop()


def start_worker(database_url: str, logs: Path, **env: str) -> Server:
    return Server(
        ["worker"], cli_env(DATABASE_URL=login_url(database_url, WORKER_ROLE), **{**FAST, **env}), logs
    )


def make_endpoint(database_url: str, account: dict[str, str], url: str) -> str:
    """An endpoint made as a request makes it (lic_app, the tenant's key, the secret encrypted)."""
    secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    ciphertext = SecretBox(SECRET_KEY).encrypt(secret, account["account_id"], "webhook_endpoint_secret")
    with psycopg.connect(database_url) as conn:
        conn.execute("set role lic_app")
        conn.execute("select from api.authenticate(secret => %s)", (account["secret_key"],))
        row = conn.execute(
            "select id::text from api.create_webhook_endpoint(url => %s, secret_ciphertext => %s,"
            " event_types => '{license.suspended}')",
            (url, ciphertext),
        ).fetchone()
    return row[0]


def emit(database_url: str, account_id: str, count: int) -> list[str]:
    """count license.suspended events, emitted as a state change emits them (the fan-out runs); ids."""
    rows = superuser(
        database_url,
        "select private.emit_event(%s, 'license.suspended',"
        " jsonb_build_object('object', 'license', 'id', gen_random_uuid()))::text as id"
        " from generate_series(1, %s)",
        (account_id, count),
    )
    return [row["id"] for row in rows]


def statuses(database_url: str) -> dict[str, int]:
    rows = superuser(
        database_url, "select status, count(*)::int as n from lic.webhook_deliveries group by status"
    )
    return {row["status"]: row["n"] for row in rows}


def wait_for(condition: Callable[[], bool], what: str, servers: list[Server], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        for server in servers:
            if server.process.poll() is not None:
                raise AssertionError(f"a worker exited with {server.process.returncode}:\n{server.stderr}")
        time.sleep(0.05)
    logs = "\n".join(server.stderr[-3000:] for server in servers)
    raise AssertionError(f"not within {timeout} s: {what}\n{logs}")


def log_entries(server: Server) -> list[dict[str, Any]]:
    return [json.loads(line) for line in server.stderr.splitlines() if line.startswith("{")]


def test_a_worker_killed_mid_delivery_loses_nothing_once_restarted(
    faults_database: str, receiver: Receiver, tmp_path: Path
):
    account = create_account(faults_database, "Faults", "free")
    for n in range(3):
        make_endpoint(faults_database, account, receiver.url(f"/slow/{n}"))
        receiver.default(f"/slow/{n}", Reply(delay=0.4))
    events = emit(faults_database, account["account_id"], 10)

    # One send per endpoint at a time (a quarter of four slots): rounds of three sends of 0.4 s.
    first = start_worker(faults_database, tmp_path / "first", LICENTRIC_WEBHOOK_CONCURRENCY="4")
    try:
        # Kill it while it has sends in flight and has recorded some.
        wait_for(
            lambda: (
                statuses(faults_database).get("succeeded", 0) >= 3
                and len(receiver.requests()) > len(receiver.answered())
            ),
            "sends in flight after a few recorded",
            [first],
        )
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(10)
    finally:
        first.kill()
    killed_at = time.monotonic()
    interrupted = [r for r in receiver.requests() if r.ended is None or r.ended > killed_at]
    assert interrupted, "the kill found no send in flight"
    before = statuses(faults_database)
    assert before.get("pending", 0) > 0

    second = start_worker(faults_database, tmp_path / "second")
    try:
        wait_for(lambda: statuses(faults_database) == {"succeeded": 30}, "all 30 delivered", [second])
        assert second.stop(signal.SIGTERM, timeout=15) == 0
    finally:
        second.kill()

    # Every (endpoint, event) reached its receiver at least once; the ones the kill interrupted again.
    received = {(r.path, r.event_id) for r in receiver.answered()}
    assert received == {(f"/slow/{n}", event) for n in range(3) for event in events}
    assert len(receiver.requests()) >= 30
    assert "Traceback" not in second.stderr


def test_two_workers_at_once_never_have_one_delivery_in_flight_twice(
    faults_database: str, receiver: Receiver, tmp_path: Path
):
    account = create_account(faults_database, "Two workers", "free")
    for n in range(4):
        make_endpoint(faults_database, account, receiver.url(f"/pair/{n}"))
        receiver.default(f"/pair/{n}", Reply(delay=0.05))
    emit(faults_database, account["account_id"], 50)

    workers = [start_worker(faults_database, tmp_path / name) for name in ("a", "b")]
    try:
        wait_for(lambda: statuses(faults_database) == {"succeeded": 200}, "all 200 delivered", workers)
        for worker in workers:
            assert worker.stop(signal.SIGTERM, timeout=15) == 0
    finally:
        for worker in workers:
            worker.kill()

    requests = receiver.requests()
    # Never two requests for one delivery at the same time; and, as no lease ran out, one each.
    assert set(receiver.max_concurrent.values()) == {1}
    assert len(requests) == 200
    assert len({(r.path, r.event_id) for r in requests}) == 200
    # Both workers sent some.
    for worker in workers:
        sent = [e for e in log_entries(worker) if e.get("outcome") == "succeeded"]
        assert sent, worker.stderr[-2000:]
    assert sum(len([e for e in log_entries(w) if e.get("outcome") == "succeeded"]) for w in workers) == 200


# A PostgreSQL cluster of the test's own, to restart under the worker.

PG_BIN = next(
    (
        path
        for path in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
        if (path / "pg_ctl").exists()
    ),
    None,
)


class Cluster:
    """A throwaway cluster (Debian's initdb and pg_ctl) in a temporary directory, on a free port; run as
    the postgres system user when the tests run as root (the server refuses root)."""

    def __init__(self) -> None:
        assert PG_BIN is not None
        self.dir = Path(tempfile.mkdtemp(prefix="licentric-pg-"))
        self.dir.chmod(0o755)
        self.data = self.dir / "data"
        self.port = free_port()
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            self._as = ["runuser", "-u", "postgres", "--"]
        else:
            self._as = []
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*self._as, str(PG_BIN / tool), *args], check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-w", "-l", str(self.dir / "log"), "-o", options, "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-w", "-m", "fast", "stop")

    def remove(self) -> None:
        with_server = (self.data / "postmaster.pid").exists()
        if with_server:
            subprocess.run(
                [*self._as, str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    if PG_BIN is None:
        pytest.skip("no PostgreSQL server binaries under /usr/lib/postgresql")
    made = Cluster()
    try:
        made.start()
        yield made
    finally:
        made.remove()


@pytest.mark.own_postgres
def test_the_worker_reconnects_by_itself_when_postgres_restarts(
    cluster: Cluster, receiver: Receiver, tmp_path: Path
):
    migrate(cluster.url)
    account = create_account(cluster.url, "Restart", "free")
    make_endpoint(cluster.url, account, receiver.url("/hooks"))
    # Polling slower than the test waits: a delivery after the restart proves the LISTEN came back.
    worker = start_worker(cluster.url, tmp_path / "worker", LICENTRIC_WEBHOOK_POLL_INTERVAL="30")
    try:
        [before] = emit(cluster.url, account["account_id"], 1)
        wait_for(lambda: len(receiver.answered()) == 1, "the delivery before the restart", [worker])
        wait_for(lambda: statuses(cluster.url) == {"succeeded": 1}, "its record", [worker])

        cluster.stop()
        time.sleep(1.5)  # the worker finds it gone: its listener and pool fail and retry
        cluster.start()
        wait_for(
            lambda: any(e.get("message") == "webhook listener reconnected" for e in log_entries(worker)),
            "the listener reconnected",
            [worker],
        )

        [after] = emit(cluster.url, account["account_id"], 1)
        wait_for(
            lambda: len(receiver.answered()) == 2, "the delivery after the restart", [worker], timeout=10
        )
        wait_for(lambda: statuses(cluster.url) == {"succeeded": 2}, "its record", [worker])
        assert worker.stop(signal.SIGTERM, timeout=15) == 0
    finally:
        worker.kill()

    assert [r.event_id for r in receiver.answered()] == [before, after]
    messages = [e["message"] for e in log_entries(worker)]
    assert "webhook listener lost its connection; reconnecting" in messages
    assert "Traceback" not in worker.stderr


def test_a_worker_without_a_secret_key_runs_its_jobs_and_says_delivery_is_off(
    faults_database: str, receiver: Receiver, tmp_path: Path
):
    account = create_account(faults_database, "No key", "free")
    make_endpoint(faults_database, account, receiver.url("/unsigned"))
    emit(faults_database, account["account_id"], 1)

    worker = start_worker(faults_database, tmp_path, LICENTRIC_SECRET_KEY="")
    try:
        wait_for(
            lambda: any("webhook delivery is off" in e["message"] for e in log_entries(worker)),
            "the warning",
            [worker],
        )
        time.sleep(1)
        assert worker.stop(signal.SIGTERM, timeout=15) == 0
    finally:
        worker.kill()

    # Nothing was sent unsigned; the delivery waits for a worker that can sign it.
    assert receiver.requests() == []
    assert statuses(faults_database) == {"pending": 1}
