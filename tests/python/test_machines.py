"""Machines over HTTP: activation within max machines (also under
concurrency), heartbeats, deactivation, transfer, listing, and isolation."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import httpx
import pytest

from licensing_support import live_server, make_customer, make_license, make_policy, superuser
from support import assert_error, bearer, create_key

MACHINE_FIELDS = {
    "object",
    "id",
    "license_id",
    "fingerprint",
    "name",
    "platform",
    "metadata",
    "alive",
    "last_heartbeat_at",
    "created_at",
    "updated_at",
}


@pytest.fixture
def licensed(database_url, account):
    """An account with a customer who holds two licenses (max 3 machines each) and another customer's one."""
    policy = make_policy(database_url, account.id, max_machines=3)
    customer = make_customer(database_url, account.id, "owner@example.com")
    other = make_customer(database_url, account.id, "other@example.com")
    return {
        "policy": policy,
        "first": make_license(database_url, account.secret_key, policy, customer),
        "second": make_license(database_url, account.secret_key, policy, customer),
        "foreign": make_license(database_url, account.secret_key, policy, other),
    }


async def activate(client, headers, license_id, fingerprint, **fields):
    return await client.post(
        f"/v1/licenses/{license_id}/machines", headers=headers, json={"fingerprint": fingerprint, **fields}
    )


async def test_activated_machine_is_answered_and_can_be_read_back(client, account, licensed):
    response = await activate(
        client,
        account.headers,
        licensed["first"],
        "fp-1",
        name="laptop",
        platform="linux",
        metadata={"team": "core"},
    )
    assert response.status_code == 201, response.text
    machine = response.json()
    assert set(machine) == MACHINE_FIELDS
    assert machine["object"] == "machine"
    assert (machine["license_id"], machine["fingerprint"], machine["name"], machine["platform"]) == (
        licensed["first"],
        "fp-1",
        "laptop",
        "linux",
    )
    assert machine["metadata"] == {"team": "core"}
    assert machine["alive"] is True
    got = await client.get(f"/v1/machines/{machine['id']}", headers=account.headers)
    assert got.status_code == 200
    assert got.json() == machine


async def test_activating_the_same_fingerprint_again_returns_the_same_machine(client, account, licensed):
    first = (await activate(client, account.headers, licensed["first"], "fp-1")).json()
    again = await activate(client, account.headers, licensed["first"], "fp-1", name="renamed")
    assert again.status_code == 201
    assert again.json()["id"] == first["id"]
    assert again.json()["name"] is None
    listed = (await client.get(f"/v1/licenses/{licensed['first']}/machines", headers=account.headers)).json()
    assert [m["id"] for m in listed["data"]] == [first["id"]]
    events = (await client.get("/v1/events?type=machine.activated", headers=account.headers)).json()
    assert [e["data"]["object"]["id"] for e in events["data"]] == [first["id"]]


async def test_activation_past_max_machines_is_a_409(client, account, licensed):
    for i in range(3):
        assert (await activate(client, account.headers, licensed["first"], f"fp-{i}")).status_code == 201
    refused = await activate(client, account.headers, licensed["first"], "fp-3")
    error = assert_error(refused, 409, "invalid_state")
    assert "3 machines" in error["message"]
    # another license has its own limit
    assert (await activate(client, account.headers, licensed["second"], "fp-3")).status_code == 201


@pytest.mark.parametrize(
    ("change", "effective"),
    [
        ("status = 'suspended'", "suspended"),
        ("status = 'canceled', canceled_at = now()", "canceled"),
        ("expires_at = now() - interval '1 day'", "expired"),
        ("status = 'past_due', grace_ends_at = now() - interval '1 hour'", "overdue"),
    ],
)
async def test_activation_on_an_unusable_license_is_a_409(
    client, account, licensed, database_url, change, effective
):
    superuser(database_url, f"update lic.licenses set {change} where id = %s", (licensed["first"],))
    refused = await activate(client, account.headers, licensed["first"], "fp-1")
    assert effective in assert_error(refused, 409, "invalid_state")["message"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "fingerprint"),
        ({"fingerprint": ""}, "fingerprint"),
        ({"fingerprint": "f" * 501}, "fingerprint"),
        ({"fingerprint": "ok", "metadata": []}, "metadata"),
        ({"fingerprint": "ok", "color": "red"}, None),
    ],
)
async def test_invalid_activation_is_a_422(client, account, licensed, body, param):
    response = await client.post(
        f"/v1/licenses/{licensed['first']}/machines", headers=account.headers, json=body
    )
    error = assert_error(response, 422, "invalid_parameter")
    if param:
        assert error["param"] == param


async def test_activation_on_an_unknown_license_is_a_404(client, account):
    response = await activate(client, account.headers, uuid.uuid4(), "fp-1")
    assert_error(response, 404, "resource_missing", "license_id")


async def test_heartbeat_records_the_time_and_keeps_the_machine_alive(client, account, database_url):
    policy = make_policy(database_url, account.id, max_machines=1, heartbeat_interval="10 minutes")
    license_id = make_license(database_url, account.secret_key, policy)
    machine = (await activate(client, account.headers, license_id, "fp-1")).json()
    superuser(
        database_url,
        "update lic.machines set last_heartbeat_at = now() - interval '1 hour' where id = %s",
        (machine["id"],),
    )
    dead = (await client.get(f"/v1/machines/{machine['id']}", headers=account.headers)).json()
    assert dead["alive"] is False
    beat = await client.post(f"/v1/machines/{machine['id']}/heartbeat", headers=account.headers)
    assert beat.status_code == 200
    assert beat.json()["alive"] is True
    assert beat.json()["last_heartbeat_at"] > dead["last_heartbeat_at"]
    assert_error(
        await client.post(f"/v1/machines/{uuid.uuid4()}/heartbeat", headers=account.headers),
        404,
        "resource_missing",
    )


async def test_a_dead_machine_makes_room_for_a_new_one(client, account, database_url):
    policy = make_policy(database_url, account.id, max_machines=1, heartbeat_interval="10 minutes")
    license_id = make_license(database_url, account.secret_key, policy)
    old = (await activate(client, account.headers, license_id, "old")).json()
    assert_error(await activate(client, account.headers, license_id, "new"), 409, "invalid_state")
    superuser(
        database_url,
        "update lic.machines set last_heartbeat_at = now() - interval '11 minutes' where id = %s",
        (old["id"],),
    )
    new = await activate(client, account.headers, license_id, "new")
    assert new.status_code == 201
    assert_error(
        await client.get(f"/v1/machines/{old['id']}", headers=account.headers), 404, "resource_missing"
    )
    deactivated = (await client.get("/v1/events?type=machine.deactivated", headers=account.headers)).json()
    assert [e["data"]["object"]["id"] for e in deactivated["data"]] == [old["id"]]


async def test_deactivation_removes_the_machine_and_frees_its_place(client, account, licensed):
    machines = [
        (await activate(client, account.headers, licensed["first"], f"fp-{i}")).json() for i in range(3)
    ]
    response = await client.delete(f"/v1/machines/{machines[0]['id']}", headers=account.headers)
    assert response.status_code == 200
    assert response.json() == machines[0]
    assert_error(
        await client.get(f"/v1/machines/{machines[0]['id']}", headers=account.headers),
        404,
        "resource_missing",
    )
    assert_error(
        await client.delete(f"/v1/machines/{machines[0]['id']}", headers=account.headers),
        404,
        "resource_missing",
    )
    assert (await activate(client, account.headers, licensed["first"], "fp-new")).status_code == 201
    events = (await client.get("/v1/events?type=machine.deactivated", headers=account.headers)).json()
    assert [(e["data"]["object"]["id"], e["data"]["object"]["fingerprint"]) for e in events["data"]] == [
        (machines[0]["id"], "fp-0")
    ]


async def test_transfer_moves_a_machine_to_another_license_of_the_same_customer(client, account, licensed):
    machine = (await activate(client, account.headers, licensed["first"], "fp-1")).json()
    response = await client.post(
        f"/v1/machines/{machine['id']}/transfer",
        headers=account.headers,
        json={"license_id": licensed["second"]},
    )
    assert response.status_code == 200, response.text
    assert response.json()["license_id"] == licensed["second"]
    assert response.json()["id"] == machine["id"]
    events = (await client.get("/v1/events?type=machine.transferred", headers=account.headers)).json()
    assert len(events["data"]) == 1
    assert events["data"][0]["data"]["previous_attributes"] == {"license_id": licensed["first"]}
    first = (await client.get(f"/v1/licenses/{licensed['first']}/machines", headers=account.headers)).json()
    second = (await client.get(f"/v1/licenses/{licensed['second']}/machines", headers=account.headers)).json()
    assert first["data"] == []
    assert [m["id"] for m in second["data"]] == [machine["id"]]


async def test_transfer_refusals(client, account, licensed, database_url):
    machine = (await activate(client, account.headers, licensed["first"], "fp-1")).json()
    path = f"/v1/machines/{machine['id']}/transfer"
    # another customer's license
    assert_error(
        await client.post(path, headers=account.headers, json={"license_id": licensed["foreign"]}),
        409,
        "invalid_state",
    )
    # the fingerprint is on the target already
    await activate(client, account.headers, licensed["second"], "fp-1")
    assert_error(
        await client.post(path, headers=account.headers, json={"license_id": licensed["second"]}),
        409,
        "invalid_state",
    )
    # the target is full
    other = (await activate(client, account.headers, licensed["first"], "fp-2")).json()
    for i in range(2):
        await activate(client, account.headers, licensed["second"], f"full-{i}")
    assert_error(
        await client.post(
            f"/v1/machines/{other['id']}/transfer",
            headers=account.headers,
            json={"license_id": licensed["second"]},
        ),
        409,
        "invalid_state",
    )
    # unknown target, missing body
    assert_error(
        await client.post(path, headers=account.headers, json={"license_id": str(uuid.uuid4())}),
        404,
        "resource_missing",
    )
    assert_error(
        await client.post(path, headers=account.headers, json={}), 422, "invalid_parameter", "license_id"
    )


async def test_list_pages_through_a_licenses_machines(client, account, database_url):
    license_id = make_license(database_url, account.secret_key, make_policy(database_url, account.id))
    made = [(await activate(client, account.headers, license_id, f"fp-{i}")).json()["id"] for i in range(5)]
    path = f"/v1/licenses/{license_id}/machines"
    first = (await client.get(path, headers=account.headers, params={"limit": 2})).json()
    assert first["object"] == "list"
    assert [m["id"] for m in first["data"]] == made[::-1][:2]
    assert first["has_more"] is True
    rest = (
        await client.get(path, headers=account.headers, params={"limit": 10, "starting_after": made[3]})
    ).json()
    assert [m["id"] for m in rest["data"]] == made[::-1][2:]
    assert rest["has_more"] is False
    back = (
        await client.get(path, headers=account.headers, params={"limit": 2, "ending_before": made[1]})
    ).json()
    assert [m["id"] for m in back["data"]] == [made[3], made[2]]
    assert back["has_more"] is True
    assert_error(
        await client.get(f"/v1/licenses/{uuid.uuid4()}/machines", headers=account.headers),
        404,
        "resource_missing",
    )


async def test_another_tenants_machines_are_not_found(client, make_account, database_url):
    a, b = make_account("A"), make_account("B")
    policy = make_policy(database_url, a.id, max_machines=3)
    customer = make_customer(database_url, a.id, "a@example.com")
    license_id = make_license(database_url, a.secret_key, policy, customer)
    second = make_license(database_url, a.secret_key, policy, customer)
    machine = (await activate(client, a.headers, license_id, "fp-a")).json()
    b_license = make_license(database_url, b.secret_key, make_policy(database_url, b.id))
    b_machine = (await activate(client, b.headers, b_license, "fp-b")).json()

    for method, path, body in [
        ("GET", f"/v1/machines/{machine['id']}", None),
        ("DELETE", f"/v1/machines/{machine['id']}", None),
        ("POST", f"/v1/machines/{machine['id']}/heartbeat", None),
        ("POST", f"/v1/machines/{machine['id']}/transfer", {"license_id": second}),
        ("POST", f"/v1/machines/{b_machine['id']}/transfer", {"license_id": license_id}),
        ("GET", f"/v1/licenses/{license_id}/machines", None),
        ("POST", f"/v1/licenses/{license_id}/machines", {"fingerprint": "steal"}),
    ]:
        response = await client.request(method, path, headers=b.headers, json=body)
        assert_error(response, 404, "resource_missing")
    still = await client.get(f"/v1/machines/{machine['id']}", headers=a.headers)
    assert still.json() == machine
    listed = (await client.get(f"/v1/licenses/{b_license}/machines", headers=b.headers)).json()
    assert [m["id"] for m in listed["data"]] == [b_machine["id"]]


async def test_a_publishable_key_cannot_manage_machines(client, account, licensed):
    key = await create_key(client, account.headers, "publishable")
    response = await activate(client, bearer(key["secret"]), licensed["first"], "fp-1")
    assert_error(response, 403, "forbidden")


@pytest.fixture(scope="module")
def server(settings) -> Iterator[str]:
    with live_server(settings) as url:
        yield url


async def test_parallel_activations_never_pass_max_machines(server, account, database_url):
    policy = make_policy(database_url, account.id, max_machines=3)
    license_id = make_license(database_url, account.secret_key, policy)
    async with httpx.AsyncClient(base_url=server, timeout=20) as http:
        responses = await asyncio.gather(
            *(activate(http, account.headers, license_id, f"parallel-{i}") for i in range(10))
        )
        listed = (await http.get(f"/v1/licenses/{license_id}/machines", headers=account.headers)).json()
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] * 3 + [409] * 7, [r.text for r in responses]
    assert sorted(m["id"] for m in listed["data"]) == sorted(
        r.json()["id"] for r in responses if r.status_code == 201
    )


async def test_parallel_activations_of_one_fingerprint_make_one_machine(server, account, database_url):
    license_id = make_license(
        database_url, account.secret_key, make_policy(database_url, account.id, max_machines=3)
    )
    async with httpx.AsyncClient(base_url=server, timeout=20) as http:
        responses = await asyncio.gather(
            *(activate(http, account.headers, license_id, "same") for _ in range(8))
        )
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["id"] for r in responses}) == 1
