"""The events list over HTTP: newest first, by type, keyset pages, one event
by id, and isolation."""

from __future__ import annotations

import uuid

from licensing_support import make_license, make_policy
from support import assert_error, bearer

EVENT_FIELDS = {"object", "id", "type", "created", "data"}


async def activity(client, account, database_url):
    """A license, two machines on it, one deactivated: four events."""
    license_id = make_license(database_url, account.secret_key, make_policy(database_url, account.id))
    path = f"/v1/licenses/{license_id}/machines"
    one = (await client.post(path, headers=account.headers, json={"fingerprint": "one"})).json()
    two = (await client.post(path, headers=account.headers, json={"fingerprint": "two"})).json()
    await client.delete(f"/v1/machines/{two['id']}", headers=account.headers)
    return license_id, one, two


async def test_events_are_listed_newest_first(client, account, database_url):
    license_id, one, two = await activity(client, account, database_url)
    response = await client.get("/v1/events", headers=account.headers)
    assert response.status_code == 200
    page = response.json()
    assert page["object"] == "list" and page["has_more"] is False
    assert all(set(e) == EVENT_FIELDS and e["object"] == "event" for e in page["data"])
    assert [(e["type"], e["data"]["object"]["id"]) for e in page["data"]] == [
        ("machine.deactivated", two["id"]),
        ("machine.activated", two["id"]),
        ("machine.activated", one["id"]),
        ("license.created", license_id),
    ]
    assert all(e["data"]["previous_attributes"] is None for e in page["data"])


async def test_events_filter_by_type(client, account, database_url):
    _, one, two = await activity(client, account, database_url)
    page = (
        await client.get("/v1/events", headers=account.headers, params={"type": "machine.activated"})
    ).json()
    assert [e["data"]["object"]["id"] for e in page["data"]] == [two["id"], one["id"]]
    assert {e["type"] for e in page["data"]} == {"machine.activated"}
    none = (
        await client.get("/v1/events", headers=account.headers, params={"type": "nothing.happened"})
    ).json()
    assert none["data"] == []


async def test_events_page_with_cursors_and_type(client, account, database_url):
    await activity(client, account, database_url)
    everything = [e["id"] for e in (await client.get("/v1/events", headers=account.headers)).json()["data"]]
    first = (await client.get("/v1/events", headers=account.headers, params={"limit": 2})).json()
    assert [e["id"] for e in first["data"]] == everything[:2] and first["has_more"] is True
    rest = (
        await client.get("/v1/events", headers=account.headers, params={"starting_after": everything[1]})
    ).json()
    assert [e["id"] for e in rest["data"]] == everything[2:] and rest["has_more"] is False
    back = (
        await client.get(
            "/v1/events", headers=account.headers, params={"ending_before": everything[3], "limit": 2}
        )
    ).json()
    assert [e["id"] for e in back["data"]] == everything[1:3] and back["has_more"] is True
    typed = (
        await client.get(
            "/v1/events",
            headers=account.headers,
            params={"type": "machine.activated", "limit": 1, "starting_after": everything[0]},
        )
    ).json()
    assert [e["id"] for e in typed["data"]] == [everything[1]] and typed["has_more"] is True


async def test_one_event_by_id(client, account, database_url):
    await activity(client, account, database_url)
    [latest] = (await client.get("/v1/events", headers=account.headers, params={"limit": 1})).json()["data"]
    response = await client.get(f"/v1/events/{latest['id']}", headers=account.headers)
    assert response.status_code == 200
    assert response.json() == latest
    assert_error(
        await client.get(f"/v1/events/{uuid.uuid4()}", headers=account.headers), 404, "resource_missing"
    )
    assert_error(await client.get("/v1/events/not-a-uuid", headers=account.headers), 404, "route_not_found")


async def test_invalid_page_is_a_422(client, account):
    assert_error(
        await client.get("/v1/events", headers=account.headers, params={"limit": 0}), 422, "invalid_parameter"
    )
    assert_error(
        await client.get(
            "/v1/events",
            headers=account.headers,
            params={"starting_after": str(uuid.uuid4()), "ending_before": str(uuid.uuid4())},
        ),
        422,
        "invalid_parameter",
    )


async def test_another_tenants_events_are_not_found(client, make_account, database_url):
    a, b = make_account("A"), make_account("B")
    await activity(client, a, database_url)
    a_events = (await client.get("/v1/events", headers=a.headers)).json()["data"]
    assert a_events
    for event in a_events:
        assert_error(
            await client.get(f"/v1/events/{event['id']}", headers=b.headers), 404, "resource_missing"
        )
    assert (await client.get("/v1/events", headers=b.headers)).json()["data"] == []
    typed = await client.get("/v1/events", headers=b.headers, params={"type": "machine.activated"})
    assert typed.json()["data"] == []


async def test_an_agent_token_cannot_read_events(client, account):
    agent = (await client.post("/v1/agents", headers=account.headers, json={"name": "bot"})).json()
    assert_error(await client.get("/v1/events", headers=bearer(agent["token"])), 403, "forbidden")
