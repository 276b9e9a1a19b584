"""Backfills: a file of JSON lines COPYed into staging and recorded by
api.ingest_events chunk by chunk; a re-run counts nothing twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import psycopg

from licentric.usage_import import import_usage


def test_a_file_is_recorded_in_chunks_and_a_rerun_counts_nothing_twice(account, database_url):
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "insert into lic.meters (account_id, code, name, aggregation)"
            " values (%s, 'tokens', 'Tokens', 'sum')",
            (account.id,),
        )
    start = datetime.now(UTC) - timedelta(days=2)
    lines = [
        json.dumps(
            {
                "id": f"b{n}",
                "meter": "tokens",
                "quantity": 2,
                "subject_key": f"k{n % 10}",
                "occurred_at": (start + timedelta(seconds=n)).isoformat(),
            }
        )
        for n in range(2500)
    ]
    lines[10] = "{not json"
    lines[20] = json.dumps({"id": "x", "meter": "nope", "subject_key": "k"})
    lines.insert(30, "")

    first = import_usage(database_url, account.secret_key, [line + "\n" for line in lines], chunk=1000)
    assert (first["accepted"], first["duplicates"], first["rejected"]) == (2498, 0, 2)
    assert first["rejections"] == [
        {"line": 11, "id": None, "code": "invalid_json"},
        {"line": 21, "id": "x", "code": "unknown_meter"},
    ]
    again = import_usage(database_url, account.secret_key, lines, chunk=700)
    assert (again["accepted"], again["duplicates"], again["rejected"]) == (0, 2498, 2)
    with psycopg.connect(database_url) as conn:
        total = conn.execute(
            "select sum(quantity_sum) from lic.metering_rollups where account_id = %s", (account.id,)
        ).fetchone()[0]
    assert total == 2 * 2498


def test_the_cli_imports_a_file_for_the_keys_account(account, database_url, tmp_path):
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "insert into lic.meters (account_id, code, name, aggregation)"
            " values (%s, 'calls', 'Calls', 'count')",
            (account.id,),
        )
    events = tmp_path / "usage.ndjson"
    events.write_text(
        "\n".join(json.dumps({"id": f"c{n}", "meter": "calls", "subject_key": "k"}) for n in range(3))
    )
    env = {**os.environ, "DATABASE_URL": database_url, "LICENTRIC_API_KEY": account.secret_key}
    done = subprocess.run(
        [sys.executable, "-m", "licentric.cli", "usage", "import", str(events)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(done.stdout) == {"accepted": 3, "duplicates": 0, "rejected": 0, "rejections": []}
    missing = subprocess.run(
        [sys.executable, "-m", "licentric.cli", "usage", "import", str(events)],
        env={k: v for k, v in env.items() if k != "LICENTRIC_API_KEY"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode != 0 and "LICENTRIC_API_KEY" in missing.stderr
