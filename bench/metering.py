"""Usage metering, measured against raw PostgreSQL in the same run, on the same database.

    make bench      (uses TEST_DATABASE_URL's server; builds and drops a scratch database)

1. Raw floor: binary COPY (psycopg write_row) of the events into public.bench_events, a bare copy of
   lic.metering_events: the same columns, checks, primary key and monthly partitions (plus a DEFAULT), no
   rollups, no budgets, no triggers, no row level security. From 1 client, and from 2 each copying half.
   Beside it, for scale, the least any function taking a batch as jsonb does: INSERT ... SELECT from
   jsonb_to_recordset into the same bare table (typed columns, the meter found by code, the primary key
   deduplicating), batches of 10,000 from 1 client; no checks, rollups, budgets or per-event answers.
2. api.ingest_events as lic_app, one transaction per batch after api.authenticate (what a request does), the
   batch passed as one jsonb parameter; batches of 1,000 and of 10,000, from 1 client and from 2 taking
   batches in turn. The events are spread over 1,000 subjects (500 licenses, 500 subject keys) and 4 meters
   (sum, count, max, unique_count of a property); 10 % of the subjects (100 licenses) have a hard monthly
   budget on every meter, far above what the run spends. occurred_at is within the last day, ids are random
   UUIDs (as clients' idempotency keys are), and the monthly partitions exist (made by
   private.ensure_metering_partitions as the worker runs it, from last month), so no event lands in the
   DEFAULT partition. Each run's rows/s is divided by COPY's rows/s from the same number of clients; the
   targets use 1 client.
3. POST /v1/usage/events with 1,000-event bodies from BENCH_METERING_HTTP_CONNECTIONS concurrent
   connections (an asyncio httpx load generator: wrk is not installed here, and one fixed wrk body would
   be all duplicates after its first request) against a `licentric serve` subprocess (one uvicorn process),
   divided by 1-client COPY.
4. api.usage latency (p50, p95; each call in its own transaction after api.authenticate, as lic_app, every
   row fetched) on another account with 300 subjects (150 licenses, 150 subject keys) and 4 meters: the
   sum meter by day over the last 30 days for one license, and the same grouped by subject for every
   subject (300 subjects keep that answer under api.usage's 10,000-row limit; 1,000 would pass it). First
   when the account holds 100,000 events, ingested through api.ingest_events over the last 30 days; then
   when it holds 10,000,000: the other 9,900,000 are synthesized as superuser straight into
   lic.metering_rollups, since api.usage reads rollups only. No event row is written for them; they are
   the rollup rows those events would have made: BENCH_METERING_EVENTS_PER_ROLLUP events (default 1, the
   most rollup rows 10M events can make) in every hourly bucket of every (subject, meter) pair, for the
   hours just before the queried range (8,250 hours, about 11 months, by default). Both states are
   vacuumed and analyzed before they are measured, and the plan api.usage runs is shown for each. The same
   aggregation written directly on lic.metering_rollups, as superuser, is shown beside it.

Sizes: BENCH_METERING_EVENTS (events per ingest measurement, default 100,000), BENCH_METERING_HTTP_EVENTS
(default 200,000), BENCH_METERING_HTTP_CONNECTIONS (default 8), BENCH_METERING_QUERY_EVENTS (default
100,000), BENCH_METERING_HISTORY_EVENTS (events of the large state, default 10,000,000),
BENCH_METERING_QUERY_ROUNDS (calls per one-license measurement, default 200; a quarter of that grouped).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import quantiles
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
from psycopg.types.json import Jsonb

from licentric.cli import create_account
from licentric.migrate import migrate

SERVER_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
EVENTS = int(os.environ.get("BENCH_METERING_EVENTS", "100000"))
HTTP_EVENTS = int(os.environ.get("BENCH_METERING_HTTP_EVENTS", "200000"))
HTTP_CONNECTIONS = int(os.environ.get("BENCH_METERING_HTTP_CONNECTIONS", "8"))
QUERY_EVENTS = int(os.environ.get("BENCH_METERING_QUERY_EVENTS", "100000"))
HISTORY_EVENTS = int(os.environ.get("BENCH_METERING_HISTORY_EVENTS", "10000000"))
EVENTS_PER_ROLLUP = int(os.environ.get("BENCH_METERING_EVENTS_PER_ROLLUP", "1"))
QUERY_ROUNDS = int(os.environ.get("BENCH_METERING_QUERY_ROUNDS", "200"))
ROOT = Path(__file__).resolve().parents[1]

LICENSES, SUBJECT_KEYS, BUDGETED = 500, 500, 100
QUERY_LICENSES, QUERY_SUBJECT_KEYS = 150, 150
METERS = (("tokens", "sum", None), ("requests", "count", None), ("peak_mb", "max", None))
INGEST_METERS = (*METERS, ("users", "unique_count", "user"))
QUERY_METERS = (*METERS, ("seats", "latest", None))
NIL = "00000000-0000-0000-0000-000000000000"
COLUMNS = "account_id, id, meter_id, agent_id, license_id, subject_key, quantity, occurred_at, properties"
TYPES = ["uuid", "text", "uuid", "uuid", "uuid", "text", "numeric", "timestamptz", "jsonb"]

SEED = """
insert into lic.license_policies (account_id, code, name) values (%(account)s, 'pro', 'Pro');
insert into lic.licenses (account_id, key, policy_id)
select p.account_id, private.new_license_key(), p.id
from lic.license_policies as p cross join generate_series(1, %(licenses)s)
where p.account_id = %(account)s;
"""

BUDGETS = """
insert into lic.budgets (account_id, meter_id, license_id, period, "limit", hard, thresholds)
select m.account_id, m.id, l.id, 'month', 1e15, true, '{50,80,100}'
from lic.meters as m
cross join (select id from lic.licenses where account_id = %(account)s order by id limit %(budgeted)s) as l
where m.account_id = %(account)s
"""

# The bare copy: what any table of these events needs (columns, checks, primary key, monthly
# partitions and a DEFAULT), and nothing Licentric adds (rollups, budgets, triggers, RLS).
BARE_TABLE = """
create table public.bench_events (like lic.metering_events including defaults including constraints)
partition by range (occurred_at);
alter table public.bench_events add primary key (account_id, id, occurred_at);
create table public.bench_events_default partition of public.bench_events default;
"""

HISTORY = """
insert into lic.metering_rollups (
  account_id, meter_id, hour, agent_id, license_id, subject_key, event_count, quantity_sum, quantity_max,
  latest_quantity, latest_at
)
select
  %(account)s, m.id, h.hour, %(nil)s, coalesce(s.license_id, %(nil)s), coalesce(s.subject_key, ''),
  %(per)s, %(per)s * q.quantity, q.quantity, q.quantity, h.hour + interval '30 minutes'
from generate_series(1, %(hours)s) as g (n)
cross join lateral (select %(until)s::timestamptz - make_interval(hours => %(hours)s - g.n + 1) as hour) as h
cross join public.bench_subjects as s
cross join lic.meters as m
cross join lateral (select (1 + (g.n * 7 + s.n * 13) %% 1000)::numeric as quantity) as q
where m.account_id = %(account)s
order by g.n, m.id, s.n
"""

RAW_USAGE = """
select
  date_trunc('day', r.hour at time zone 'UTC') at time zone 'UTC' as period_start, {subject}
  sum(r.quantity_sum) as value, sum(r.event_count)::bigint as event_count
from lic.metering_rollups as r
where
  r.account_id = %(account)s and r.meter_id = %(meter)s and r.hour >= %(start)s and r.hour < %(end)s
  {filter}
group by {group} order by {group}
"""


def rfc3339(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def subjects(conn: psycopg.Connection, account: str, keys: int) -> list[tuple[str | None, str | None]]:
    """(license_id, subject_key) of each subject: the account's licenses, then `keys` subject keys."""
    licenses = [
        str(r[0])
        for r in conn.execute("select id from lic.licenses where account_id = %s order by id", (account,))
    ]
    return [(license_id, None) for license_id in licenses] + [(None, f"key-{i}") for i in range(keys)]


def make_events(
    n: int,
    meters: dict[str, str],
    people: list[tuple[str | None, str | None]],
    account: str,
    spread: timedelta,
    rng: random.Random,
) -> tuple[list[dict], list[tuple]]:
    """n events (as JSON-ready dicts) and the same events as COPY rows of public.bench_events."""
    now = datetime.now(UTC)
    codes = list(meters)
    uuids = {
        value: uuid.UUID(value) for value in [account, *meters.values()] + [p[0] for p in people if p[0]]
    }
    events, rows = [], []
    for _ in range(n):
        code = codes[rng.randrange(len(codes))]
        license_id, subject_key = people[rng.randrange(len(people))]
        quantity = rng.randint(1, 1000)
        occurred_at = now - timedelta(minutes=1) - spread * rng.random()
        properties = {"model": f"model-{rng.randrange(4)}", "user": f"u{rng.randrange(50)}"}
        event = {
            "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "meter": code,
            "quantity": quantity,
            "occurred_at": rfc3339(occurred_at),
        }
        if license_id:
            event["license_id"] = license_id
        else:
            event["subject_key"] = subject_key
        event["properties"] = properties
        events.append(event)
        text = json.dumps(properties)
        rows.append(
            (
                uuids[account],
                event["id"],
                uuids[meters[code]],
                None,
                uuids.get(license_id),
                subject_key,
                quantity,
                occurred_at,
                Jsonb(text, dumps=lambda s: s),
            )
        )
    return events, rows


def in_threads(clients: int, work: Callable[[int], None]) -> float:
    """Seconds for `clients` threads to run work(client) each."""
    errors: list[BaseException] = []

    def run(client: int) -> None:
        try:
            work(client)
        except BaseException as exc:  # re-raised in the caller
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(c,)) for c in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - started


def copy_floor(url: str, rows: list[tuple], clients: int) -> float:
    """rows/s of binary COPY into the bare table, the rows split over clients (one COPY each)."""

    def work(client: int) -> None:
        statement = f"copy public.bench_events ({COLUMNS}) from stdin (format binary)"
        with psycopg.connect(url) as conn, conn.cursor().copy(statement) as cp:
            cp.set_types(TYPES)
            for row in rows[client::clients]:
                cp.write_row(row)

    return len(rows) / in_threads(clients, work)


# The least a function taking the batch as jsonb does: read the array into typed rows, find each meter,
# insert with the primary key deduplicating. No checks, rollups, budgets or per-event answers.
JSONB_FLOOR = """
insert into public.bench_events (
  account_id, id, meter_id, license_id, subject_key, quantity, occurred_at, properties
)
select m.account_id, r.id, m.id, r.license_id, r.subject_key, r.quantity, r.occurred_at, r.properties
from jsonb_to_recordset(%(body)s::jsonb) as r (
  id text, meter text, quantity numeric, occurred_at timestamptz, license_id uuid, subject_key text,
  properties jsonb
)
inner join lic.meters as m on m.account_id = %(account)s and m.code = r.meter
on conflict do nothing
"""


def jsonb_floor(url: str, account: str, bodies: list[str]) -> float:
    """rows/s of JSONB_FLOOR, one transaction per batch, from 1 client (as superuser)."""
    total = sum(body.count('"id": ') for body in bodies)

    def work(client: int) -> None:
        with psycopg.connect(url) as conn:
            for body in bodies:
                with conn.transaction():
                    conn.execute(JSONB_FLOOR, {"body": body, "account": account}, prepare=True)

    return total / in_threads(1, work)


def ingest(url: str, secret: str, bodies: list[str], clients: int) -> float:
    """rows/s of api.ingest_events, one transaction per batch, the batches taken in turn by clients."""
    total = sum(body.count('"id": ') for body in bodies)
    queue = list(reversed(bodies))
    lock = threading.Lock()

    def work(client: int) -> None:
        with psycopg.connect(url) as conn:
            conn.execute("set role lic_app")
            conn.commit()
            while True:
                with lock:
                    if not queue:
                        return
                    body = queue.pop()
                with conn.transaction():
                    conn.execute("select from api.authenticate(secret => %s)", (secret,), prepare=True)
                    accepted, size = conn.execute(
                        "select (r ->> 'accepted')::integer, jsonb_array_length(r -> 'data')"
                        " from api.ingest_events(events => %s::jsonb) as r",
                        (body,),
                        prepare=True,
                    ).fetchone()
                if accepted != size:
                    raise SystemExit(f"api.ingest_events accepted {accepted} of {size} events")

    return total / in_threads(clients, work)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def http_load(base: str, secret: str, bodies: list[bytes], connections: int) -> float:
    """events/s of POST /v1/usage/events, `connections` requests in flight at every instant."""
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
    total = sum(body.count(b'"id": ') for body in bodies)
    queue = list(reversed(bodies))
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=120) as client:

        async def sender() -> None:
            while queue:
                body = queue.pop()
                response = await client.post("/v1/usage/events", content=body)
                head = response.content[:200]
                if response.status_code != 200 or b'"rejected":0' not in head:
                    raise SystemExit(f"POST /v1/usage/events: {response.status_code} {head!r}")

        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(connections)))
        return total / (time.perf_counter() - started)


def http_ingest(url: str, secret: str, bodies: list[bytes], warmup: list[bytes]) -> float:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "LICENTRIC_PORT": str(port),
        "LICENTRIC_LOG_LEVEL": "WARNING",
        "LICENTRIC_RATE_LIMIT_PER_MINUTE": "100000000",
    }
    server = subprocess.Popen([sys.executable, "-m", "licentric.cli", "serve"], env=env, cwd=ROOT)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        asyncio.run(http_load(base, secret, warmup, HTTP_CONNECTIONS))
        return asyncio.run(http_load(base, secret, bodies, HTTP_CONNECTIONS))
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)


def percentiles(samples: list[float]) -> tuple[float, float]:
    cuts = quantiles(samples, n=100, method="inclusive")
    return cuts[49], cuts[94]


class UsageQueries:
    """api.usage as an app calls it, and the same aggregation as raw SQL on the rollups."""

    def __init__(self, url: str, account: str, secret: str, license_id: str, meter_id: str) -> None:
        self.url, self.account, self.secret = url, account, secret
        self.license_id, self.meter_id = license_id, meter_id
        self.end = datetime.now(UTC)
        self.start = self.end - timedelta(days=30)

    def _args(self, grouped: bool) -> dict:
        args = {
            "meter_code": "tokens",
            "starting_at": self.start,
            "ending_at": self.end,
            "granularity": "day",
            "group_by_subject": grouped,
        }
        if not grouped:
            args["license_id"] = self.license_id
        return args

    def _api_sql(self, grouped: bool) -> str:
        named = ", ".join(f"{name} => %({name})s" for name in self._args(grouped))
        return f"select * from api.usage({named})"

    def _raw_sql(self, grouped: bool) -> tuple[str, dict]:
        subject = "r.agent_id, r.license_id, r.subject_key," if grouped else ""
        text = RAW_USAGE.format(
            subject=subject,
            filter="" if grouped else "and r.license_id = %(license)s",
            group="1, 2, 3, 4" if grouped else "1",
        )
        params = {
            "account": self.account,
            "meter": self.meter_id,
            "start": self.start.replace(hour=0, minute=0, second=0, microsecond=0),
            "end": self.end,
            "license": self.license_id,
        }
        return text, params

    def measure(self, grouped: bool, raw: bool, rounds: int) -> tuple[float, float, int]:
        """p50 and p95 in ms, and the rows of one answer."""
        samples: list[float] = []
        rows = 0
        with psycopg.connect(self.url) as conn:
            if not raw:
                conn.execute("set role lic_app")
                conn.commit()
            for i in range(rounds + 10):
                with conn.transaction():
                    if raw:
                        text, params = self._raw_sql(grouped)
                    else:
                        conn.execute(
                            "select from api.authenticate(secret => %s)", (self.secret,), prepare=True
                        )
                        text, params = self._api_sql(grouped), self._args(grouped)
                    started = time.perf_counter()
                    rows = len(conn.execute(text, params, prepare=True).fetchall())
                    if i >= 10:  # warm plans and caches first
                        samples.append((time.perf_counter() - started) * 1000)
        return *percentiles(samples), rows

    def plan(self, grouped: bool) -> str:
        """The scan nodes of the query api.usage runs, as auto_explain logs it."""
        notices: list[str] = []
        with psycopg.connect(self.url) as conn:
            conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
            conn.execute("load 'auto_explain'")
            for setting, value in (
                ("log_min_duration", "0"),
                ("log_nested_statements", "on"),
                ("log_level", "notice"),
            ):
                conn.execute(f"set auto_explain.{setting} = {value}")
            conn.execute("set role lic_app")
            conn.commit()
            with conn.transaction():
                conn.execute("select from api.authenticate(secret => %s)", (self.secret,))
                notices.clear()
                conn.execute(self._api_sql(grouped), self._args(grouped)).fetchall()
        plans = [n for n in notices if "lic.metering_rollups" in n]
        if not plans:
            return "(no plan logged)"
        scans = re.findall(r"((?:Index Only Scan|Index Scan|Seq Scan|Bitmap \w+ Scan)[^\n(]*)", plans[0])
        return "; ".join(s.strip() for s in scans)


def usage_state(url: str, account: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("vacuum analyze lic.metering_rollups")
        return int(
            conn.execute(
                "select sum(event_count) from lic.metering_rollups where account_id = %s", (account,)
            ).fetchone()[0]
        )


def ensure_partitions(url: str) -> None:
    """The monthly partitions from last month to 3 months ahead, as the worker makes them."""
    last_month = (datetime.now(UTC).replace(day=1) - timedelta(days=1)).replace(day=1)
    with psycopg.connect(url) as conn:
        # The upkeep's helper, as the upkeep runs it (lic_owner), for an instant of last month.
        conn.execute("set role lic_owner")
        conn.execute("select private.ensure_metering_partitions(at => %s, months_ahead => 4)", (last_month,))


def bare_partitions(url: str) -> None:
    """The same monthly partitions for public.bench_events."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(BARE_TABLE)
        bounds = conn.execute(
            "select c.relname, pg_get_expr(c.relpartbound, c.oid) from pg_inherits as i"
            " join pg_class as c on c.oid = i.inhrelid"
            " where i.inhparent = 'lic.metering_events'::regclass and c.relname ~ '_[0-9]{6}$'"
        ).fetchall()
        for name, bound in bounds:
            conn.execute(f"create table public.bench_{name} partition of public.bench_events {bound}")


def seed(url: str, account: str, licenses: int, meters: tuple) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        psycopg.ClientCursor(conn).execute(SEED, {"account": account, "licenses": licenses})
        for code, aggregation, unique_property in meters:
            conn.execute(
                "insert into lic.meters (account_id, code, name, aggregation, unique_property)"
                " values (%s, %s, %s, %s, %s)",
                (account, code, code, aggregation, unique_property),
            )
        return {
            code: str(meter_id)
            for code, meter_id in conn.execute(
                "select code, id from lic.meters where account_id = %s", (account,)
            )
        }


def batches(events: list[dict], size: int) -> list[str]:
    return [json.dumps(events[i : i + size]) for i in range(0, len(events), size)]


def rounds(grouped: bool) -> int:
    """Calls per measurement: a grouped answer reads every subject's rollups, so it gets fewer."""
    return max(20, QUERY_ROUNDS // 4) if grouped else QUERY_ROUNDS


def short(n: int) -> str:
    """10000000 -> 10M, 100000 -> 100k."""
    for size, suffix in ((1_000_000, "M"), (1_000, "k")):
        if n >= size:
            return f"{n / size:g}{suffix}"
    return str(n)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> int:
    begun = time.perf_counter()
    database = f"licentric_bench_metering_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        conn.execute(f'create database "{database}"')
    url = urlunsplit(urlsplit(SERVER_URL)._replace(path=f"/{database}"))
    rng = random.Random(5)
    try:
        migrate(url)
        for i in range(50):  # other tenants share the tables
            create_account(url, f"tenant {i}", "free")
        tenant = create_account(url, "bench ingest", "enterprise")
        account, secret = tenant["account_id"], tenant["secret_key"]
        meters = seed(url, account, LICENSES, INGEST_METERS)
        ensure_partitions(url)
        bare_partitions(url)
        with psycopg.connect(url) as conn:
            conn.execute(BUDGETS, {"account": account, "budgeted": BUDGETED})
            people = subjects(conn, account, SUBJECT_KEYS)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("analyze")

        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        print(
            f"{os.cpu_count()} CPUs; load average before the run {load} (other work on the machine skews it)"
        )
        print(
            f"Usage ingest: {EVENTS:,} events per measurement over {len(people):,} subjects"
            f" ({LICENSES} licenses, {SUBJECT_KEYS} subject keys), {len(meters)} meters (sum, count, max,"
            f" unique_count); hard budgets on every meter for {BUDGETED} licenses"
            f" ({BUDGETED / len(people):.0%} of subjects);"
            " occurred_at within the last day; ids are random UUIDs, as clients' idempotency keys are"
        )
        print(
            f"{'path':46} {'clients':>7} {'rows/s':>9} {'/COPY':>6}  (COPY from the same number of clients)"
        )
        results: dict[tuple[str, int], float] = {}
        floors: dict[int, float] = {}
        for clients in (1, 2):
            _, rows = make_events(EVENTS, meters, people, account, timedelta(days=1), rng)
            floors[clients] = copy_floor(url, rows, clients)
            label = "raw binary COPY into bare partitioned copy"
            print(f"{label:46} {clients:7} {floors[clients]:9,.0f} {1:6.2f}")
        del rows
        events, _ = make_events(EVENTS, meters, people, account, timedelta(days=1), rng)
        floors[0] = jsonb_floor(url, account, batches(events, 10000))
        label = "jsonb batches of 10,000: INSERT ... SELECT"
        note = "(no checks, rollups, budgets)"
        print(f"{label:46} {1:7} {floors[0]:9,.0f} {floors[0] / floors[1]:6.2f}  {note}")
        for clients in (1, 2):
            for size in (1000, 10000):
                events, _ = make_events(EVENTS, meters, people, account, timedelta(days=1), rng)
                rate = ingest(url, secret, batches(events, size), clients)
                results[(f"sql{size}", clients)] = rate
                label = f"api.ingest_events, batches of {size:,}"
                print(f"{label:46} {clients:7} {rate:9,.0f} {rate / floors[clients]:6.2f}")
        del events
        http_events, _ = make_events(HTTP_EVENTS, meters, people, account, timedelta(days=1), rng)
        warmup, _ = make_events(10 * 1000, meters, people, account, timedelta(days=1), rng)
        http_rate = http_ingest(
            url,
            secret,
            [b.encode() for b in batches(http_events, 1000)],
            [b.encode() for b in batches(warmup, 1000)],
        )
        del http_events, warmup
        label = f"POST /v1/usage/events, 1,000/body ({HTTP_EVENTS:,})"
        clients = f"{HTTP_CONNECTIONS}cx"
        print(f"{label:46} {clients:>7} {http_rate:9,.0f} {http_rate / floors[1]:6.2f}  (1-client COPY)")

        with psycopg.connect(url) as conn:
            stored, in_default, budget_used = conn.execute(
                "select (select count(*) from lic.metering_events where account_id = %(a)s),"
                " (select count(*) from lic.metering_events_default),"
                " (select sum(used) from lic.budget_usage where account_id = %(a)s)",
                {"a": account},
            ).fetchone()
            drift = conn.execute(
                "select (select sum(quantity) from lic.metering_events where account_id = %(a)s)"
                " - (select sum(quantity_sum) from lic.metering_rollups where account_id = %(a)s)",
                {"a": account},
            ).fetchone()[0]
        print(
            f"stored: {stored:,} events (DEFAULT partition: {in_default});"
            f" sum(events) - sum(rollups) = {drift}; budgets debited {budget_used:,}"
        )

        # Usage queries: another account, 300 subjects, 100k events over the last 30 days.
        query_tenant = create_account(url, "bench usage", "enterprise")
        query_account, query_secret = query_tenant["account_id"], query_tenant["secret_key"]
        query_meters = seed(url, query_account, QUERY_LICENSES, QUERY_METERS)
        with psycopg.connect(url) as conn:
            query_people = subjects(conn, query_account, QUERY_SUBJECT_KEYS)
            conn.execute("create table public.bench_subjects (n integer, license_id uuid, subject_key text)")
            with conn.cursor().copy("copy public.bench_subjects from stdin") as cp:
                for n, person in enumerate(query_people):
                    cp.write_row((n, *person))
        events, _ = make_events(
            QUERY_EVENTS, query_meters, query_people, query_account, timedelta(days=30) * 0.99, rng
        )
        ingest(url, query_secret, batches(events, 10000), 1)
        del events
        queries = UsageQueries(url, query_account, query_secret, query_people[0][0], query_meters["tokens"])
        cases = (
            ("api.usage, one license", False, False),
            ("api.usage, grouped by subject", True, False),
            ("raw SQL on rollups, one license", False, True),
            ("raw SQL on rollups, grouped by subject", True, True),
        )
        small_total = usage_state(url, query_account)
        small = {name: queries.measure(grouped, raw, rounds(grouped)) for name, grouped, raw in cases}
        small_plans = [queries.plan(grouped) for grouped in (False, True)]

        history = HISTORY_EVENTS - small_total
        pairs = len(query_people) * len(query_meters)
        hours = history // EVENTS_PER_ROLLUP // pairs
        synthesized = hours * pairs * EVENTS_PER_ROLLUP
        until = queries.start.replace(hour=0, minute=0, second=0, microsecond=0)
        started = time.perf_counter()
        with psycopg.connect(url) as conn:
            conn.execute(
                HISTORY,
                {
                    "account": query_account,
                    "nil": NIL,
                    "per": EVENTS_PER_ROLLUP,
                    "hours": hours,
                    "until": until,
                },
            )
        synth_seconds = time.perf_counter() - started
        large_total = usage_state(url, query_account)
        large = {name: queries.measure(grouped, raw, rounds(grouped)) for name, grouped, raw in cases}
        large_plans = [queries.plan(grouped) for grouped in (False, True)]
        with psycopg.connect(url) as conn:
            rollup_rows, rollup_size = conn.execute(
                "select count(*), pg_size_pretty(pg_total_relation_size('lic.metering_rollups'))"
                " from lic.metering_rollups"
            ).fetchone()

        print(
            f"\nUsage queries: tokens (sum), day granularity, the last 30 days ({len(query_people)} subjects,"
            f" {len(query_meters)} meters); p50/p95 in ms of {rounds(False)} calls ({rounds(True)} grouped)"
            " after 10 unmeasured; one license: 1 subject, grouped: every subject"
        )
        print(
            f"history synthesized as superuser: {synthesized:,} events as {hours * pairs:,} rollup rows"
            f" ({EVENTS_PER_ROLLUP} event(s) in every hourly bucket of each of {pairs:,} (subject, meter)"
            " pairs"
            f" for the {hours:,} hours before the range; no event rows) in {synth_seconds:.0f} s;"
            f" lic.metering_rollups now {rollup_rows:,} rows, {rollup_size}"
        )
        print(
            f"{'query':40} {'rows':>5} {f'{small_total:,} ev p50':>15} {'p95':>6}"
            f" {f'{large_total:,} ev p50':>17} {'p95':>6} {'p50 ratio':>9}"
        )
        for name, *_ in cases:
            s50, s95, n = small[name]
            l50, l95, _ = large[name]
            print(f"{name:40} {n:5} {s50:15.2f} {s95:6.2f} {l50:17.2f} {l95:6.2f} {l50 / s50:9.2f}")
        for label, plans in ((f"{small_total:,}", small_plans), (f"{large_total:,}", large_plans)):
            print(f"plans at {label} events: one license: {plans[0]} | grouped: {plans[1]}")

        print("\nTargets")
        checks = [
            (
                f"SQL ingest, batches of {s:,}, 1 client >= 0.5 x 1-client COPY",
                results[(f"sql{s}", 1)] / floors[1],
                0.5,
            )
            for s in (1000, 10000)
        ]
        checks.append(("HTTP batch ingest >= 0.4 x 1-client COPY", http_rate / floors[1], 0.4))
        ok = True
        for name, ratio, target in checks:
            ok &= ratio >= target
            print(f"{name:62} {ratio:6.2f}  {verdict(ratio >= target)}")
        for name in ("api.usage, one license", "api.usage, grouped by subject"):
            ratio = large[name][0] / small[name][0]
            ok &= ratio <= 1.5
            label = f"{name}: p50 at {short(large_total)} <= 1.5 x p50 at {short(small_total)}"
            print(f"{label:62} {ratio:6.2f}  {verdict(ratio <= 1.5)}")
        summary = "all targets met" if ok else "some targets missed"
        print(f"\n{summary}; {time.perf_counter() - begun:.0f} s in all")
    finally:
        with psycopg.connect(SERVER_URL, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{database}" with (force)')
    return 0


if __name__ == "__main__":
    sys.exit(main())
