"""Migrations (DESIGN §2): versioned sql/ files applied once and pinned by hash,
the repeatable functions/ and policies/ re-applied when they change, one
migrator at a time, and a fresh build equal to an upgraded one."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from licentric.migrate import LOCK_ID, ROOT, MigrationError, migrate

SQL_FILES = sorted(path.name for path in (ROOT / "sql").glob("*.sql"))
FIRST_FILE = SQL_FILES[0]


def schema_dump(url: str) -> str:
    """`pg_dump --schema-only`, owners and privileges included (they are part of
    the contract); only the lines that differ between two runs of pg_dump on
    the same schema are dropped: the version banner and the random \\restrict key."""
    dump = subprocess.run(
        ["pg_dump", "--schema-only", "--no-password", url], check=True, capture_output=True, text=True
    ).stdout
    volatile = ("-- Dumped from", "-- Dumped by", "\\restrict", "\\unrestrict")
    return "\n".join(line for line in dump.splitlines() if not line.startswith(volatile))


def copy_tree(root: Path) -> Path:
    """A private copy of sql/, functions/ and policies/ that a test may edit."""
    for name in ("sql", "functions", "policies"):
        shutil.copytree(ROOT / name, root / name)
    return root


def scalar(url: str, query: str, params: tuple[object, ...] = ()) -> object:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchone()[0]


def test_fresh_database_applies_every_sql_file_and_the_repeatable_set(empty_database: Callable[[], str]):
    url = empty_database()
    report = migrate(url)
    assert report.applied == SQL_FILES
    assert report.repeatable_applied
    assert scalar(url, "select array_agg(name order by name) from lic_migrations.versioned") == SQL_FILES
    assert scalar(url, "select to_regprocedure('api.authenticate(text)') is not null")


def test_second_migrate_changes_nothing(empty_database: Callable[[], str]):
    url = empty_database()
    migrate(url)
    before = schema_dump(url)
    recorded = scalar(url, "select array_agg(applied_at order by name) from lic_migrations.versioned")

    report = migrate(url)

    assert report.applied == []
    assert not report.repeatable_applied
    assert schema_dump(url) == before
    assert scalar(url, "select array_agg(applied_at order by name) from lic_migrations.versioned") == recorded


def test_edited_applied_sql_file_is_refused(empty_database: Callable[[], str], tmp_path: Path):
    root = copy_tree(tmp_path)
    url = empty_database()
    migrate(url, root)
    edited = root / "sql" / SQL_FILES[-1]
    edited.write_text(edited.read_text() + "\n-- an innocent-looking edit\n")

    with pytest.raises(MigrationError, match=SQL_FILES[-1]):
        migrate(url, root)


def test_applied_sql_file_missing_from_sql_dir_is_refused(empty_database: Callable[[], str], tmp_path: Path):
    root = copy_tree(tmp_path)
    url = empty_database()
    migrate(url, root)
    (root / "sql" / SQL_FILES[-1]).unlink()

    with pytest.raises(MigrationError, match=SQL_FILES[-1]):
        migrate(url, root)


def test_edited_function_file_reapplies_the_repeatable_set(empty_database: Callable[[], str], tmp_path: Path):
    root = copy_tree(tmp_path)
    url = empty_database()
    migrate(url, root)
    accounts = root / "functions" / "20_accounts.sql"
    old = "'The current account: plan, its limits"
    assert old in accounts.read_text()
    accounts.write_text(accounts.read_text().replace(old, "'Edited: the current account: plan, its limits"))

    report = migrate(url, root)

    assert report.applied == []
    assert report.repeatable_applied
    comment = scalar(url, "select obj_description('api.get_account()'::regprocedure, 'pg_proc')")
    assert comment.startswith("Edited: the current account")


def test_new_table_in_a_later_migration_gets_row_level_security(
    empty_database: Callable[[], str], tmp_path: Path
):
    root = copy_tree(tmp_path)
    url = empty_database()
    migrate(url, root)
    (root / "sql" / "9999_widgets.sql").write_text(
        "create table lic.widgets (account_id uuid not null references lic.accounts (account_id),"
        " id uuid not null, primary key (account_id, id));"
    )

    report = migrate(url, root)

    assert report.applied == ["9999_widgets.sql"]
    assert report.repeatable_applied, "functions/ and policies/ did not change, but the new table needs them"
    assert scalar(
        url,
        "select relrowsecurity and relforcerowsecurity from pg_class where oid = 'lic.widgets'::regclass",
    )
    policies = scalar(
        url,
        "select array_agg(policyname::text order by policyname) from pg_policies"
        " where schemaname = 'lic' and tablename = 'widgets'",
    )
    assert policies == ["widgets__all__definer", "widgets__all__tenant", "widgets__select__reporting"]


@pytest.mark.parametrize("schema", ["api", "private"])
def test_function_removed_from_functions_dir_is_dropped(
    schema: str, empty_database: Callable[[], str], tmp_path: Path
):
    root = copy_tree(tmp_path)
    url = empty_database()
    extra = root / "functions" / "50_extra.sql"
    extra.write_text(
        f"create or replace function {schema}.soon_removed() returns integer\n"
        "language sql immutable as $$ select 1 $$;\n"
        f"comment on function {schema}.soon_removed() is 'Removed by the next migrate.';\n"
    )
    migrate(url, root)
    assert scalar(url, f"select to_regprocedure('{schema}.soon_removed()') is not null")

    extra.unlink()
    report = migrate(url, root)

    assert report.repeatable_applied
    assert scalar(url, f"select to_regprocedure('{schema}.soon_removed()') is null")
    # and the upgraded database equals one built from the same files
    fresh = empty_database()
    migrate(fresh, root)
    assert schema_dump(url) == schema_dump(fresh)


def test_second_migrator_is_refused_while_the_lock_is_held(empty_database: Callable[[], str]):
    url = empty_database()
    with psycopg.connect(url, autocommit=True) as holder:
        holder.execute("select pg_advisory_lock(%s)", (LOCK_ID,))
        with pytest.raises(MigrationError, match="another `licentric migrate` is running"):
            migrate(url)
        # the refused migrator touched nothing
        assert scalar(url, "select to_regnamespace('lic_migrations') is null")
    assert migrate(url).applied == SQL_FILES


def test_fresh_and_upgraded_databases_have_the_same_schema(empty_database: Callable[[], str]):
    fresh = empty_database()
    migrate(fresh)

    upgraded = empty_database()
    older = migrate(upgraded, stop_after=FIRST_FILE)
    assert older.applied == [FIRST_FILE]
    assert not older.repeatable_applied
    newer = migrate(upgraded)
    assert newer.applied == SQL_FILES[1:]
    assert newer.repeatable_applied

    assert schema_dump(upgraded) == schema_dump(fresh)


def test_reapplying_the_repeatable_set_leaves_the_schema_as_built(empty_database: Callable[[], str]):
    """The drop-and-recreate of functions and policies restores owners, grants and comments exactly."""
    url = empty_database()
    migrate(url)
    before = schema_dump(url)
    with psycopg.connect(url) as conn:
        conn.execute("update lic_migrations.repeatable set sha256 = 'stale'")

    assert migrate(url).repeatable_applied
    assert schema_dump(url) == before


def test_failing_sql_file_is_named_and_rolled_back(empty_database: Callable[[], str], tmp_path: Path):
    root = copy_tree(tmp_path)
    (root / "sql" / "9999_broken.sql").write_text(
        "create table lic.half_done (x integer);\nselect lic.no_such_function();\n"
    )
    url = empty_database()

    with pytest.raises(MigrationError, match=r"sql/9999_broken\.sql: .*no_such_function"):
        migrate(url, root)

    assert scalar(url, "select to_regclass('lic.half_done') is null")
    assert scalar(url, "select array_agg(name order by name) from lic_migrations.versioned") == SQL_FILES
    # the files before it stay applied; the repeatable set waits for a clean run
    assert scalar(url, "select count(*) from lic_migrations.repeatable") == 0


def test_failing_function_file_rolls_back_the_whole_repeatable_set(
    empty_database: Callable[[], str], tmp_path: Path
):
    root = copy_tree(tmp_path)
    url = empty_database()
    migrate(url, root)
    before = schema_dump(url)
    accounts = root / "functions" / "20_accounts.sql"
    accounts.write_text(accounts.read_text().replace("'The current account:", "'Never applied:"))
    (root / "functions" / "50_broken.sql").write_text(
        "create function api.broken() returns nonsense_type language sql as $$ select null $$;\n"
    )

    with pytest.raises(MigrationError, match=r"functions/50_broken\.sql: .*nonsense_type"):
        migrate(url, root)

    assert schema_dump(url) == before
