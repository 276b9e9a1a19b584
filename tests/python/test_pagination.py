"""Cursor pagination, the same on every list (pagination.py and the SQL list
functions): newest first, `limit`, `starting_after`, `ending_before`."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from support import assert_error, create_key


@pytest.fixture
async def eight_keys(client, account) -> list[str]:
    """The account's first key and seven more, newest first."""
    first = (await client.get("/v1/api_keys", headers=account.headers)).json()["data"]
    made = [(await create_key(client, account.headers, name=f"key {i}"))["id"] for i in range(7)]
    return [*reversed(made), first[0]["id"]]


async def page(client, account, **params: Any) -> dict[str, Any]:
    response = await client.get("/v1/api_keys", headers=account.headers, params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "list"
    assert set(body) == {"object", "data", "has_more"}
    return body


async def test_list_is_newest_first(client, account, eight_keys):
    body = await page(client, account, limit=100)
    assert [key["id"] for key in body["data"]] == eight_keys
    created = [key["created_at"] for key in body["data"]]
    assert created == sorted(created, reverse=True)
    assert body["has_more"] is False


async def test_default_page_is_ten(client, account, eight_keys):
    for _ in range(3):
        await create_key(client, account.headers)
    body = await page(client, account)
    assert len(body["data"]) == 10
    assert body["has_more"] is True


async def test_walking_forward_with_starting_after_visits_every_key_once(client, account, eight_keys):
    seen: list[str] = []
    pages: list[tuple[int, bool]] = []
    params: dict[str, Any] = {"limit": 3}
    while True:
        body = await page(client, account, **params)
        ids = [key["id"] for key in body["data"]]
        seen += ids
        pages.append((len(ids), body["has_more"]))
        if not body["has_more"]:
            break
        params = {"limit": 3, "starting_after": ids[-1]}
    assert pages == [(3, True), (3, True), (2, False)]
    assert seen == eight_keys


async def test_walking_back_with_ending_before_visits_every_newer_key_once(client, account, eight_keys):
    oldest = eight_keys[-1]
    seen: list[str] = []
    pages: list[tuple[int, bool]] = []
    params: dict[str, Any] = {"limit": 3, "ending_before": oldest}
    while True:
        body = await page(client, account, **params)
        ids = [key["id"] for key in body["data"]]
        seen = ids + seen
        pages.append((len(ids), body["has_more"]))
        if not body["has_more"]:
            break
        params = {"limit": 3, "ending_before": ids[0]}
    # Each page is still newest first; the page nearest the cursor comes first.
    assert pages == [(3, True), (3, True), (1, False)]
    assert seen == eight_keys[:-1]


async def test_ending_before_returns_the_page_just_before_the_cursor(client, account, eight_keys):
    body = await page(client, account, limit=2, ending_before=eight_keys[5])
    assert [key["id"] for key in body["data"]] == eight_keys[3:5]
    assert body["has_more"] is True


async def test_starting_after_the_oldest_key_is_an_empty_last_page(client, account, eight_keys):
    body = await page(client, account, starting_after=eight_keys[-1])
    assert body == {"object": "list", "data": [], "has_more": False}


async def test_ending_before_the_newest_key_is_an_empty_first_page(client, account, eight_keys):
    body = await page(client, account, ending_before=eight_keys[0])
    assert body == {"object": "list", "data": [], "has_more": False}


async def test_a_page_exactly_as_long_as_the_rest_has_no_more(client, account, eight_keys):
    body = await page(client, account, limit=4, starting_after=eight_keys[3])
    assert [key["id"] for key in body["data"]] == eight_keys[4:]
    assert body["has_more"] is False


async def test_cursor_that_is_no_key_still_pages_by_position(client, account, eight_keys):
    # A UUIDv7 cursor is a position in time, whether or not a key has that id.
    body = await page(client, account, limit=100, starting_after=str(uuid.UUID(int=(1 << 128) - 1)))
    assert [key["id"] for key in body["data"]] == eight_keys


@pytest.mark.parametrize("limit", ["0", "-1", "101", "1000000000000", "ten", "1.5", ""])
async def test_limit_outside_1_to_100_is_a_422(client, account, limit):
    response = await client.get("/v1/api_keys", headers=account.headers, params={"limit": limit})
    assert_error(response, 422, "invalid_parameter", "limit")


@pytest.mark.parametrize("limit", ["1", "100"])
async def test_limit_bounds_are_accepted(client, account, limit):
    assert len((await page(client, account, limit=limit))["data"]) == 1


@pytest.mark.parametrize("cursor", ["starting_after", "ending_before"])
@pytest.mark.parametrize("value", ["not-a-uuid", "1", "01a2", "'; drop table lic.api_keys; --"])
async def test_invalid_cursor_is_a_422(client, account, cursor, value):
    response = await client.get("/v1/api_keys", headers=account.headers, params={cursor: value})
    assert_error(response, 422, "invalid_parameter", cursor)


async def test_both_cursors_at_once_is_a_422(client, account):
    response = await client.get(
        "/v1/api_keys",
        headers=account.headers,
        params={"starting_after": str(uuid.uuid4()), "ending_before": str(uuid.uuid4())},
    )
    assert_error(response, 422, "invalid_parameter", "ending_before")
