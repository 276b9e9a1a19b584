"""Schema migrations: versioned files in sql/ applied once each, then the
repeatable functions/ and policies/ re-applied whenever their content changes.

Versioned files are recorded with their sha256; editing one after it was
applied is an error. The repeatable set is applied in one transaction after
dropping every api/worker routine, every lic policy and every private routine
nothing depends on, so a function removed from functions/ disappears and a
fresh build equals an upgraded one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

# The project root: sql/, functions/ and policies/ sit beside api/.
ROOT = Path(__file__).resolve().parents[2]

# Arbitrary but fixed: every migrator of every version takes this same lock.
LOCK_ID = 7_362_048_113

BOOKKEEPING = """
create schema if not exists lic_migrations;
create table if not exists lic_migrations.versioned (
  name text primary key,
  sha256 text not null,
  applied_at timestamptz not null default now()
);
create table if not exists lic_migrations.repeatable (
  singleton boolean primary key default true check (singleton),
  sha256 text not null,
  applied_at timestamptz not null default now()
);
"""

RESET_REPEATABLE = """
do $$
declare
  v_obj record;
begin
  for v_obj in
    select p.oid::regprocedure as signature
    from pg_catalog.pg_proc as p
    join pg_catalog.pg_namespace as n on n.oid = p.pronamespace
    where n.nspname in ('api', 'service', 'worker')
  loop
    execute format('drop routine %s', v_obj.signature);
  end loop;
  for v_obj in select schemaname, tablename, policyname from pg_catalog.pg_policies where schemaname = 'lic'
  loop
    execute format('drop policy %I on %I.%I', v_obj.policyname, v_obj.schemaname, v_obj.tablename);
  end loop;
  -- private holds helpers from functions/ and a few from sql/ that tables use
  -- (column defaults, triggers); those have dependents and are kept.
  for v_obj in
    select p.oid::regprocedure as signature
    from pg_catalog.pg_proc as p
    join pg_catalog.pg_namespace as n on n.oid = p.pronamespace
    where n.nspname = 'private'
      and not exists (
        select from pg_catalog.pg_depend as d
        where d.refclassid = 'pg_catalog.pg_proc'::regclass and d.refobjid = p.oid
      )
  loop
    execute format('drop routine %s', v_obj.signature);
  end loop;
end;
$$;
"""


# lic_owner owns the schemas of every database Licentric was migrated into.
OTHER_INSTALLATIONS = """
select distinct d.datname::text
from pg_catalog.pg_shdepend as s
inner join pg_catalog.pg_database as d on d.oid = s.dbid
inner join pg_catalog.pg_roles as r on r.oid = s.refobjid
where r.rolname = 'lic_owner' and s.deptype = 'o' and d.datname <> pg_catalog.current_database()
order by 1
"""


def other_installations(dsn: str) -> list[str]:
    """The other databases of this server that Licentric was migrated into. Its roles are cluster-wide, so
    they share lic_web, lic_app, lic_worker and their passwords (decision 51)."""
    with psycopg.connect(dsn) as conn:
        return [name for (name,) in conn.execute(OTHER_INSTALLATIONS)]


class MigrationError(Exception):
    """A migration cannot proceed; the message says why."""


@dataclass
class MigrationReport:
    applied: list[str] = field(default_factory=list)
    repeatable_applied: bool = False


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _repeatable_files(root: Path) -> list[Path]:
    return sorted((root / "functions").glob("*.sql")) + sorted((root / "policies").glob("*.sql"))


def repeatable_hash(root: Path) -> str:
    digest = hashlib.sha256(RESET_REPEATABLE.encode())
    for path in _repeatable_files(root):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _run_file(conn: psycopg.Connection, path: Path, root: Path) -> None:
    try:
        conn.execute(path.read_text())  # type: ignore[arg-type]  # trusted file, simple protocol
    except psycopg.Error as exc:
        diag = exc.diag
        where = f" (at character {diag.statement_position})" if diag.statement_position else ""
        raise MigrationError(f"{path.relative_to(root)}: {diag.message_primary or exc}{where}") from exc


def migrate(dsn: str, root: Path = ROOT, *, stop_after: str | None = None) -> MigrationReport:
    """Bring the database at dsn up to date with the files under root.

    stop_after names the last versioned file to apply and skips the repeatable
    set; tests use it to build an older schema and then upgrade it.
    """
    report = MigrationReport()
    with psycopg.connect(dsn, autocommit=True) as conn:
        if not conn.execute("select pg_try_advisory_lock(%s)", (LOCK_ID,)).fetchone()[0]:
            raise MigrationError("another `licentric migrate` is running on this database; try again later")
        try:
            conn.execute(BOOKKEEPING)
            applied = dict(conn.execute("select name, sha256 from lic_migrations.versioned").fetchall())
            files = sorted((root / "sql").glob("*.sql"))
            missing = sorted(set(applied) - {f.name for f in files})
            if missing:
                raise MigrationError(f"applied migrations are missing from sql/: {', '.join(missing)}")
            for path in files:
                sha = _sha256(path.read_bytes())
                if path.name in applied:
                    if applied[path.name] != sha:
                        raise MigrationError(
                            f"sql/{path.name} was edited after it was applied; "
                            "add a new migration instead of changing an applied one"
                        )
                else:
                    with conn.transaction():
                        _run_file(conn, path, root)
                        conn.execute(
                            "insert into lic_migrations.versioned (name, sha256) values (%s, %s)",
                            (path.name, sha),
                        )
                    report.applied.append(path.name)
                if path.name == stop_after:
                    return report

            wanted = repeatable_hash(root)
            current = conn.execute("select sha256 from lic_migrations.repeatable").fetchone()
            # New tables need the repeatable layer too (RLS, policies, owners),
            # so any applied versioned file triggers it as well.
            if report.applied or current is None or current[0] != wanted:
                with conn.transaction():
                    conn.execute(RESET_REPEATABLE)
                    for path in _repeatable_files(root):
                        _run_file(conn, path, root)
                    conn.execute(
                        "insert into lic_migrations.repeatable (sha256) values (%s) "
                        "on conflict (singleton) do update set sha256 = excluded.sha256, applied_at = now()",
                        (wanted,),
                    )
                report.repeatable_applied = True
        finally:
            conn.execute("select pg_advisory_unlock(%s)", (LOCK_ID,))
    return report
