"""Benchmarks, each printed as a ratio against raw PostgreSQL measured in the same run.

    make bench      (uses TEST_DATABASE_URL's server; builds a scratch database licentric_bench)

authenticate+get_account: one request's database work (api.authenticate, then api.get_account, in one
transaction as lic_app) against the same number of raw primary-key selects in one transaction, as a
superuser with no RLS, on the same connection settings."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import psycopg

from licentric.cli import create_account
from licentric.migrate import migrate

SERVER_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3000"))


def rate(work: Callable[[], None], rounds: int = ROUNDS) -> float:
    for _ in range(200):  # warm plans and caches
        work()
    started = time.perf_counter()
    for _ in range(rounds):
        work()
    return rounds / (time.perf_counter() - started)


def main() -> None:
    url = urlunsplit(urlsplit(SERVER_URL)._replace(path="/licentric_bench"))
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        conn.execute("drop database if exists licentric_bench with (force)")
        conn.execute("create database licentric_bench")
    migrate(url)
    for i in range(1000):  # other tenants, so lookups are not on a one-row table
        create_account(url, f"tenant {i}", "free")
    account = create_account(url, "bench", "growth")

    with psycopg.connect(url) as raw, psycopg.connect(url) as app:
        app.execute("set role lic_app")
        app.commit()

        account_id = account["account_id"]

        def raw_request() -> None:
            with raw.transaction():
                raw.execute(
                    "select * from lic.api_keys"
                    " where account_id = %s and key_hash = sha256(convert_to(%s, 'UTF8'))",
                    (account_id, account["secret_key"]),
                )
                raw.execute("select * from lic.accounts where account_id = %s", (account_id,))

        def api_request() -> None:
            with app.transaction():
                app.execute("select from api.authenticate(secret => %s)", (account["secret_key"],))
                app.execute("select * from api.get_account()")

        raw_rate = rate(raw_request)
        api_rate = rate(api_request)
    print(f"raw: key-hash select + account select per tx     {raw_rate:8.0f} tx/s")
    print(f"api: authenticate + get_account per transaction  {api_rate:8.0f} tx/s")
    print(f"ratio api/raw: {api_rate / raw_rate:.2f}")


if __name__ == "__main__":
    main()
