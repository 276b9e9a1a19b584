"""The usage recorder against a real server: every record counted exactly once after a flush (8 threads x
10,000), an outage in the middle loses nothing the policy keeps (docs/sdk.md), a full queue drops and
reports, flush at exit; and usage.consume, which spends against hard budgets on the server."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
import uuid

import pytest
from fault_proxy import FaultProxy

from licentric_sdk import AsyncLicentric, Licentric, RecorderOptions, RetryPolicy
from licentric_sdk.usage import UsageDropped, UsageRejected

from licensing_support import superuser

QUICK = RetryPolicy(max_retries=1, initial_delay=0.05, max_delay=0.1)


def counted(database_url: str, account_id: str, meter: str) -> tuple[int, float]:
    """The meter's events and quantity in the hourly rollups."""
    rows = superuser(
        database_url,
        "select coalesce(sum(r.event_count), 0)::bigint as events,"
        " coalesce(sum(r.quantity_sum), 0) as quantity"
        " from lic.metering_rollups r join lic.meters m on m.account_id = r.account_id and m.id = r.meter_id"
        " where r.account_id = %s and m.account_id = %s and m.code = %s",
        (account_id, account_id, meter),
    )
    return rows[0]["events"], float(rows[0]["quantity"])


@pytest.fixture
def meter(account, serve_url) -> str:
    code = f"calls-{uuid.uuid4().hex[:8]}"
    Licentric(account.secret_key, base_url=serve_url).meters.create(
        code=code, name="Calls", aggregation="sum"
    )
    return code


def test_eight_threads_of_ten_thousand_records_count_exactly_80000(serve_url, account, meter, database_url):
    client = Licentric(account.secret_key, base_url=serve_url)
    latencies: list[float] = []

    def work(n: int) -> None:
        mine = []
        for i in range(10_000):
            started = time.perf_counter()
            assert client.usage.record(meter, 1, subject_key=f"user-{n}-{i % 10}")
            mine.append(time.perf_counter() - started)
        latencies.extend(mine)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    recorded = time.monotonic() - started
    assert client.usage.flush(timeout=120)
    flushed = time.monotonic() - started
    assert counted(database_url, account.id, meter) == (80_000, 80_000.0)
    stats = client.usage.recorder.stats
    assert (stats.recorded, stats.accepted, stats.dropped, stats.rejected) == (80_000, 80_000, 0, 0)
    latencies.sort()
    print(
        f"80,000 records: recorded in {recorded:.2f} s, all counted after {flushed:.2f} s, {stats.batches} "
        f"batches; record() p50 {latencies[40_000] * 1e6:.1f} us, p99 {latencies[79_200] * 1e6:.1f} us"
    )
    client.close()


def test_an_outage_in_the_middle_loses_nothing(serve_url, account, meter, database_url):
    reports = []
    options = RecorderOptions(batch_size=500, flush_interval=0.1, max_backoff=0.3, on_error=reports.append)
    with FaultProxy(serve_url) as proxy:
        client = Licentric(account.secret_key, base_url=proxy.url, retry=QUICK, usage=options)
        for _ in range(3000):
            client.usage.record(meter, 2, subject_key="outage")
        time.sleep(0.5)
        proxy.mode = "reset"  # the server is unreachable
        for _ in range(3000):
            client.usage.record(meter, 2, subject_key="outage")
        time.sleep(1.5)
        proxy.faults.append(("status", 503, {}))
        proxy.faults.append("lose")  # a batch applied whose answer is lost: sent again, counted once
        proxy.mode = None
        assert client.usage.flush(timeout=60)
        assert counted(database_url, account.id, meter) == (6000, 12000.0)
        stats = client.usage.recorder.stats
        assert stats.dropped == 0 and stats.retries > 0
        # The lost batch was accepted unheard: its retry is answered from its Idempotency-Key (accepted) or,
        # sent again by the recorder, with `duplicate`; either way each event counts once.
        assert stats.accepted + stats.duplicates == 6000
        assert reports and not any(isinstance(r, UsageDropped) for r in reports)


def test_a_full_queue_drops_new_records_and_reports_them(serve_url, account, meter, database_url):
    reports = []
    options = RecorderOptions(
        batch_size=100, flush_interval=0.05, max_queue=1000, max_backoff=0.2, on_error=reports.append
    )
    with FaultProxy(serve_url) as proxy:
        proxy.mode = "reset"
        client = Licentric(account.secret_key, base_url=proxy.url, retry=QUICK, usage=options)
        kept = sum(client.usage.record(meter, 1, subject_key="full") for _ in range(3000))
        proxy.mode = None
        assert client.usage.flush(timeout=60)
    stats = client.usage.recorder.stats
    assert 1000 <= kept < 3000 and stats.dropped == 3000 - kept
    assert counted(database_url, account.id, meter) == (kept, float(kept))
    assert sum(r.count for r in reports if isinstance(r, UsageDropped)) == stats.dropped


def test_a_full_queue_can_make_record_wait_instead(serve_url, account, meter):
    options = RecorderOptions(
        batch_size=5, flush_interval=10, max_queue=5, on_full="block", block_timeout=0.3
    )
    with FaultProxy(serve_url) as proxy:
        proxy.mode = "reset"
        client = Licentric(account.secret_key, base_url=proxy.url, retry=QUICK, usage=options)
        for _ in range(5):
            assert client.usage.record(meter, subject_key="block")
        time.sleep(0.2)  # the thread takes the full batch; five more fit
        for _ in range(5):
            assert client.usage.record(meter, subject_key="block")
        started = time.monotonic()
        assert not client.usage.record(meter, subject_key="block")
        assert 0.3 <= time.monotonic() - started < 1
        proxy.mode = None
        assert client.usage.flush(timeout=30)


def test_events_the_server_rejects_are_reported_not_raised(serve_url, account):
    reports = []
    client = Licentric(account.secret_key, base_url=serve_url, usage=RecorderOptions(on_error=reports.append))
    assert client.usage.record("no-such-meter", 1, subject_key="x")
    assert client.usage.flush(timeout=30)
    assert [type(r) for r in reports] == [UsageRejected] and reports[0].code == "unknown_meter"


def test_records_are_flushed_when_the_process_exits(serve_url, account, meter, database_url):
    script = textwrap.dedent(f"""
        from licentric_sdk import Licentric
        client = Licentric({account.secret_key!r}, base_url={serve_url!r})
        for i in range(1000):
            client.usage.record({meter!r}, 1, subject_key="exit")
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    assert counted(database_url, account.id, meter) == (1000, 1000.0)


def test_consume_spends_against_a_hard_budget_once_per_id(serve_url, make_account, database_url):
    account = make_account()
    client = Licentric(account.secret_key, base_url=serve_url)
    client.meters.create(code="credits", name="Credits", aggregation="sum")
    license_id = client.licenses.create(policy_id=client.license_policies.create(code="p", name="P").id).id
    client.budgets.create(meter_code="credits", license_id=license_id, period="month", limit="10", hard=True)
    spends = [client.usage.consume("credits", 4, license_id=license_id) for _ in range(3)]
    assert [s.allowed for s in spends] == [True, True, False]
    assert spends[2].code == "budget_exhausted"
    again = client.usage.consume(
        "credits", 4, license_id=license_id, id=spends[0].id, occurred_at=spends[0].occurred_at
    )
    assert again.allowed and again.duplicate
    assert counted(database_url, account.id, "credits") == (2, 8.0)


async def test_the_async_recorder_and_consume(serve_url, account, meter, database_url):
    async with AsyncLicentric(account.secret_key, base_url=serve_url) as client:
        for i in range(10_000):
            assert client.usage.record(meter, 1, subject_key=f"async-{i % 7}")
        assert await client.usage.flush(timeout=60)
        assert counted(database_url, account.id, meter) == (10_000, 10_000.0)
        spent = await client.usage.consume(meter, 5, subject_key="async")
        assert spent.allowed and not spent.duplicate
        for _ in range(10):
            client.usage.record(meter, 1, subject_key="async-close")
    # aclose() flushed what was still queued.
    assert counted(database_url, account.id, meter) == (10_011, 10_015.0)
