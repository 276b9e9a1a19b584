"""Bad input found by fuzzing (issue 12, item 9): data exceptions on request values are 4xx, the same
codes raised inside a function stay a logged 500, and JSON bodies nested deeper than 32 levels are refused
before anything parses them."""

from __future__ import annotations

import json
import logging

import psycopg
import pytest

from licentric.errors import handle_exception
from licentric.json_depth import MAX_DEPTH, too_deep

from support import assert_error


def sqlstate_of(database_url: str, statement: str, params: tuple[object, ...] | None = None) -> str:
    with psycopg.connect(database_url) as conn, pytest.raises(psycopg.Error) as caught:
        conn.execute(statement, params)
    return caught.value.sqlstate or ""


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


# Too large for an interval: PostgreSQL refuses it with 22015 while binding it to `duration interval`.
HUGE_DURATION = "PT99999999999999999999H"


async def test_a_duration_that_overflows_an_interval_is_a_422(client, account, database_url):
    assert sqlstate_of(database_url, "select %s::text::interval", (HUGE_DURATION,)) == "22015"
    response = await client.post(
        "/v1/license_policies",
        headers=account.headers,
        json={"code": "x", "name": "X", "duration": HUGE_DURATION},
    )
    error = assert_error(response, 422, "invalid_parameter")
    assert HUGE_DURATION in error["message"]


async def test_a_duration_too_long_to_add_to_a_timestamp_is_refused_when_written(client, account):
    # A valid interval, but now() + it is past 294276 AD: a license on the policy would raise 22008 inside
    # api.create_license, which is a 500 (decision 63), so SQL refuses the duration itself.
    response = await client.post(
        "/v1/license_policies",
        headers=account.headers,
        json={"code": "x", "name": "X", "duration": "P300000Y"},
    )
    assert_error(response, 422, "invalid_parameter", "duration")


async def test_a_nul_escape_in_usage_events_is_a_422(client, account, database_url):
    body = '[{"id": "evt_\\u0000", "meter": "api_calls"}]'
    assert sqlstate_of(database_url, "select %s::text::jsonb", (body,)) == "22P05"
    response = await client.post(
        "/v1/usage/events",
        headers={**account.headers, "Content-Type": "application/json"},
        content=body.encode(),
    )
    assert_error(response, 422, "invalid_parameter")


async def test_a_json_body_200k_levels_deep_is_a_400(client, account):
    response = await client.post(
        "/v1/api_keys",
        headers={**account.headers, "Content-Type": "application/json"},
        content=nested(200_000),
    )
    error = assert_error(response, 400, "payload_invalid")
    assert str(MAX_DEPTH) in error["message"]


async def test_deep_json_for_a_jsonb_parameter_is_a_400(client, account, database_url):
    body = nested(100_000)
    assert sqlstate_of(database_url, "select %s::text::jsonb", (body.decode(),)) == "54001"
    response = await client.post(
        "/v1/usage/events", headers={**account.headers, "Content-Type": "application/json"}, content=body
    )
    assert_error(response, 400, "payload_invalid")


async def test_json_nested_exactly_32_deep_is_still_parsed(client, account):
    response = await client.post(
        "/v1/usage/events",
        headers={**account.headers, "Content-Type": "application/json"},
        content=json.dumps(
            [{"id": "e", "meter": "m", "properties": json.loads(nested(MAX_DEPTH - 2))}]
        ).encode(),
    )
    assert response.status_code == 200, response.text
    assert response.json()["data"][0]["code"] != "PAYLOAD_INVALID"


@pytest.mark.parametrize(
    ("body", "deep"),
    [
        (nested(MAX_DEPTH), False),
        (nested(MAX_DEPTH + 1), True),
        (b'{"a":' * (MAX_DEPTH + 1) + b"1" + b"}" * (MAX_DEPTH + 1), True),
        (b'["' + b"[" * 100 + b'"]', False),  # brackets in a string are text
        (b'["\\"' + b"[" * 100 + b'"]', False),  # an escaped quote does not end the string
        (b'["\\\\"' + nested(MAX_DEPTH) + b"]", True),  # an escaped backslash does not escape the quote
        (b'["' + b"]" * 50 + b'",' + nested(MAX_DEPTH) + b"]", True),  # closers in a string hide nothing
        (b"[" + b"[]," * 10_000 + b"[]]", False),  # wide, not deep
        (b"[" * (MAX_DEPTH + 8), False),  # never closed: malformed, left to the parser
    ],
    ids=[
        "32",
        "33",
        "objects-33",
        "in-string",
        "escaped-quote",
        "escaped-backslash",
        "hidden",
        "wide",
        "open",
    ],
)
def test_nesting_depth_is_counted_outside_strings(body, deep):
    assert too_deep(body) is deep


async def test_portal_forms_are_not_read_as_json(client):
    response = await client.post(
        "/portal/no-such-portal/login",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        content=b"email=" + nested(MAX_DEPTH + 1),
    )
    assert "nested deeper" not in response.text


def database_error(
    database_url: str, statement: str, params: tuple[object, ...] | None = None
) -> psycopg.Error:
    with psycopg.connect(database_url) as conn, pytest.raises(psycopg.Error) as caught:
        conn.execute(statement, params)
    return caught.value


@pytest.mark.parametrize(
    ("statement", "params"),
    [
        ("select %s::integer", ("not a number",)),  # 22P02
        ("select %s::smallint", ("99999",)),  # 22003
        ("select %s::timestamptz", ("yesterday-ish",)),  # 22007
        ("select %s::interval", (HUGE_DURATION,)),  # 22015
        ("select %s::jsonb", ('"\\u0000"',)),  # 22P05
        ("select %s::jsonb", (nested(100_000).decode(),)),  # 54001
    ],
    ids=["22P02", "22003", "22007", "22015", "22P05", "54001"],
)
def test_a_data_exception_on_a_bound_parameter_is_a_422(database_url, statement, params):
    response = handle_exception(None, database_error(database_url, statement, params))  # type: ignore[arg-type]
    assert response.status_code == 422
    assert response.content["error"]["code"] == "invalid_parameter"
    assert response.content["error"]["message"].startswith("invalid input: ")


@pytest.mark.parametrize(
    "statement",
    [
        "do $$ begin perform 1 / 0; end $$",  # 22012 inside a function
        "do $$ begin perform 'not a number'::integer; end $$",  # 22P02 inside a function
        "do $$ begin perform now() + interval '300000 years'; end $$",  # 22008 inside a function
        "select 'not a number'::integer",  # in the statement itself, from no request value
    ],
    ids=["22012-in-function", "22P02-in-function", "22008-in-function", "22P02-in-statement"],
)
def test_a_data_exception_in_our_own_code_is_a_logged_500(database_url, statement, caplog):
    with caplog.at_level(logging.ERROR, logger="licentric"):
        response = handle_exception(None, database_error(database_url, statement))  # type: ignore[arg-type]
    assert response.status_code == 500
    assert response.content["error"]["code"] == "internal_error"
    assert "unmapped database error" in caplog.text
