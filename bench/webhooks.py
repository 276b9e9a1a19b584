"""Outbound webhooks on loopback: state change -> delivery latency, and deliveries per second with one and
two workers.

    make bench      (uses TEST_DATABASE_URL's server; builds and drops a scratch database)

The receiver is an aiohttp server in this process on 127.0.0.1 answering 200 "ok" at once; the workers are
`licentric worker` subprocesses (default settings: 64 sends in flight, LISTEN/NOTIFY with a 5 s poll
fallback; private targets allowed, as loopback needs).

1. Latency: with one worker idle, BENCH_WEBHOOKS_LATENCY_ROUNDS (default 300) licenses are suspended one at
   a time through api.suspend_license as lic_app (api.authenticate first, as a request does), 20 ms apart.
   Each suspension's fan-out makes a delivery to one endpoint in the same transaction; the latency is from
   the commit returning to the request reaching the receiver (both clocks are this process's).
2. Throughput: BENCH_WEBHOOKS_DELIVERIES (default 10,000) deliveries made in one transaction (events emitted
   as superuser, fanned out to BENCH_WEBHOOKS_ENDPOINTS endpoints, default 8, of 8 tenants) while the workers
   are running and idle; deliveries/s is their number over the time from that commit until the last
   attempt is recorded as succeeded. With 1 worker and with 2; and with 1 worker and a single endpoint
   (which a worker sends to at most 16 at a time, a quarter of its slots).
3. The claim alone (decision 62): worker.claim_webhook_deliveries(batch_size => 64) as lic_worker, each
   committed, until the queue is drained (nothing is sent; no worker runs): 8 tenants with 1,250 due
   deliveries each, and 1,000 tenants with 10 each.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from statistics import quantiles
from urllib.parse import urlsplit, urlunsplit

import psycopg
from aiohttp import web

from licentric.cli import create_account
from licentric.crypto import SecretBox
from licentric.migrate import migrate

SERVER_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
LATENCY_ROUNDS = int(os.environ.get("BENCH_WEBHOOKS_LATENCY_ROUNDS", "300"))
DELIVERIES = int(os.environ.get("BENCH_WEBHOOKS_DELIVERIES", "10000"))
ENDPOINTS = int(os.environ.get("BENCH_WEBHOOKS_ENDPOINTS", "8"))
LICENTRIC = str(Path(sys.executable).parent / "licentric")
SECRET_KEY = os.urandom(32)

POLICY = "insert into lic.license_policies (account_id, code, name) values (%(account)s, 'pro', 'Pro')"
LICENSES = """
insert into lic.licenses (account_id, key, policy_id)
select p.account_id, private.new_license_key(), p.id
from lic.license_policies as p cross join generate_series(1, %(licenses)s)
where p.account_id = %(account)s
"""

EMIT = """
select private.emit_event(
  a.id, 'license.suspended', jsonb_build_object('object', 'license', 'id', gen_random_uuid())
)
from generate_series(1, %(per_account)s), unnest(%(accounts)s::uuid[]) as a (id)
"""

CLAIM_TENANTS = """
insert into lic.webhook_endpoints (account_id, url, secret_ciphertext, event_types)
select a.account_id, 'http://127.0.0.1:9/claim', '\\x01', '{license.suspended}'
from generate_series(1, %(tenants)s) as n, private.create_account('bench claim ' || n, 'enterprise') as a
returning account_id
"""
CLAIM = "select count(*) from worker.claim_webhook_deliveries(batch_size => 64)"


class Receiver:
    """Answers 200 at once and notes when each delivery arrived, by its license id."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.expected: dict[str, asyncio.Event] = {}
        self.count = 0
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        at = time.perf_counter()
        body = await request.read()
        self.count += 1
        license_id = json.loads(body)["data"]["object"]["id"]
        self.arrived[license_id] = at
        if license_id in self.expected:
            self.expected[license_id].set()
        return web.Response(text="ok")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def start_workers(url: str, count: int, logs: Path) -> list[subprocess.Popen[bytes]]:
    env = {
        **{k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
        "DATABASE_URL": url,
        "LICENTRIC_SECRET_KEY": base64.b64encode(SECRET_KEY).decode(),
        "LICENTRIC_WEBHOOK_ALLOW_PRIVATE_TARGETS": "true",
        "LICENTRIC_LOG_LEVEL": "INFO",
    }
    workers = []
    for n in range(count):
        log = (logs / f"worker-{n}.log").open("w")
        workers.append(subprocess.Popen([LICENTRIC, "worker"], env=env, stdout=log, stderr=log))
    return workers


async def wait_started(logs: Path, count: int) -> None:
    """Until each worker's dispatcher has its LISTEN (its first claim found nothing)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        texts = [(logs / f"worker-{n}.log").read_text() for n in range(count)]
        if all('"worker started"' in text for text in texts):
            await asyncio.sleep(1.0)  # the dispatcher's pool and listener connect just after
            return
        await asyncio.sleep(0.1)
    raise RuntimeError("the workers did not start")


def stop_workers(workers: list[subprocess.Popen[bytes]]) -> None:
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()


def make_endpoint(url: str, account: dict[str, str], target: str) -> None:
    secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    ciphertext = SecretBox(SECRET_KEY).encrypt(secret, account["account_id"], "webhook_endpoint_secret")
    with psycopg.connect(url) as conn:
        conn.execute("set role lic_app")
        conn.execute("select from api.authenticate(secret => %s)", (account["secret_key"],))
        conn.execute(
            "select from api.create_webhook_endpoint(url => %s, secret_ciphertext => %s,"
            " event_types => '{license.suspended}')",
            (target, ciphertext),
        )


def percentile(samples: list[float], p: int) -> float:
    return quantiles(samples, n=100, method="inclusive")[p - 1]


async def latency(url: str, account: dict[str, str], receiver: Receiver, logs: Path) -> list[float]:
    with psycopg.connect(url) as conn:
        conn.execute(POLICY, {"account": account["account_id"]})
        conn.execute(LICENSES, {"account": account["account_id"], "licenses": LATENCY_ROUNDS})
        licenses = [
            str(row[0])
            for row in conn.execute(
                "select id from lic.licenses where account_id = %s order by id", (account["account_id"],)
            )
        ]
    workers = start_workers(url, 1, logs)
    try:
        await wait_started(logs, 1)
        samples = []
        async with await psycopg.AsyncConnection.connect(url) as conn:
            await conn.execute("set role lic_app")
            await conn.commit()
            for license_id in licenses:
                arrived = receiver.expected[license_id] = asyncio.Event()
                async with conn.transaction():
                    await conn.execute("select from api.authenticate(secret => %s)", (account["secret_key"],))
                    await conn.execute("select from api.suspend_license(license_id => %s)", (license_id,))
                committed = time.perf_counter()
                try:
                    await asyncio.wait_for(arrived.wait(), 10)
                except TimeoutError:
                    raise RuntimeError(f"no delivery for {license_id} within 10 s") from None
                samples.append((receiver.arrived[license_id] - committed) * 1000)
                await asyncio.sleep(0.02)
        return samples
    finally:
        stop_workers(workers)


async def throughput(url: str, accounts: list[str], workers_count: int, logs: Path) -> float:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("truncate lic.webhook_attempts")
        conn.execute("delete from lic.webhook_deliveries")
    workers = start_workers(url, workers_count, logs)
    try:
        await wait_started(logs, workers_count)
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            async with conn.transaction():
                await conn.execute(EMIT, {"per_account": DELIVERIES // len(accounts), "accounts": accounts})
            started = time.perf_counter()
            total = (DELIVERIES // len(accounts)) * len(accounts)
            while True:
                cur = await conn.execute(
                    "select count(*) filter (where status = 'succeeded'), count(*)"
                    " filter (where status = 'failed') from lic.webhook_deliveries"
                )
                succeeded, failed = await cur.fetchone()
                if failed:
                    raise RuntimeError(f"{failed} deliveries failed; see {logs}")
                if succeeded == total:
                    return total / (time.perf_counter() - started)
                if time.perf_counter() - started > 300:
                    raise RuntimeError(f"only {succeeded} of {total} delivered in 300 s")
                await asyncio.sleep(0.02)
    finally:
        stop_workers(workers)


def claim_latency(url: str, tenants: int, per_tenant: int) -> list[float]:
    """Milliseconds per claim of 64 while tenants x per_tenant due deliveries are claimed, none sent."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("truncate lic.webhook_attempts")
        conn.execute("delete from lic.webhook_deliveries")
        with conn.transaction():
            accounts = [row[0] for row in conn.execute(CLAIM_TENANTS, {"tenants": tenants})]
            conn.execute(EMIT, {"per_account": per_tenant, "accounts": accounts})
        conn.execute("vacuum analyze lic.webhook_deliveries")
        conn.execute("set role lic_worker")
        samples = []
        while True:
            started = time.perf_counter()
            claimed = conn.execute(CLAIM).fetchone()[0]
            if claimed == 0:
                break
            samples.append((time.perf_counter() - started) * 1000)
        conn.execute("reset role")
        conn.execute(
            "update lic.webhook_endpoints set enabled = false, disabled_at = now(), disabled_reason = 'bench'"
            " where account_id = any(%s)",
            (accounts,),
        )
        return samples


async def run(url: str, logs: Path) -> bool:
    receiver = Receiver()
    await receiver.start()
    try:
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        print(
            f"{os.cpu_count()} CPUs; load average before the run {load} (other work on the machine skews it)"
        )

        single = create_account(url, "bench latency", "enterprise")
        make_endpoint(url, single, f"http://127.0.0.1:{receiver.port}/latency")
        samples = await latency(url, single, receiver, logs)
        p50, p99 = percentile(samples, 50), percentile(samples, 99)
        print(
            f"state change -> delivery, {len(samples)} suspensions one at a time, 1 worker:"
            f" p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {max(samples):.1f} ms"
        )
        with psycopg.connect(url) as conn:
            conn.execute(
                "update lic.webhook_endpoints set enabled = false, disabled_at = now(),"
                " disabled_reason = 'bench' where account_id = %s",
                (single["account_id"],),
            )

        tenants = [create_account(url, f"bench tenant {n}", "enterprise") for n in range(ENDPOINTS)]
        for n, tenant in enumerate(tenants):
            make_endpoint(url, tenant, f"http://127.0.0.1:{receiver.port}/tenant/{n}")
        ids = [t["account_id"] for t in tenants]
        print(f"{'throughput':52} {'workers':>7} {'deliveries/s':>12}")
        rates: dict[str, float] = {}
        for workers_count in (1, 2):
            rate = await throughput(url, ids, workers_count, logs)
            rates[f"{workers_count}"] = rate
            label = f"{DELIVERIES:,} deliveries to {ENDPOINTS} endpoints"
            print(f"{label:52} {workers_count:7} {rate:12,.0f}")
        rate = await throughput(url, ids[:1], 1, logs)
        rates["single"] = rate
        label = f"{DELIVERIES:,} deliveries to 1 endpoint"
        print(f"{label:52} {1:7} {rate:12,.0f}")

        print(f"\n{'claim of 64 (no sending)':52} {'p50 ms':>7} {'p99 ms':>12}")
        for tenants, per_tenant in ((8, 1250), (1000, 10)):
            claims = claim_latency(url, tenants, per_tenant)
            label = f"{tenants:,} tenants x {per_tenant:,} due"
            print(f"{label:52} {percentile(claims, 50):7.2f} {percentile(claims, 99):12.2f}")

        print("\nTargets")
        checks = [
            ("state change -> delivery p50 < 50 ms", p50 < 50, f"{p50:.1f} ms"),
            (
                f">= 500 deliveries/s with 1 worker ({ENDPOINTS} endpoints)",
                rates["1"] >= 500,
                f"{rates['1']:,.0f}",
            ),
        ]
        ok = True
        for name, passed, value in checks:
            ok &= passed
            print(f"{name:62} {value:>10}  {'PASS' if passed else 'FAIL'}")
        return ok
    finally:
        await receiver.stop()


def main() -> int:
    begun = time.perf_counter()
    database = f"licentric_bench_webhooks_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        conn.execute(f'create database "{database}"')
    url = urlunsplit(urlsplit(SERVER_URL)._replace(path=f"/{database}"))
    logs = Path(f"/tmp/{database}")
    logs.mkdir()
    try:
        migrate(url)
        ok = asyncio.run(run(url, logs))
        summary = "all targets met" if ok else "some targets missed"
        print(f"\n{summary}; {time.perf_counter() - begun:.0f} s in all (worker logs in {logs})")
    finally:
        with psycopg.connect(SERVER_URL, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{database}" with (force)')
    return 0


if __name__ == "__main__":
    sys.exit(main())
