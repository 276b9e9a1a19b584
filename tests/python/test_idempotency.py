"""Idempotency-Key on POST (DESIGN §7): stored per account in the effect's
transaction; a replay gets the stored answer, a different payload 422, a
concurrent duplicate 409; a failed request stores nothing."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
import uvicorn

from licentric.app import create_app

from support import all_key_ids, assert_error, create_key


def idempotent(headers: dict[str, str], key: str) -> dict[str, str]:
    return {**headers, "Idempotency-Key": key}


async def test_replay_returns_the_stored_response_and_creates_nothing(client, account):
    headers = idempotent(account.headers, f"create-{uuid.uuid4()}")
    first = await client.post("/v1/api_keys", headers=headers, json={"kind": "publishable", "name": "web"})
    assert first.status_code == 201
    assert "idempotent-replayed" not in first.headers
    keys_after_first = await all_key_ids(client, account.headers)

    for _ in range(2):
        again = await client.post(
            "/v1/api_keys", headers=headers, json={"name": "web", "kind": "publishable"}
        )
        assert again.status_code == 201
        assert again.headers["idempotent-replayed"] == "true"
        assert again.json()["id"] == first.json()["id"]
        # the clear key is shown once: the stored answer never holds it
        assert again.json() == {**first.json(), "secret": None}
    assert await all_key_ids(client, account.headers) == keys_after_first
    assert len(keys_after_first) == 2


async def test_replay_of_a_roll_does_not_roll_again(client, account):
    old = await create_key(client, account.headers)
    headers = idempotent(account.headers, "roll-once")
    first = await client.post(f"/v1/api_keys/{old['id']}/roll", headers=headers)
    again = await client.post(f"/v1/api_keys/{old['id']}/roll", headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert len(await all_key_ids(client, account.headers)) == 3


async def test_posts_without_idempotency_key_each_take_effect(client, account):
    body = {"kind": "publishable"}
    first = await client.post("/v1/api_keys", headers=account.headers, json=body)
    second = await client.post("/v1/api_keys", headers=account.headers, json=body)
    assert first.json()["id"] != second.json()["id"]
    assert "idempotent-replayed" not in second.headers


async def test_same_key_with_a_different_body_is_a_422(client, account):
    headers = idempotent(account.headers, "reused")
    assert (
        await client.post("/v1/api_keys", headers=headers, json={"kind": "publishable"})
    ).status_code == 201
    response = await client.post("/v1/api_keys", headers=headers, json={"kind": "secret"})
    assert_error(response, 422, "idempotency_key_reused", "Idempotency-Key")
    assert response.json()["error"]["type"] == "idempotency_error"
    assert len(await all_key_ids(client, account.headers)) == 2


async def test_same_key_on_another_route_is_a_422(client, account):
    headers = idempotent(account.headers, "reused-across-routes")
    created = await client.post("/v1/api_keys", headers=headers, json={"kind": "publishable"})
    assert created.status_code == 201
    response = await client.post(f"/v1/api_keys/{created.json()['id']}/roll", headers=headers)
    assert_error(response, 422, "idempotency_key_reused")


async def test_idempotency_keys_are_per_account(client, make_account):
    a, b = make_account("A"), make_account("B")
    key = f"shared-{uuid.uuid4()}"
    body = {"kind": "publishable"}
    made_by_a = await client.post("/v1/api_keys", headers=idempotent(a.headers, key), json=body)
    made_by_b = await client.post("/v1/api_keys", headers=idempotent(b.headers, key), json=body)
    assert made_by_a.status_code == made_by_b.status_code == 201
    assert "idempotent-replayed" not in made_by_b.headers
    assert made_by_b.json()["id"] != made_by_a.json()["id"]
    assert made_by_b.json()["secret"].startswith(f"lic_pk_{uuid.UUID(b.id).hex}")
    assert made_by_b.json()["id"] in await all_key_ids(client, b.headers)
    # B's different body under the same key is not compared with A's request either.
    other = await client.post(
        "/v1/api_keys", headers=idempotent(b.headers, key + "-2"), json={"kind": "secret"}
    )
    assert other.status_code == 201


async def test_a_failed_request_stores_nothing_so_a_corrected_retry_runs(client, account):
    headers = idempotent(account.headers, "fix-and-retry")
    # Rejected by the database (name too long), so the transaction and its key roll back ...
    failed = await client.post("/v1/api_keys", headers=headers, json={"kind": "secret", "name": "x" * 201})
    assert_error(failed, 422, "invalid_parameter")
    # ... the same failure is not replayed but runs again ...
    again = await client.post("/v1/api_keys", headers=headers, json={"kind": "secret", "name": "x" * 201})
    assert_error(again, 422, "invalid_parameter")
    assert "idempotent-replayed" not in again.headers
    # ... and a corrected request under the same key takes effect once.
    fixed = await client.post("/v1/api_keys", headers=headers, json={"kind": "secret", "name": "ok"})
    assert fixed.status_code == 201
    assert "idempotent-replayed" not in fixed.headers
    replay = await client.post("/v1/api_keys", headers=headers, json={"kind": "secret", "name": "ok"})
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json()["id"] == fixed.json()["id"]


async def test_a_request_rejected_before_the_database_stores_nothing(client, account):
    headers = idempotent(account.headers, "validated")
    assert_error(
        await client.post("/v1/api_keys", headers=headers, json={"kind": "nope"}), 422, "invalid_parameter"
    )
    fixed = await client.post("/v1/api_keys", headers=headers, json={"kind": "publishable"})
    assert fixed.status_code == 201
    assert "idempotent-replayed" not in fixed.headers


async def test_a_conflict_stores_nothing(client, account):
    key = await create_key(client, account.headers)
    await client.delete(f"/v1/api_keys/{key['id']}", headers=account.headers)
    headers = idempotent(account.headers, "roll-revoked")
    assert_error(await client.post(f"/v1/api_keys/{key['id']}/roll", headers=headers), 409, "invalid_state")
    again = await client.post(f"/v1/api_keys/{key['id']}/roll", headers=headers)
    assert_error(again, 409, "invalid_state")
    assert "idempotent-replayed" not in again.headers


@pytest.mark.parametrize("key", ["", "k" * 256])
async def test_idempotency_key_of_bad_length_is_a_422(client, account, key):
    response = await client.post(
        "/v1/api_keys", headers=idempotent(account.headers, key), json={"kind": "secret"}
    )
    assert_error(response, 422, "invalid_parameter", "Idempotency-Key")
    assert len(await all_key_ids(client, account.headers)) == 1


async def test_idempotency_key_of_255_characters_is_accepted(client, account):
    headers = idempotent(account.headers, "k" * 255)
    first = await client.post("/v1/api_keys", headers=headers, json={"kind": "publishable"})
    again = await client.post("/v1/api_keys", headers=headers, json={"kind": "publishable"})
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"]


async def test_idempotency_key_is_ignored_on_get(client, account):
    headers = idempotent(account.headers, "on-a-get")
    assert (await client.get("/v1/account", headers=headers)).status_code == 200
    response = await client.get("/v1/account", headers=headers)
    assert response.status_code == 200
    assert "idempotent-replayed" not in response.headers
    # and the key was not taken: a POST may still use it.
    created = await client.post("/v1/api_keys", headers=headers, json={"kind": "publishable"})
    assert created.status_code == 201 and "idempotent-replayed" not in created.headers


@pytest.fixture(scope="module")
def live_server(settings) -> Iterator[str]:
    """The app behind a real uvicorn on a free port, so that concurrent requests
    really run concurrently (the test client hands the app one request at a time)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
    sock.close()


@pytest.mark.parametrize("round_", range(3))
async def test_concurrent_requests_with_one_key_take_effect_once(live_server, account, round_):
    headers = idempotent(account.headers, f"race-{uuid.uuid4()}")
    body = {"kind": "publishable", "name": "race"}
    async with httpx.AsyncClient(base_url=live_server, timeout=10) as http:
        before = await all_key_ids(http, account.headers)
        responses = await asyncio.gather(
            *(http.post("/v1/api_keys", headers=headers, json=body) for _ in range(8))
        )
        after = await all_key_ids(http, account.headers)

    created = [r for r in responses if r.status_code == 201 and "idempotent-replayed" not in r.headers]
    replayed = [
        r for r in responses if r.status_code == 201 and r.headers.get("idempotent-replayed") == "true"
    ]
    in_use = [r for r in responses if r.status_code == 409]
    assert len(created) == 1, [(r.status_code, r.text) for r in responses]
    assert len(created) + len(replayed) + len(in_use) == len(responses), [r.text for r in responses]
    for response in in_use:
        assert_error(response, 409, "idempotency_key_in_use", "Idempotency-Key")
    new_id = created[0].json()["id"]
    assert all(r.json()["id"] == new_id for r in replayed)
    assert len(after) == len(before) + 1
    assert after[0] == new_id


async def test_concurrent_requests_with_different_keys_all_take_effect(live_server, account):
    async with httpx.AsyncClient(base_url=live_server, timeout=10) as http:
        responses = await asyncio.gather(
            *(
                http.post(
                    "/v1/api_keys", headers=idempotent(account.headers, f"k{i}"), json={"kind": "publishable"}
                )
                for i in range(8)
            )
        )
        assert [r.status_code for r in responses] == [201] * 8
        assert len({r.json()["id"] for r in responses}) == 8
        assert len(await all_key_ids(http, account.headers)) == 9
