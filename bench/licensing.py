"""The licensing hot path, measured against raw PostgreSQL in the same run.

    make bench

1. pgbench, the two ways a trusted backend calls Licentric (decision 52), prepared
   statements, RLS active: as lic_app, api.authenticate(key) + one call in a
   transaction; as the account's bound login (lic_tenant_<hex>), the call
   alone. Compared with the floor of issue 12: `begin; set_config(...); one
   primary-key lookup (no RLS); commit`, and with plain `pgbench -S`, at 1 and
   8 clients; each figure the median of 3 runs interleaved across the scripts.
2. wrk, over HTTP: POST /v1/licenses/validate against GET /v1/account (a
   trivial authenticated endpoint of the same app), 16 connections: requests/s
   and p99 latency.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg

from licentric.cli import create_account
from licentric.db import WEB_ROLE, login_url
from licentric.migrate import migrate

SERVER_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
LICENSES = 2000
ROOT = Path(__file__).resolve().parents[1]

SEED = """
insert into lic.entitlements (account_id, code, name)
select %(account)s, 'feature-' || i, 'Feature ' || i from generate_series(1, 20) as i;
insert into lic.license_policies (account_id, code, name, duration, max_machines, max_users)
values (%(account)s, 'pro', 'Pro', interval '1 year', 5, 10);
insert into lic.policy_entitlements (account_id, policy_id, entitlement_id)
select p.account_id, p.id, e.id from lic.license_policies as p join lic.entitlements as e using (account_id)
where p.account_id = %(account)s and e.code = any(array['feature-1', 'feature-2', 'feature-3', 'feature-4',
  'feature-5']);
insert into lic.customers (account_id, email, external_id)
select %(account)s, 'user' || i || '@example.com', 'cust-' || i from generate_series(1, %(n)s) as i;
insert into lic.licenses (account_id, key, policy_id, customer_id, expires_at)
select c.account_id, private.new_license_key(), p.id, c.id, now() + interval '1 year'
from lic.customers as c join lic.license_policies as p using (account_id) where c.account_id = %(account)s;
insert into lic.license_users (account_id, license_id, customer_id, role)
select account_id, id, customer_id, 'owner' from lic.licenses where account_id = %(account)s;
-- Some per-license overrides, as real tenants have.
insert into lic.license_entitlements (account_id, license_id, entitlement_id, effect)
select l.account_id, l.id, e.id, case when e.code = 'feature-6' then 'grant' else 'revoke' end
from lic.licenses as l join lic.entitlements as e using (account_id)
where l.account_id = %(account)s and e.code in ('feature-6', 'feature-5') and right(l.key, 1) < 'M';
create table public.bench_keys (n integer primary key, key text not null);
insert into public.bench_keys
select row_number() over (order by id), key from lic.licenses where account_id = %(account)s;
grant select on public.bench_keys to lic_app;
"""

# Who runs each script: the shared tenant-backend role with a key, or the account's bound login.
KEYED, BOUND = "lic_app", "bound"

SCRIPTS = {
    "floor: set_config + 1 PK lookup": (
        KEYED,
        """
\\set n random(1, {n})
begin;
select set_config('bench.context', :secret, true);
select key from public.bench_keys where n = :n;
commit;
""",
    ),
    "key: authenticate + check_entitlement": (
        KEYED,
        """
\\set n random(1, {n})
begin;
select from api.authenticate(secret => :secret);
select * from api.check_entitlement(
  entitlement => 'feature-2', customer_external_id => 'cust-' || (:n)::text
);
commit;
""",
    ),
    "bound login: check_entitlement": (
        BOUND,
        """
\\set n random(1, {n})
begin;
select * from api.check_entitlement(
  entitlement => 'feature-2', customer_external_id => 'cust-' || (:n)::text
);
commit;
""",
    ),
    "key: authenticate + validate_license": (
        KEYED,
        """
\\set n random(1, {n})
begin;
select from api.authenticate(secret => :secret);
select * from api.validate_license(key => (select key from public.bench_keys where n = :n),
  entitlements => array['feature-1', 'feature-2']);
commit;
""",
    ),
    "bound login: validate_license": (
        BOUND,
        """
\\set n random(1, {n})
begin;
select * from api.validate_license(key => (select key from public.bench_keys where n = :n),
  entitlements => array['feature-1', 'feature-2']);
commit;
""",
    ),
}
RUNS = 3


def pgbench(url: str, script: str | None, clients: int, user: str | None = None, secret: str = "") -> float:
    args = [
        "pgbench",
        "-n",
        "-M",
        "prepared",
        "-T",
        str(SECONDS),
        "-c",
        str(clients),
        "-j",
        str(min(clients, 2)),
    ]
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        if script is None:
            args += ["-S"]
        else:
            f.write(script)
            args += ["-f", f.name, "-D", f"secret={secret}"]
    target = urlsplit(url)
    if user:
        target = target._replace(netloc=f"{user}@{target.hostname}:{target.port or 5432}")
    args.append(urlunsplit(target))
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    os.unlink(f.name)
    return float(re.search(r"tps = ([0-9.]+)", out).group(1))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wrk(url: str, lua: str) -> tuple[float, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(lua)
    out = subprocess.run(
        ["wrk", "-t", "2", "-c", "16", "-d", f"{SECONDS}s", "--latency", "-s", f.name, url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    os.unlink(f.name)
    rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1))
    value, unit = re.search(r"99%\s+([0-9.]+)(us|ms|s)", out).groups()
    p99_ms = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise SystemExit(f"wrk got {non2xx.group(1)} error responses:\n{out}")
    return rps, p99_ms


def main() -> None:
    url = urlunsplit(urlsplit(SERVER_URL)._replace(path="/licentric_bench_licensing"))
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        conn.execute("drop database if exists licentric_bench_licensing with (force)")
        conn.execute("create database licentric_bench_licensing")
    migrate(url)
    for i in range(200):  # other tenants share the tables
        create_account(url, f"tenant {i}", "free")
    account = create_account(url, "bench", "growth")
    with psycopg.connect(url) as conn:
        # Client-side binding: the seed is several statements.
        psycopg.ClientCursor(conn).execute(SEED, {"account": account["account_id"], "n": LICENSES})
        conn.execute("analyze")
    subprocess.run(["pgbench", "-i", "-q", "-s", "10", url], check=True, capture_output=True)

    with psycopg.connect(url, autocommit=True) as conn:
        bound = conn.execute(
            "select private.create_account_login(account_id => %s, password => null)",
            (account["account_id"],),
        ).fetchone()[0]
        conn.execute(f"grant select on public.bench_keys to {bound}")
    users = {KEYED: KEYED, BOUND: bound}

    print(f"pgbench, {SECONDS} s each, prepared statements, median of {RUNS} interleaved runs")
    print(f"{'script':40} {'clients':>7} {'tps':>9} {'/floor':>7} {'/-S':>6}")
    for clients in (1, 8):
        runs: dict[str, list[float]] = {name: [] for name in ["pgbench -S", *SCRIPTS]}
        for _ in range(RUNS):
            runs["pgbench -S"].append(pgbench(url, None, clients))
            for name, (who, script) in SCRIPTS.items():
                tps = pgbench(url, script.format(n=LICENSES), clients, users[who], account["secret_key"])
                runs[name].append(tps)
        tps = {name: statistics.median(values) for name, values in runs.items()}
        floor, plain = tps[next(iter(SCRIPTS))], tps["pgbench -S"]
        for name in SCRIPTS:
            print(f"{name:40} {clients:7} {tps[name]:9.0f} {tps[name] / floor:7.2f} {tps[name] / plain:6.2f}")
        print(f"{'pgbench -S':40} {clients:7} {plain:9.0f}")

    if not shutil.which("wrk"):
        print("wrk is not installed (Debian: apt-get install wrk); skipping the HTTP benchmark")
        return
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": login_url(url, WEB_ROLE),
        "LICENTRIC_PORT": str(port),
        "LICENTRIC_LOG_LEVEL": "WARNING",
        "LICENTRIC_RATE_LIMIT_PER_MINUTE": "100000000",
    }
    server = subprocess.Popen([sys.executable, "-m", "licentric.cli", "serve"], env=env, cwd=ROOT)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        with psycopg.connect(url) as conn:
            key = conn.execute("select key from public.bench_keys where n = 1").fetchone()[0]
        auth = f'wrk.headers["Authorization"] = "Bearer {account["secret_key"]}"\n'
        trivial = wrk(f"{base}/v1/account", auth)
        validate = wrk(
            f"{base}/v1/licenses/validate",
            auth + 'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
            f'wrk.body = \'{{"key": "{key}", "entitlements": ["feature-1"]}}\'\n',
        )
        print(f"\nwrk, 16 connections, {SECONDS} s, one uvicorn process")
        print(f"GET /v1/account (trivial)      {trivial[0]:8.0f} req/s  p99 {trivial[1]:6.1f} ms")
        print(f"POST /v1/licenses/validate     {validate[0]:8.0f} req/s  p99 {validate[1]:6.1f} ms")
        print(
            f"ratio validate/trivial: throughput {validate[0] / trivial[0]:.2f},"
            f" p99 {validate[1] / trivial[1]:.2f}"
        )
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
