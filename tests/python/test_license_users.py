"""Team seats over HTTP: the owner seat, adding by customer or email within
max users (also under concurrency), removing, listing, and isolation."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import httpx
import pytest

from licensing_support import live_server, make_customer, make_license, make_policy, superuser
from support import assert_error, bearer, create_key

SEAT_FIELDS = {"object", "license_id", "customer_id", "email", "name", "role", "created_at"}


@pytest.fixture
def team(database_url, account):
    """A license for three users, owned by a customer, and a second customer."""
    policy = make_policy(database_url, account.id, max_users=3)
    owner = make_customer(database_url, account.id, "owner@example.com", "Olivia Owner")
    member = make_customer(database_url, account.id, "Member@Example.com", "Max Member")
    return {
        "license": make_license(database_url, account.secret_key, policy, owner),
        "owner": owner,
        "member": member,
    }


def users_path(license_id: str) -> str:
    return f"/v1/licenses/{license_id}/users"


async def test_the_licenses_customer_holds_the_owner_seat(client, account, team):
    response = await client.get(users_path(team["license"]), headers=account.headers)
    assert response.status_code == 200
    page = response.json()
    assert page["object"] == "list" and page["has_more"] is False
    [seat] = page["data"]
    assert set(seat) == SEAT_FIELDS
    assert seat["object"] == "license_user"
    assert (seat["customer_id"], seat["email"], seat["name"], seat["role"]) == (
        team["owner"],
        "owner@example.com",
        "Olivia Owner",
        "owner",
    )


async def test_a_customer_is_added_by_id_once(client, account, team):
    response = await client.post(
        users_path(team["license"]), headers=account.headers, json={"customer_id": team["member"]}
    )
    assert response.status_code == 201, response.text
    seat = response.json()
    assert (seat["license_id"], seat["customer_id"], seat["email"], seat["role"]) == (
        team["license"],
        team["member"],
        "Member@Example.com",
        "member",
    )
    again = await client.post(
        users_path(team["license"]), headers=account.headers, json={"email": "member@example.COM"}
    )
    assert again.status_code == 201
    assert again.json() == seat
    events = (await client.get("/v1/events?type=license.user_added", headers=account.headers)).json()
    assert [e["data"]["object"]["customer_id"] for e in events["data"]] == [team["member"]]


async def test_an_unknown_email_creates_the_customer(client, account, team):
    response = await client.post(
        users_path(team["license"]),
        headers=account.headers,
        json={"email": "new@example.com", "role": "member"},
    )
    assert response.status_code == 201
    seat = response.json()
    assert seat["email"] == "new@example.com" and seat["name"] is None
    created = (await client.get("/v1/events?type=customer.created", headers=account.headers)).json()
    assert [e["data"]["object"]["id"] for e in created["data"]] == [seat["customer_id"]]
    assert created["data"][0]["data"]["object"]["email"] == "new@example.com"


async def test_max_users_counts_every_seat(client, account, team):
    path = users_path(team["license"])
    assert (
        await client.post(path, headers=account.headers, json={"customer_id": team["member"]})
    ).status_code == 201
    assert (
        await client.post(path, headers=account.headers, json={"email": "third@example.com"})
    ).status_code == 201
    error = assert_error(
        await client.post(path, headers=account.headers, json={"email": "fourth@example.com"}),
        409,
        "invalid_state",
    )
    assert "3 users" in error["message"]
    customers = (await client.get("/v1/events?type=customer.created", headers=account.headers)).json()
    assert [e["data"]["object"]["email"] for e in customers["data"]] == ["third@example.com"]


async def test_removing_a_seat_frees_it_but_the_owner_stays(client, account, team):
    path = users_path(team["license"])
    added = (await client.post(path, headers=account.headers, json={"customer_id": team["member"]})).json()
    removed = await client.delete(f"{path}/{team['member']}", headers=account.headers)
    assert removed.status_code == 200
    assert removed.json() == added
    assert_error(
        await client.delete(f"{path}/{team['member']}", headers=account.headers), 404, "resource_missing"
    )
    assert_error(
        await client.delete(f"{path}/{team['owner']}", headers=account.headers), 409, "invalid_state"
    )
    listed = (await client.get(path, headers=account.headers)).json()
    assert [s["customer_id"] for s in listed["data"]] == [team["owner"]]
    events = (await client.get("/v1/events?type=license.user_removed", headers=account.headers)).json()
    assert [e["data"]["object"]["customer_id"] for e in events["data"]] == [team["member"]]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "customer_id"),
        ({"customer_id": "00000000-0000-0000-0000-000000000000", "email": "x@example.com"}, "customer_id"),
        ({"email": "not an address"}, "email"),
        ({"email": "x@example.com", "role": "admin"}, "role"),
        ({"customer_id": "not-a-uuid"}, "customer_id"),
    ],
)
async def test_invalid_seat_is_a_422(client, account, team, body, param):
    response = await client.post(users_path(team["license"]), headers=account.headers, json=body)
    assert_error(response, 422, "invalid_parameter", param)


async def test_unknown_license_or_customer_is_a_404(client, account, team):
    assert_error(
        await client.post(
            users_path(str(uuid.uuid4())), headers=account.headers, json={"email": "a@example.com"}
        ),
        404,
        "resource_missing",
        "license_id",
    )
    assert_error(
        await client.post(
            users_path(team["license"]), headers=account.headers, json={"customer_id": str(uuid.uuid4())}
        ),
        404,
        "resource_missing",
        "customer_id",
    )
    assert_error(
        await client.get(users_path(str(uuid.uuid4())), headers=account.headers), 404, "resource_missing"
    )


async def test_list_pages_by_customer_id(client, account, database_url):
    owner = make_customer(database_url, account.id, "o@example.com")
    license_id = make_license(database_url, account.secret_key, make_policy(database_url, account.id), owner)
    added = [
        (
            await client.post(
                users_path(license_id), headers=account.headers, json={"email": f"u{i}@example.com"}
            )
        ).json()["customer_id"]
        for i in range(3)
    ]
    newest_first = [*added[::-1], owner]
    first = (await client.get(users_path(license_id), headers=account.headers, params={"limit": 2})).json()
    assert [s["customer_id"] for s in first["data"]] == newest_first[:2]
    assert first["has_more"] is True
    rest = (
        await client.get(
            users_path(license_id), headers=account.headers, params={"starting_after": newest_first[1]}
        )
    ).json()
    assert [s["customer_id"] for s in rest["data"]] == newest_first[2:]
    assert rest["has_more"] is False


async def test_another_tenants_seats_are_not_found(client, make_account, database_url):
    a, b = make_account("A"), make_account("B")
    owner = make_customer(database_url, a.id, "a@example.com")
    license_id = make_license(database_url, a.secret_key, make_policy(database_url, a.id), owner)
    b_customer = make_customer(database_url, b.id, "b@example.com")
    b_license = make_license(database_url, b.secret_key, make_policy(database_url, b.id), b_customer)
    for method, path, body in [
        ("GET", users_path(license_id), None),
        ("POST", users_path(license_id), {"email": "intruder@example.com"}),
        ("DELETE", f"{users_path(license_id)}/{owner}", None),
        ("POST", users_path(b_license), {"customer_id": owner}),
    ]:
        assert_error(
            await client.request(method, path, headers=b.headers, json=body), 404, "resource_missing"
        )
    listed = (await client.get(users_path(license_id), headers=a.headers)).json()
    assert [s["customer_id"] for s in listed["data"]] == [owner]
    # adding by email looks only at the tenant's own customers
    seat = (
        await client.post(users_path(b_license), headers=b.headers, json={"email": "a@example.com"})
    ).json()
    assert seat["customer_id"] != owner
    rows = superuser(
        database_url, "select account_id::text from lic.customers where id = %s", (seat["customer_id"],)
    )
    assert rows == [{"account_id": b.id}]


async def test_a_publishable_key_cannot_manage_seats(client, account, team):
    key = await create_key(client, account.headers, "publishable")
    response = await client.post(
        users_path(team["license"]), headers=bearer(key["secret"]), json={"email": "p@x.io"}
    )
    assert_error(response, 403, "forbidden")


@pytest.fixture(scope="module")
def server(settings) -> Iterator[str]:
    with live_server(settings) as url:
        yield url


async def test_parallel_adds_never_pass_max_users(server, account, database_url):
    owner = make_customer(database_url, account.id, "owner@example.com")
    license_id = make_license(
        database_url, account.secret_key, make_policy(database_url, account.id, max_users=3), owner
    )
    async with httpx.AsyncClient(base_url=server, timeout=20) as http:
        responses = await asyncio.gather(
            *(
                http.post(
                    users_path(license_id), headers=account.headers, json={"email": f"p{i}@example.com"}
                )
                for i in range(10)
            )
        )
        listed = (await http.get(users_path(license_id), headers=account.headers)).json()
    assert sorted(r.status_code for r in responses) == [201] * 2 + [409] * 8, [r.text for r in responses]
    assert len(listed["data"]) == 3
