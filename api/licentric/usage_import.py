"""Backfills: usage events from a file of JSON lines, COPYed into a staging
table and recorded by the same set-based api.ingest_events as the HTTP batch
endpoint, a chunk of at most 10,000 events per transaction. Each line is only
checked to be JSON (a bad line must not fail its chunk); SQL checks and counts
every event, so a re-run of the same file counts nothing twice."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from typing import Any

import psycopg
from psycopg.rows import tuple_row

CHUNK = 10_000


def import_usage(database_url: str, api_key: str, lines: Iterable[str], chunk: int = CHUNK) -> dict[str, Any]:
    """Record the events (one JSON object a line; blank lines skipped) for the key's account; answers the
    totals and the rejected events' line numbers and codes."""
    if not 1 <= chunk <= CHUNK:
        raise ValueError(f"chunk must be between 1 and {CHUNK}")
    totals: Counter[str] = Counter()
    rejected: list[dict[str, Any]] = []
    with psycopg.connect(database_url, row_factory=tuple_row) as conn:
        # The same role as the API: only api functions, under RLS.
        conn.execute("set role lic_app")
        conn.execute("create temporary table usage_staging (line bigint primary key, event text not null)")
        with conn.cursor().copy("copy usage_staging (line, event) from stdin") as copy:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    json.loads(line)
                except ValueError:
                    totals["rejected"] += 1
                    rejected.append({"line": number, "id": None, "code": "invalid_json"})
                    continue
                copy.write_row((number, line.rstrip("\n")))
        conn.commit()
        (count,) = conn.execute("select count(*) from usage_staging").fetchone()
        for offset in range(0, count, chunk):
            with conn.transaction():
                conn.execute("select from api.authenticate(secret => %s)", (api_key,))
                (result,) = conn.execute(
                    "with part as (select line, event from usage_staging order by line offset %s limit %s)"
                    " select jsonb_build_object('lines', (select jsonb_agg(line order by line) from part),"
                    " 'result', api.ingest_events((select jsonb_agg(event::jsonb order by line) from part)))",
                    (offset, chunk),
                ).fetchone()
            lines_of = result["lines"]
            outcome = result["result"]
            for key in ("accepted", "duplicates", "rejected"):
                totals[key] += outcome[key]
            rejected += [
                {"line": lines_of[d["index"]], "id": d["id"], "code": d["code"]}
                for d in outcome["data"]
                if d["status"] == "rejected"
            ]
    rejected.sort(key=lambda r: r["line"])
    return {**{key: totals[key] for key in ("accepted", "duplicates", "rejected")}, "rejections": rejected}
