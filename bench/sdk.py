"""The SDK's local entitlement checks against the HTTP check, and the change feed's lag, in one run.

    make bench      (uses TEST_DATABASE_URL's server; builds a scratch database licentric_bench_sdk)

1. Latency (p50/p99) and throughput of `client.entitlements.check("feature-1", customer=...)` answered
   locally (whole-account snapshot), and of the same check over HTTP (POST /v1/entitlements/check) from the
   same process, against a real `licentric serve` on this machine.
2. The feed's lag under CHANGES_PER_SECOND license changes a second (one transaction each, from WRITERS
   threads): from each change's commit to the moment the SDK's feed applied it, p50/p99.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg

from licentric.cli import create_account
from licentric.db import WEB_ROLE, login_url
from licentric.migrate import migrate
from licentric_sdk import Licentric, LocalOptions

SERVER_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
CUSTOMERS = 2000
LOCAL_CHECKS = 200_000
HTTP_CHECKS = int(os.environ.get("BENCH_HTTP_CHECKS", "2000"))
CHANGES_PER_SECOND = 200
FEED_SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
WRITERS = 4
ROOT = Path(__file__).resolve().parents[1]

SEED = """
insert into lic.entitlements (account_id, code, name)
select %(account)s, 'feature-' || i, 'Feature ' || i from generate_series(1, 5) as i;
insert into lic.license_policies (account_id, code, name, duration)
values (%(account)s, 'pro', 'Pro', '1 year');
insert into lic.policy_entitlements (account_id, policy_id, entitlement_id)
select p.account_id, p.id, e.id from lic.license_policies as p join lic.entitlements as e using (account_id)
where p.account_id = %(account)s;
insert into lic.customers (account_id, external_id)
select %(account)s, 'cust-' || i from generate_series(1, %(n)s) as i;
insert into lic.licenses (account_id, key, policy_id, customer_id, expires_at)
select c.account_id, private.new_license_key(), p.id, c.id, now() + interval '1 year'
from lic.customers as c join lic.license_policies as p using (account_id) where c.account_id = %(account)s;
"""


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return ordered[len(ordered) // 2], ordered[int(len(ordered) * 0.99)]


def serve(url: str) -> tuple[subprocess.Popen[bytes], str]:
    port = 18000 + os.getpid() % 1000
    env = {
        **os.environ,
        "DATABASE_URL": login_url(url, WEB_ROLE),
        "LICENTRIC_PORT": str(port),
        "LICENTRIC_LOG_LEVEL": "WARNING",
        "LICENTRIC_RATE_LIMIT_PER_MINUTE": "100000000",
    }
    server = subprocess.Popen([sys.executable, "-m", "licentric.cli", "serve"], env=env, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if httpx.get(f"{base}/healthz").status_code == 200:
                return server, base
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit("licentric serve did not start")


def checks(account: dict[str, str], base: str) -> None:
    customers = [f"cust-{i % CUSTOMERS + 1}" for i in range(LOCAL_CHECKS)]
    with Licentric(account["secret_key"], base_url=base, local=LocalOptions()) as local:
        check = local.entitlements.check
        assert check("feature-1", customer="cust-1").allowed
        timings = []
        clock = time.perf_counter_ns
        for customer in customers:
            started = clock()
            check("feature-1", customer=customer)
            timings.append(clock() - started)
        started = time.perf_counter()
        for customer in customers:
            check("feature-1", customer=customer)
        local_rate = LOCAL_CHECKS / (time.perf_counter() - started)
        stats = local.entitlements.local.stats()
    with Licentric(account["secret_key"], base_url=base) as remote:
        http_timings = []
        started = time.perf_counter()
        for customer in customers[:HTTP_CHECKS]:
            t = time.perf_counter_ns()
            remote.entitlements.check("feature-1", customer=customer)
            http_timings.append(time.perf_counter_ns() - t)
        http_rate = HTTP_CHECKS / (time.perf_counter() - started)
    p50, p99 = percentiles([t / 1000 for t in timings])
    h50, h99 = percentiles([t / 1000 for t in http_timings])
    print(
        f"local check  ({LOCAL_CHECKS} checks)  p50 {p50:8.2f} µs  p99 {p99:8.2f} µs  {local_rate:10,.0f}/s"
    )
    print(
        f"HTTP check   ({HTTP_CHECKS} checks)    p50 {h50:8.2f} µs  p99 {h99:8.2f} µs  {http_rate:10,.0f}/s"
    )
    print(
        f"local / HTTP: latency p50 {h50 / p50:,.0f}x lower, throughput {local_rate / http_rate:,.0f}x higher"
    )
    print(f"  (hits {stats.hits}, misses {stats.misses}, stale {stats.stale})")


def feed_lag(url: str, account: dict[str, str], base: str) -> None:
    with psycopg.connect(url) as conn:
        licenses = dict(
            conn.execute(
                "select c.external_id, l.id from lic.customers c join lic.licenses l"
                " on l.account_id = c.account_id and l.customer_id = c.id where c.account_id = %s",
                (account["account_id"],),
            ).fetchall()
        )
    applied: dict[str, float] = {}
    committed: dict[str, float] = {}
    with Licentric(account["secret_key"], base_url=base, local=LocalOptions(wait=10)) as client:
        decisions = client.entitlements.local.decisions
        apply = decisions.apply

        def timed_apply(page):  # when each customer's change reached the SDK
            apply(page)
            now = time.monotonic()
            for entry in page.data:
                applied.setdefault(entry.customer, now)

        decisions.apply = timed_apply
        names = sorted(licenses)
        interval = WRITERS / CHANGES_PER_SECOND
        count = min(CHANGES_PER_SECOND * FEED_SECONDS, len(names))

        def write(offset: int) -> None:
            with psycopg.connect(url, autocommit=True) as conn:
                next_at = time.monotonic()
                for name in names[offset:count:WRITERS]:
                    time.sleep(max(0.0, next_at - time.monotonic()))
                    next_at += interval
                    with conn.transaction():
                        conn.execute("select from api.authenticate(secret => %s)", (account["secret_key"],))
                        conn.execute(
                            "select from api.set_license_entitlement(%s, 'feature-1', 'revoke')",
                            (licenses[name],),
                        )
                    committed[name] = time.monotonic()

        started = time.monotonic()
        writers = [threading.Thread(target=write, args=(i,)) for i in range(WRITERS)]
        for w in writers:
            w.start()
        for w in writers:
            w.join()
        rate = count / (time.monotonic() - started)
        deadline = time.monotonic() + 60
        while len([n for n in committed if n in applied]) < len(committed) and time.monotonic() < deadline:
            time.sleep(0.05)
    lags = [(applied[n] - committed[n]) * 1000 for n in committed if n in applied]
    p50, p99 = percentiles(lags)
    print(
        f"feed lag, {rate:.0f} changes/s for {FEED_SECONDS} s ({len(lags)}/{len(committed)} applied):"
        f"  p50 {p50:7.1f} ms  p99 {p99:7.1f} ms  max {max(lags):7.1f} ms"
        f"  mean {statistics.mean(lags):7.1f} ms"
    )


def main() -> None:
    url = urlunsplit(urlsplit(SERVER_URL)._replace(path="/licentric_bench_sdk"))
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        conn.execute("drop database if exists licentric_bench_sdk with (force)")
        conn.execute("create database licentric_bench_sdk")
    migrate(url)
    account = create_account(url, "bench", "growth")
    with psycopg.connect(url) as conn:
        psycopg.ClientCursor(conn).execute(SEED, {"account": account["account_id"], "n": CUSTOMERS})
        conn.execute("analyze")
    server, base = serve(url)
    try:
        print(f"SDK local evaluation vs HTTP, {CUSTOMERS} customers, one licentric serve on this machine")
        checks(account, base)
        feed_lag(url, account, base)
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main()
