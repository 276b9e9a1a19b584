"""Helpers for the machine, seat, agent and event tests: license policies,
customers and licenses made straight in SQL (so these tests do not depend on
the policy and license routes), and the app behind a real server for
concurrency tests."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import uvicorn
from psycopg.rows import dict_row

from licentric.app import create_app


def as_account(
    database_url: str, secret_key: str, statement: str, params: Any = None
) -> list[dict[str, Any]]:
    """Run one statement in one committed transaction authenticated with the key."""
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        conn.execute("select from api.authenticate(secret => %s)", (secret_key,))
        rows = conn.execute(statement, params).fetchall()
    return rows


def superuser(database_url: str, statement: str, params: Any = None) -> list[dict[str, Any]]:
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else []


def make_policy(database_url: str, account_id: str, **fields: Any) -> str:
    """A license policy written as the superuser (max_machines, max_users, heartbeat_interval …); its code."""
    code = f"p-{uuid.uuid4().hex[:12]}"
    columns = {"account_id": account_id, "code": code, "name": code, **fields}
    names = ", ".join(columns)
    values = ", ".join(f"%({name})s" for name in columns)
    superuser(database_url, f"insert into lic.license_policies ({names}) values ({values})", columns)
    return code


def make_customer(
    database_url: str, account_id: str, email: str | None = None, name: str | None = None
) -> str:
    rows = superuser(
        database_url,
        "insert into lic.customers (account_id, email, name) values (%s, %s, %s) returning id::text",
        (account_id, email, name),
    )
    return rows[0]["id"]


def make_license(database_url: str, secret_key: str, policy_code: str, customer_id: str | None = None) -> str:
    rows = as_account(
        database_url,
        secret_key,
        "select id::text from api.create_license(policy_code => %s, customer_id => %s)",
        (policy_code, customer_id),
    )
    return rows[0]["id"]


@contextmanager
def live_server(settings: Any) -> Iterator[str]:
    """The app behind a real uvicorn on a free port, so that concurrent requests
    really run concurrently (the test client hands the app one request at a time)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
