"""Agent identities over HTTP: tokens shown once, GET /v1/agents/me for the
agent itself and nothing else, revoke and roll taking effect at once, the
tenant plan's agent limit (also under concurrency), and isolation."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator

import httpx
import pytest

from licensing_support import live_server, make_license, make_policy
from support import assert_error, bearer, create_key, with_checksum

AGENT_FIELDS = {
    "object",
    "id",
    "name",
    "license_id",
    "status",
    "redacted",
    "metadata",
    "created_at",
    "updated_at",
    "revoked_at",
    "token",
}


async def create_agent(client, headers, **fields):
    response = await client.post("/v1/agents", headers=headers, json={"name": "bot", **fields})
    assert response.status_code == 201, response.text
    return response.json()


async def test_created_agent_carries_its_token_once(client, account, database_url):
    license_id = make_license(database_url, account.secret_key, make_policy(database_url, account.id))
    response = await client.post(
        "/v1/agents",
        headers=account.headers,
        json={"name": "support bot", "license_id": license_id, "metadata": {"model": "x"}},
    )
    assert response.status_code == 201, response.text
    agent = response.json()
    assert set(agent) == AGENT_FIELDS
    assert agent["object"] == "agent"
    assert (agent["name"], agent["license_id"], agent["status"], agent["metadata"]) == (
        "support bot",
        license_id,
        "active",
        {"model": "x"},
    )
    token = agent["token"]
    assert re.fullmatch(rf"lic_ak_{uuid.UUID(account.id).hex}[0-9a-f]{{48}}", token)
    assert with_checksum(token[:-8]) == token
    assert agent["redacted"] == f"{token[:7]}…{token[-4:]}"
    got = await client.get(f"/v1/agents/{agent['id']}", headers=account.headers)
    assert got.json() == {**agent, "token": None}
    listed = await client.get("/v1/agents", headers=account.headers)
    assert token[7:-4] not in listed.text
    assert [a["id"] for a in listed.json()["data"]] == [agent["id"]]
    events = await client.get("/v1/events?type=agent.created", headers=account.headers)
    assert token[7:-4] not in events.text
    assert [e["data"]["object"]["id"] for e in events.json()["data"]] == [agent["id"]]


async def test_agent_token_reaches_only_agents_me(client, account):
    agent = await create_agent(client, account.headers)
    headers = bearer(agent["token"])
    me = await client.get("/v1/agents/me", headers=headers)
    assert me.status_code == 200
    assert me.json() == {**agent, "token": None}
    for method, path, body in [
        ("GET", "/v1/account", None),
        ("GET", "/v1/licenses", None),
        ("GET", "/v1/api_keys", None),
        ("POST", "/v1/api_keys", {"kind": "secret"}),
        ("GET", "/v1/agents", None),
        ("POST", "/v1/agents", {"name": "child"}),
        ("GET", f"/v1/agents/{agent['id']}", None),
        ("POST", f"/v1/agents/{agent['id']}/roll", None),
        ("GET", "/v1/events", None),
    ]:
        response = await client.request(method, path, headers=headers, json=body)
        assert_error(response, 403, "forbidden")


async def test_agents_me_needs_an_agent_token(client, account):
    assert_error(await client.get("/v1/agents/me", headers=account.headers), 403, "forbidden")
    key = await create_key(client, account.headers, "publishable")
    assert_error(await client.get("/v1/agents/me", headers=bearer(key["secret"])), 403, "forbidden")


async def test_revoked_agent_token_stops_working_at_once(client, account):
    agent = await create_agent(client, account.headers)
    revoked = await client.post(f"/v1/agents/{agent['id']}/revoke", headers=account.headers)
    assert revoked.status_code == 200
    assert revoked.json()["status"] == "revoked" and revoked.json()["revoked_at"] is not None
    assert revoked.json()["token"] is None
    assert_error(await client.get("/v1/agents/me", headers=bearer(agent["token"])), 401, "unauthenticated")
    again = await client.post(f"/v1/agents/{agent['id']}/revoke", headers=account.headers)
    assert again.json() == revoked.json()
    events = (await client.get("/v1/events?type=agent.revoked", headers=account.headers)).json()
    assert len(events["data"]) == 1
    assert_error(
        await client.post(f"/v1/agents/{agent['id']}/roll", headers=account.headers), 409, "invalid_state"
    )


async def test_rolled_token_replaces_the_old_one_at_once(client, account):
    agent = await create_agent(client, account.headers)
    rolled = await client.post(f"/v1/agents/{agent['id']}/roll", headers=account.headers)
    assert rolled.status_code == 200
    new_token = rolled.json()["token"]
    assert new_token and new_token != agent["token"]
    assert rolled.json()["redacted"] == f"{new_token[:7]}…{new_token[-4:]}"
    assert_error(await client.get("/v1/agents/me", headers=bearer(agent["token"])), 401, "unauthenticated")
    me = await client.get("/v1/agents/me", headers=bearer(new_token))
    assert me.status_code == 200 and me.json()["id"] == agent["id"]
    events = (await client.get("/v1/events?type=agent.token_rolled", headers=account.headers)).json()
    assert [e["data"]["previous_attributes"] for e in events["data"]] == [{"redacted": agent["redacted"]}]


async def test_update_renames_and_replaces_metadata(client, account):
    agent = await create_agent(client, account.headers, metadata={"a": 1})
    renamed = await client.post(
        f"/v1/agents/{agent['id']}", headers=account.headers, json={"name": "renamed"}
    )
    assert renamed.status_code == 200
    assert (renamed.json()["name"], renamed.json()["metadata"]) == ("renamed", {"a": 1})
    replaced = await client.post(
        f"/v1/agents/{agent['id']}", headers=account.headers, json={"metadata": {"b": 2}}
    )
    assert (replaced.json()["name"], replaced.json()["metadata"]) == ("renamed", {"b": 2})
    events = (await client.get("/v1/events?type=agent.updated", headers=account.headers)).json()
    assert [e["data"]["previous_attributes"] for e in events["data"]] == [
        {"metadata": {"a": 1}},
        {"name": "bot"},
    ]
    assert_error(
        await client.post(f"/v1/agents/{agent['id']}", headers=account.headers, json={"name": ""}),
        422,
        "invalid_parameter",
        "name",
    )


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "n" * 201}, "name"),
        ({"name": "x", "metadata": [1]}, "metadata"),
    ],
)
async def test_invalid_agent_is_a_422(client, account, body, param):
    assert_error(
        await client.post("/v1/agents", headers=account.headers, json=body), 422, "invalid_parameter", param
    )


async def test_agent_for_an_unknown_license_is_a_404(client, account):
    response = await client.post(
        "/v1/agents", headers=account.headers, json={"name": "x", "license_id": str(uuid.uuid4())}
    )
    assert_error(response, 404, "resource_missing", "license_id")


async def test_list_filters_by_status_and_pages(client, account):
    made = [await create_agent(client, account.headers, name=f"a{i}") for i in range(4)]
    await client.post(f"/v1/agents/{made[1]['id']}/revoke", headers=account.headers)
    active = (await client.get("/v1/agents", headers=account.headers, params={"status": "active"})).json()
    assert [a["id"] for a in active["data"]] == [made[3]["id"], made[2]["id"], made[0]["id"]]
    revoked = (await client.get("/v1/agents", headers=account.headers, params={"status": "revoked"})).json()
    assert [a["id"] for a in revoked["data"]] == [made[1]["id"]]
    page = (await client.get("/v1/agents", headers=account.headers, params={"limit": 2})).json()
    assert [a["id"] for a in page["data"]] == [made[3]["id"], made[2]["id"]] and page["has_more"] is True
    assert_error(
        await client.get("/v1/agents", headers=account.headers, params={"status": "gone"}),
        422,
        "invalid_parameter",
    )


async def test_the_free_plan_allows_five_active_agents(client, account):
    made = [await create_agent(client, account.headers, name=f"a{i}") for i in range(5)]
    assert_error(
        await client.post("/v1/agents", headers=account.headers, json={"name": "sixth"}),
        402,
        "plan_limit_reached",
    )
    usage = (await client.get("/v1/account", headers=account.headers)).json()["usage"]
    assert usage["agents"] == 5
    await client.post(f"/v1/agents/{made[0]['id']}/revoke", headers=account.headers)
    assert (
        await client.post("/v1/agents", headers=account.headers, json={"name": "sixth"})
    ).status_code == 201


async def test_another_tenants_agents_are_not_found(client, make_account):
    a, b = make_account("A"), make_account("B")
    agent = await create_agent(client, a.headers)
    for method, path, body in [
        ("GET", f"/v1/agents/{agent['id']}", None),
        ("POST", f"/v1/agents/{agent['id']}", {"name": "mine"}),
        ("POST", f"/v1/agents/{agent['id']}/revoke", None),
        ("POST", f"/v1/agents/{agent['id']}/roll", None),
    ]:
        assert_error(
            await client.request(method, path, headers=b.headers, json=body), 404, "resource_missing"
        )
    assert (await client.get("/v1/agents", headers=b.headers)).json()["data"] == []
    # A's agent is untouched and its token still works
    me = await client.get("/v1/agents/me", headers=bearer(agent["token"]))
    assert me.json() == {**agent, "token": None}


async def test_a_replayed_agent_creation_never_shows_the_token(client, account):
    headers = {**account.headers, "Idempotency-Key": f"agent-{uuid.uuid4()}"}
    first = await client.post("/v1/agents", headers=headers, json={"name": "once"})
    again = await client.post("/v1/agents", headers=headers, json={"name": "once"})
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == {**first.json(), "token": None}


@pytest.fixture(scope="module")
def server(settings) -> Iterator[str]:
    with live_server(settings) as url:
        yield url


async def test_parallel_creates_never_pass_the_plans_agent_limit(server, account):
    async with httpx.AsyncClient(base_url=server, timeout=20) as http:
        responses = await asyncio.gather(
            *(http.post("/v1/agents", headers=account.headers, json={"name": f"p{i}"}) for i in range(10))
        )
        listed = (await http.get("/v1/agents", headers=account.headers, params={"limit": 100})).json()
    assert sorted(r.status_code for r in responses) == [201] * 5 + [402] * 5, [r.text for r in responses]
    assert len(listed["data"]) == 5
