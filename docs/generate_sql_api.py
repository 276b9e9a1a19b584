"""Write docs/sql-api.md from the COMMENT ON text of every api function and type.

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

TYPES = """
select t.typname,
       coalesce(pg_catalog.obj_description(t.oid, 'pg_type'), '') as comment,
       (select string_agg(format('%s %s', a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod)), ', '
                          order by a.attnum)
        from pg_catalog.pg_attribute as a where a.attrelid = t.typrelid and a.attnum > 0) as fields
from pg_catalog.pg_type as t
join pg_catalog.pg_namespace as n on n.oid = t.typnamespace
join pg_catalog.pg_class as c on c.oid = t.typrelid and c.relkind = 'c'
where n.nspname = 'api'
order by t.typname
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
        lines += ["# Types", ""]
        for name, comment, fields in conn.execute(TYPES):
            lines += [f"## api.{name}", "", f"`({fields})`", "", comment, ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(render(os.environ["DATABASE_URL"]))
