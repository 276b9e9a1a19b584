"""The SQLSTATE registry (DESIGN §2): every code the SQL raises is registered,
no raise goes without a code, and database errors map to the promised statuses."""

from __future__ import annotations

import json
import re
from pathlib import Path

import psycopg
import pytest

from licentric.errors import INTERNAL, REGISTRY, STANDARD, handle_exception
from licentric.migrate import ROOT

SQL_DIRS = ("sql", "functions", "policies")

COMMENT = re.compile(r"--[^\n]*")
# A COMMENT ON statement documents an object: its text ("Raise LACCT when ...") raises nothing.
COMMENT_ON = re.compile(r"\bcomment\s+on\b(?:'(?:[^']|'')*'|[^;'])*;", re.IGNORECASE)
# A raise statement up to its semicolon. Quoted text is skipped as a whole, so
# a semicolon inside a message does not end it.
RAISE = re.compile(r"\braise\b((?:'(?:[^']|'')*'|[^;'])*);", re.IGNORECASE)
LEVEL = re.compile(r"^\s*(debug|log|info|notice|warning|exception)\b", re.IGNORECASE)
CODE = re.compile(r"\b(?:errcode\s*=\s*|sqlstate\s+)'([0-9A-Z]{5})'", re.IGNORECASE)
CONDITION_NAME = re.compile(r"^\s*([a-z_]+)\b(?!\s*=)", re.IGNORECASE)
DOCUMENTED = re.compile(r"\b(L[A-Z]{4}) \((\d{3})\)")


def raise_problems(source: str) -> tuple[set[str], list[str]]:
    """(the SQLSTATEs raised, the raise statements without one) in a SQL source.

    A condition name (`raise unique_violation`) counts as a code, so it must
    be registered too; `raise;` re-raises the error being handled."""
    codes: set[str] = set()
    bare: list[str] = []
    for match in RAISE.finditer(COMMENT_ON.sub("", COMMENT.sub("", source))):
        body = match.group(1)
        level = LEVEL.match(body)
        if level and level.group(1).lower() != "exception":
            continue
        rest = body[level.end() :] if level else body
        found = set(CODE.findall(rest))
        condition = CONDITION_NAME.match(rest)
        if condition and condition.group(1).lower() not in ("using", "sqlstate"):
            found.add(condition.group(1).lower())
        codes |= found
        if not found and rest.strip():
            bare.append(" ".join(match.group(0).split()))
    return codes, bare


def sql_sources() -> list[Path]:
    return [path for name in SQL_DIRS for path in sorted((ROOT / name).glob("*.sql"))]


def test_scanner_finds_codes_and_bare_raises():
    codes, bare = raise_problems(
        """
        raise exception using errcode = 'LNTFD', message = 'license; not found';
        raise exception 'count: %', v_count using errcode = 'LSTAT';
        raise sqlstate 'LPLAN';
        raise notice 'just saying';
        raise;  -- re-raise in a handler
        raise unique_violation using message = 'taken';
        raise exception 'no code here: %', v_id;
        raise 'no level, no code';
        raise exception using message = 'still no code';
        comment on function f() is 'Raise LACCT when it is so; it''s documentation';
        """
    )
    assert codes == {"LNTFD", "LSTAT", "LPLAN", "unique_violation"}
    assert bare == [
        "raise exception 'no code here: %', v_id;",
        "raise 'no level, no code';",
        "raise exception using message = 'still no code';",
    ]


def test_every_raised_sqlstate_is_in_the_registry():
    unregistered = {}
    raised: set[str] = set()
    for path in sql_sources():
        codes, _ = raise_problems(path.read_text())
        raised |= codes
        for code in codes - set(REGISTRY):
            unregistered.setdefault(code, []).append(str(path.relative_to(ROOT)))
    assert raised, "the scan found no raise at all; is the pattern broken?"
    assert unregistered == {}


def test_no_raise_goes_without_a_sqlstate():
    bare = {}
    for path in sql_sources():
        _, statements = raise_problems(path.read_text())
        if statements:
            bare[str(path.relative_to(ROOT))] = statements
    assert bare == {}


def test_documented_error_statuses_match_the_registry():
    """`Errors: LNTFD (404)` in a COMMENT ON becomes the API reference; it must tell the truth."""
    wrong = []
    for path in sql_sources():
        for code, status in DOCUMENTED.findall(path.read_text()):
            if code not in REGISTRY or REGISTRY[code].status != int(status):
                wrong.append(f"{path.relative_to(ROOT)}: {code} ({status})")
    assert wrong == []


def test_registry_codes_are_semantic_sqlstates_with_error_statuses_and_unique_codes():
    for sqlstate, kind in REGISTRY.items():
        assert re.fullmatch(r"L[A-Z]{4}", sqlstate)
        assert 400 <= kind.status < 600, sqlstate
    for sqlstate, kind in STANDARD.items():
        assert re.fullmatch(r"[0-9A-Z]{5}", sqlstate) and not sqlstate.startswith("L")
        assert 400 <= kind.status < 600, sqlstate
    codes = [kind.code for kind in REGISTRY.values()]
    assert len(codes) == len(set(codes)), "two registry entries share a code string"


def database_error(url: str, statement: str) -> psycopg.Error:
    with psycopg.connect(url) as conn, pytest.raises(psycopg.Error) as caught:
        conn.execute(statement)
    return caught.value


def raise_with(sqlstate: str, message: str = "raised for a test") -> str:
    return f"do $$ begin raise exception using errcode = '{sqlstate}', message = '{message}'; end $$"


@pytest.mark.parametrize(
    ("statement", "status", "code"),
    [
        pytest.param(
            "create temp table t (id integer primary key); insert into t values (1), (1)",
            409,
            "already_exists",
            id="23505-unique-violation",
        ),
        pytest.param("select 'not a number'::integer", 500, "internal_error", id="22P02-not-a-request-value"),
        pytest.param(raise_with("40001"), 503, "try_again", id="40001-serialization"),
        pytest.param("select * from no_such_table", 500, "internal_error", id="42P01-unknown"),
        pytest.param(raise_with("LNTFD", "license not found"), 404, "resource_missing", id="LNTFD"),
    ],
)
def test_database_errors_map_to_http_statuses(database_url: str, statement: str, status: int, code: str):
    exc = database_error(database_url, statement)

    response = handle_exception(None, exc)  # type: ignore[arg-type]  # the handler ignores the request

    body = json.loads(response.render(response.content, "application/json"))
    assert response.status_code == status
    assert body["error"]["code"] == code
    assert set(body["error"]) == {"type", "code", "message", "param"}


def test_unknown_database_error_hides_its_message(database_url: str):
    exc = database_error(database_url, "select * from secret_internal_table")

    response = handle_exception(None, exc)  # type: ignore[arg-type]

    assert response.status_code == INTERNAL.status
    assert "secret_internal_table" not in json.dumps(response.content)


def test_registry_error_keeps_the_database_message(database_url: str):
    exc = database_error(database_url, raise_with("LSTAT", "a canceled license cannot be suspended"))

    response = handle_exception(None, exc)  # type: ignore[arg-type]

    assert response.status_code == 409
    assert response.content["error"]["message"] == "a canceled license cannot be suspended"
