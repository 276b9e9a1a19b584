"""What the rate limits cost on the HTTP hot path (decision 59): wrk against one `licentric serve` process,
GET /v1/account and POST /v1/entitlements/check with a secret key, at 1 and 4 connections, as requests/s.

    .venv/bin/python bench/rate_limits.py

Every request is counted in SQL (service.authenticate_request), so comparing with the code before the
limits moved into Postgres means running this script on both checkouts in turn (PYTHONPATH=<old>/api), with
the limit set out of reach; BENCH_ROUNDS interleaved rounds, the median kept.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg

from licentric.cli import create_account
from licentric.db import WEB_ROLE, login_url
from licentric.migrate import migrate

SERVER_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
PORT = int(os.environ.get("BENCH_PORT", "8765"))


def wrk(url: str, lua: str, connections: int) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(lua)
        script.flush()
        out = subprocess.run(
            ["wrk", "-t", "1", "-c", str(connections), "-d", f"{SECONDS}s", "-s", script.name, url],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"wrk got error responses:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def main() -> None:
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    url = urlunsplit(urlsplit(SERVER_URL)._replace(path="/licentric_bench_rate_limits"))
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        conn.execute("drop database if exists licentric_bench_rate_limits with (force)")
        conn.execute("create database licentric_bench_rate_limits")
    migrate(url)
    account = create_account(url, "bench", "growth")
    env = {
        **os.environ,
        "DATABASE_URL": login_url(url, WEB_ROLE),
        "LICENTRIC_PORT": str(PORT),
        "LICENTRIC_LOG_LEVEL": "WARNING",
        "LICENTRIC_RATE_LIMIT_PER_MINUTE": "100000000",
    }
    server = subprocess.Popen([sys.executable, "-m", "licentric.cli", "serve"], env=env)
    base = f"http://127.0.0.1:{PORT}"
    try:
        for _ in range(100):
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        auth = f'wrk.headers["Authorization"] = "Bearer {account["secret_key"]}"\n'
        check = (
            auth + 'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
            'wrk.body = \'{"entitlement": "feature-1", "customer_external_id": "nobody"}\'\n'
        )
        cases = [
            ("GET /v1/account", f"{base}/v1/account", auth),
            ("POST /v1/entitlements/check", f"{base}/v1/entitlements/check", check),
        ]
        results: dict[tuple[str, int], list[float]] = {}
        for _ in range(ROUNDS):
            for name, target, lua in cases:
                for connections in (1, 4):
                    results.setdefault((name, connections), []).append(wrk(target, lua, connections))
        print(f"wrk, {SECONDS} s, median of {ROUNDS}, one uvicorn process")
        for (name, connections), rates in results.items():
            print(f"{name:30} {connections} conn {statistics.median(rates):8.0f} req/s")
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
