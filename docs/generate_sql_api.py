"""Write docs/sql-api.md from the COMMENT ON text of every api function.

Usage: DATABASE_URL=... python docs/generate_sql_api.py > docs/sql-api.md
(`make docs` does this against a scratch database.)"""

from __future__ import annotations

import os
import sys

import psycopg

QUERY = """
select p.proname,
       pg_catalog.pg_get_function_identity_arguments(p.oid) as arguments,
       pg_catalog.pg_get_function_result(p.oid) as result,
       coalesce(pg_catalog.obj_description(p.oid, 'pg_proc'), '') as comment
from pg_catalog.pg_proc as p
join pg_catalog.pg_namespace as n on n.oid = p.pronamespace
where n.nspname = 'api'
order by p.proname, arguments
"""


def render(database_url: str) -> str:
    lines = [
        "# SQL API reference",
        "",
        "Generated from the `COMMENT ON` text of the `api` schema by `docs/generate_sql_api.py`;",
        "do not edit by hand. Call `api.authenticate(secret)` first in each transaction; call",
        "functions with named arguments (`api.f(name => value)`).",
        "",
    ]
    with psycopg.connect(database_url) as conn:
        for name, arguments, result, comment in conn.execute(QUERY):
            lines += [f"## api.{name}", "", f"`api.{name}({arguments})` → `{result}`", "", comment, ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(render(os.environ["DATABASE_URL"]))
