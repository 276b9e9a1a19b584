"""`licentric worker`: the long-running background process (DESIGN §1).

It runs the `worker.*` functions on intervals over a pool whose connections
log in as `lic_worker`, each batch in its own transaction. A job that fails is
logged and runs again at its next interval; it never stops the process.
SIGTERM or SIGINT stops it: a job still running is cancelled (its transaction
rolls back, so the next start does that work) and the process exits 0.

Every job is listed in `jobs()`: a new kind of background work is one more
entry there. Beside the jobs runs the webhook dispatcher (licentric/webhook_delivery.py), which
sends outbound webhooks as they come due; it needs LICENTRIC_SECRET_KEY to sign them. On a signal
it stops claiming, gives sends in flight up to LICENTRIC_WEBHOOK_TIMEOUT to finish and hands back
the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from licentric import webhook_delivery
from licentric.db import WORKER_ROLE, open_pool
from licentric.settings import Settings

log = logging.getLogger("licentric.worker")

# A job's work: given the pool, returns how many things it changed.
Work = Callable[[AsyncConnectionPool], Awaitable[int]]


@dataclass(frozen=True)
class Job:
    name: str
    # Seconds from the end of one run to the start of the next; every job also runs at start.
    interval: float
    work: Work


def _function(name: str) -> sql.Identifier:
    return sql.Identifier(*name.split("."))


def call(function: str, **args: Any) -> Work:
    """One call of a worker function in one transaction; it returns an integer."""
    statement = sql.SQL("select {}({}) as done").format(
        _function(function),
        sql.SQL(", ").join(sql.SQL("{} => {}").format(sql.Identifier(k), sql.Placeholder(k)) for k in args),
    )

    async def work(pool: AsyncConnectionPool) -> int:
        async with pool.connection() as conn, conn.transaction():
            row = await (await conn.execute(statement, args)).fetchone()
        return row["done"]

    return work


def sweep(function: str, batch_size: int, **args: Any) -> Work:
    """A worker function taking batch_size, called in batches of one transaction each until one comes back
    short: locks are held for one batch only, and what is done stays done if the worker stops."""
    batch = call(function, **args, batch_size=batch_size)

    async def work(pool: AsyncConnectionPool) -> int:
        total = 0
        while True:
            done = await batch(pool)
            total += done
            if done < batch_size:
                return total

    return work


def jobs(settings: Settings) -> list[Job]:
    """Everything the worker does."""
    found = [
        # Validation never waits for these sweeps; they make the stored status, the plan usage counters and
        # the license.expired / license.suspended events catch up.
        Job(
            "expire_licenses",
            settings.worker_sweep_interval,
            sweep("worker.expire_licenses", settings.worker_batch_size),
        ),
        Job(
            "suspend_overdue_licenses",
            settings.worker_sweep_interval,
            sweep("worker.suspend_overdue_licenses", settings.worker_batch_size),
        ),
        Job(
            "ensure_metering_partitions",
            settings.worker_partition_interval,
            call("worker.ensure_metering_partitions", months_ahead=settings.metering_partitions_ahead),
        ),
        # Idempotency keys are answered for 24 hours; older ones (and their stored responses) go.
        Job(
            "purge_idempotency_keys",
            settings.worker_sweep_interval,
            sweep("worker.purge_idempotency_keys", settings.worker_batch_size),
        ),
        # Finished webhook deliveries and their attempts, past the retention.
        Job(
            "purge_webhook_deliveries",
            settings.worker_sweep_interval,
            sweep(
                "worker.purge_webhook_deliveries",
                settings.worker_batch_size,
                retain_days=settings.webhook_retention_days,
            ),
        ),
    ]
    if settings.metering_retention_months is not None:
        found.append(
            Job(
                "drop_metering_partitions",
                settings.worker_partition_interval,
                call("worker.drop_metering_partitions", retain_months=settings.metering_retention_months),
            )
        )
    return found


async def _run_job(job: Job, pool: AsyncConnectionPool, stop: asyncio.Event) -> None:
    started = time.perf_counter()
    task = asyncio.ensure_future(job.work(pool))
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        if not task.done():
            # Stopping (or cancelled): the job's open transaction rolls back.
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    if task.cancelled():
        log.info("job %s cancelled: the worker is stopping", job.name, extra={"fields": {"job": job.name}})
        return
    duration_ms = round((time.perf_counter() - started) * 1000, 2)
    fields: dict[str, Any] = {"job": job.name, "duration_ms": duration_ms}
    failed = "job %s failed; it runs again in %s s"
    try:
        done = task.result()
    except psycopg.Error as exc:
        fields |= {"sqlstate": exc.sqlstate, "error": exc.diag.message_primary or str(exc)}
        log.error(failed, job.name, job.interval, extra={"fields": fields})
        return
    except Exception:
        log.exception(failed, job.name, job.interval, extra={"fields": fields})
        return
    fields["done"] = done
    level = logging.INFO if done else logging.DEBUG
    log.log(level, "job %s done: %s", job.name, done, extra={"fields": fields})


async def run(pool: AsyncConnectionPool, jobs: list[Job], stop: asyncio.Event) -> None:
    """Run the jobs, one at a time, each when its interval has passed, until stop is set."""
    loop = asyncio.get_running_loop()
    due = {job.name: loop.time() for job in jobs}
    while not stop.is_set():
        for job in jobs:
            if stop.is_set():
                return
            if due[job.name] <= loop.time():
                await _run_job(job, pool, stop)
                due[job.name] = loop.time() + job.interval
        wait = min(due.values(), default=loop.time() + 3600) - loop.time()
        if wait > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[None]:
    """The worker as a task of the running event loop, stopped when the block ends (`licentric up`)."""
    if not settings.database_url:
        raise RuntimeError("DATABASE_URL is not set")
    pool = await open_pool(settings.database_url, WORKER_ROLE, min_size=1, max_size=2)
    stop = asyncio.Event()
    schedule = jobs(settings)
    log.info("worker started", extra={"fields": {"jobs": [job.name for job in schedule]}})
    task = asyncio.create_task(run(pool, schedule, stop))
    if settings.secret_key is None:
        log.warning("webhook delivery is off: LICENTRIC_SECRET_KEY is not set, so nothing can be signed")
        dispatcher = None
    else:
        dispatcher = asyncio.create_task(webhook_delivery.run(settings, WORKER_ROLE, stop))
    try:
        yield
    finally:
        stop.set()
        await task
        if dispatcher is not None:
            await dispatcher
        await pool.close()
        log.info("worker stopped")


async def serve(settings: Settings) -> None:
    """`licentric worker`: run until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with running(settings):
        await stop.wait()
